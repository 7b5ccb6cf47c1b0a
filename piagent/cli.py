"""The ``piagent`` command line: parses arguments and hands each subcommand to its module.

Owns argument parsing and exit codes only; the work lives in the modules it calls, imported
lazily so that ``piagent --help`` stays fast on a Pi Zero.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import MutableMapping, Sequence
from pathlib import Path

from piagent.commands import SYNOPSIS, help_text

EX_OK = 0
EX_FAIL = 1

EX_USAGE = 64
EX_UNAVAILABLE = 69
EX_CONFIG = 78
_CONFIG_HELP = "config file (default: $PIAGENT_CONFIG or /etc/piagent/config.yaml)"


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

    run = sub.add_parser("run", help="the daemon, in the foreground (systemd runs this)")
    run.add_argument("--config", metavar="PATH", help=_CONFIG_HELP)
    run.add_argument("--verbose", "-v", action="store_true", help="log at DEBUG level")

    demo = sub.add_parser("demo", help="the local agent and the daemon, ready to talk to")
    demo.add_argument("--port", type=int, default=0, help="simulator port (default: a free one)")
    demo.add_argument("--workdir", metavar="DIR", help="where the demo's files go (default: tmp)")
    audio = demo.add_mutually_exclusive_group()
    audio.add_argument("--wav", action="store_true", default=None, help="force the WAV backend")
    audio.add_argument(
        "--sound-card", dest="wav", action="store_false", help="force the real sound card"
    )
    demo.add_argument(
        "--duration", type=float, metavar="S", help="give up after S seconds (exit 1)"
    )
    demo.add_argument("--verbose", "-v", action="store_true", help="log at DEBUG level")

    ctl = sub.add_parser(
        "ctl",
        help="talk to a running daemon",
        description=f"Commands: {SYNOPSIS}",
        epilog="commands:\n" + help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ctl.add_argument("--socket", metavar="PATH", help="control socket (default: from the config)")
    ctl.add_argument("--config", metavar="PATH", help=_CONFIG_HELP)
    ctl.add_argument("words", nargs=argparse.REMAINDER, metavar="COMMAND ...")

    sub.add_parser("devices", help="ALSA devices and the rates each accepts")
    voices = sub.add_parser("voices", help="the voices of the account (GET /v1/voices)")
    voices.add_argument("--config", metavar="PATH", help=_CONFIG_HELP)
    voices.add_argument("--json", action="store_true", help="print JSON")
    doctor = sub.add_parser("doctor", help="check config, audio, GPIO, clock, network, agent")
    doctor.add_argument("--config", metavar="PATH", help=_CONFIG_HELP)
    doctor.add_argument("--json", action="store_true", help="print one JSON object")
    doctor.add_argument(
        "--here",
        action="store_true",
        help="check in this process, as this user (by default root re-runs the checks as "
        "piagent.service, through systemd-run, with its user, credentials and sandbox)",
    )

    setup = sub.add_parser(
        "setup",
        help="pick the microphone and speaker, check the level, write them into the config",
    )
    setup.add_argument("--config", metavar="PATH", help=_CONFIG_HELP)
    setup.add_argument("--agent-id", metavar="ID", help="set agent.agent_id")
    setup.add_argument("--server", metavar="URL", help="set agent.server (wss://...)")
    setup.add_argument("--input", metavar="DEVICE", help="the microphone, instead of choosing")
    setup.add_argument("--output", metavar="DEVICE", help="the speaker, instead of choosing")
    setup.add_argument(
        "--yes",
        action="store_true",
        help="never ask: the first hardware devices (USB first)",
    )

    check = sub.add_parser("check-config", help="validate a config file (exit 78 if invalid)")
    check.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="default: $PIAGENT_CONFIG or /etc/piagent/config.yaml",
    )
    return parser


def _configure_logging(verbose: bool, level: str = "info") -> None:
    from piagent.logs import setup_logging

    setup_logging(level, "auto", verbose)


# Environment variables that size the thread pools of the BLAS library numpy is linked
# against (OpenBLAS, BLIS, MKL, or one built with OpenMP). piagent multiplies small matrices 50
# times a second: a pool never helps, and OpenBLAS's idle workers spin on a core after each
# product. Each library reads its variable once, when numpy first loads it.
BLAS_THREAD_VARIABLES = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "GOTO_NUM_THREADS",
)


def limit_blas_threads(environ: MutableMapping[str, str]) -> None:
    """One BLAS thread, whatever numpy is linked against; must run before numpy is imported.
    A value already set (by the unit, or the user) is kept."""
    for name in BLAS_THREAD_VARIABLES:
        environ.setdefault(name, "1")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    limit_blas_threads(os.environ)
    parser = _build_parser()
    args = parser.parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    if args.command == "run":
        return _run(args.config, verbose)
    _configure_logging(verbose, "info" if args.command == "sim" else "warning")
    if args.command == "demo":
        return _demo(args)
    if args.command == "ctl":
        return _ctl(args.socket, args.config, args.words)
    if args.command == "devices":
        return _devices()
    if args.command == "voices":
        return _voices(args.config, as_json=args.json)
    if args.command == "doctor":
        from piagent.doctor import run_doctor

        return run_doctor(
            _path(args.config), as_json=args.json, here=args.here, out=sys.stdout, err=sys.stderr
        )
    if args.command == "setup":
        return _setup(args)
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


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _run(config: str | None, verbose: bool) -> int:
    """``piagent run``: the daemon until SIGTERM; a bad config exits 78, naming every key."""
    import asyncio

    from piagent.config import config_path, load_config
    from piagent.errors import ConfigError, ConfigProblems
    from piagent.service import Daemon

    source = config_path(config)
    try:
        loaded = load_config(source)
    except ConfigProblems as exc:
        _configure_logging(verbose)
        for line in exc.lines():
            logging.getLogger("piagent").error("%s", line)
        return EX_CONFIG
    except ConfigError as exc:
        _configure_logging(verbose)
        logging.getLogger("piagent").error("%s: %s", source, exc)
        return EX_CONFIG
    from piagent.logs import setup_logging

    setup_logging(loaded.logging.level, loaded.logging.journal, verbose)

    async def main() -> int:
        try:
            daemon = Daemon(loaded, config_path=source)
        except ConfigError as exc:
            logging.getLogger("piagent").error("%s: %s", source, exc)
            return EX_CONFIG
        return await daemon.run()

    return asyncio.run(main())


def _demo(args: argparse.Namespace) -> int:
    import asyncio

    from piagent.demo import run_demo

    workdir = _path(args.workdir)
    try:
        return asyncio.run(
            run_demo(port=args.port, workdir=workdir, wav=args.wav, duration=args.duration)
        )
    except KeyboardInterrupt:
        return EX_OK


def _ctl(socket: str | None, config: str | None, words: Sequence[str]) -> int:
    """``piagent ctl``: the socket from --socket, else the config's control.socket."""
    from piagent.control import run_ctl

    if socket is None:
        from piagent.config import ControlConfig, config_path, load_config
        from piagent.errors import ConfigError

        path = config_path(config)
        try:
            socket_path = load_config(path).control.socket if path.exists() else None
        except ConfigError:
            socket_path = None
        socket_path = socket_path or ControlConfig().socket
    else:
        socket_path = Path(socket)
    return run_ctl(socket_path, list(words), stdout=sys.stdout, stderr=sys.stderr)


def _setup(args: argparse.Namespace) -> int:
    """``piagent setup``: interactive when stdin is a terminal and --yes is not given."""
    from piagent.config import config_path
    from piagent.setup import Options, run_setup

    options = Options(
        config=config_path(args.config),
        agent_id=args.agent_id,
        server=args.server,
        input=args.input,
        output=args.output,
        yes=args.yes,
    )
    ask = input if sys.stdin.isatty() and not args.yes else None
    return run_setup(options, out=sys.stdout, err=sys.stderr, ask=ask)


def _devices() -> int:
    from piagent.audio.devices import format_devices, list_devices

    print(format_devices(list_devices()))
    return EX_OK


def _voices(config: str | None, *, as_json: bool) -> int:
    """``piagent voices``: GET /v1/voices with the configured key and API base."""
    import asyncio
    import dataclasses
    import json

    from piagent.config import load_config, resolve_api_key
    from piagent.errors import ConfigError
    from piagent.rest import RestError, get_voices

    try:
        loaded = load_config(_path(config))
        key = resolve_api_key(loaded.agent)
    except ConfigError as exc:
        print(f"piagent voices: {exc}", file=sys.stderr)
        return EX_CONFIG
    try:
        voices = asyncio.run(
            get_voices(loaded.agent.api_base, key.reveal() if key else None, request_timeout=10)
        )
    except RestError as exc:
        print(f"piagent voices: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE if exc.status is None else EX_FAIL
    if as_json:
        print(json.dumps([dataclasses.asdict(v) for v in voices], indent=2))
        return EX_OK
    for voice in voices:
        labels = ", ".join(f"{k}: {v}" for k, v in sorted(voice.labels.items()))
        print(f"{voice.voice_id}  {voice.name:<24} {voice.category:<12} {labels}")
    return EX_OK
