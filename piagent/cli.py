"""The ``piagent`` command line: parses arguments and hands each subcommand to its module.

Owns argument parsing and exit codes only; the work lives in the modules it calls, imported
lazily so that ``piagent --help`` stays fast on a Pi Zero.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

EX_OK = 0
EX_USAGE = 64
EX_CONFIG = 78


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="piagent",
        description="Voice terminal for an ElevenLabs agent on a Raspberry Pi.",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sim = sub.add_parser("sim", help="run the local ElevenLabs-compatible agent server")
    sim.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default %(default)s)"
    )
    sim.add_argument("--port", type=int, default=8765, help="TCP port (default %(default)s)")
    sim.add_argument("--scenario", metavar="FILE", help="YAML scenario scripting the exchange")
    sim.add_argument("--agent", metavar="FILE", help="YAML file defining the simulated agents")
    sim.add_argument("--verbose", "-v", action="store_true", help="log at DEBUG level")

    check = sub.add_parser("check-config", help="validate a config file (exit 78 if invalid)")
    check.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="default: $PIAGENT_CONFIG or /etc/piagent/config.yaml",
    )
    return parser


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    if args.command == "sim":
        from piagent.sim.server import run_from_args

        status: int = run_from_args(
            host=args.host, port=args.port, scenario_path=args.scenario, agent_path=args.agent
        )
        return status
    if args.command == "check-config":
        return _check_config(args.path)
    parser.print_help(sys.stderr)
    return EX_USAGE


def _check_config(path: str | None) -> int:
    """``piagent check-config``: ``PATH: OK``, or one stderr line per problem and EX_CONFIG."""
    from piagent.config import check_config, config_path
    from piagent.errors import ConfigError, ConfigProblems

    source = config_path(path)
    try:
        check_config(source)
    except ConfigProblems as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        return EX_CONFIG
    except ConfigError as exc:
        print(f"{source}: {exc}", file=sys.stderr)
        return EX_CONFIG
    print(f"{source}: OK")
    return EX_OK
