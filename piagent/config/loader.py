"""Reading the config file: ``load_config``, ``check_config`` and which file ``config_path`` picks.

Owns the file side: the path (an argument, else ``$PIAGENT_CONFIG``, else
``/etc/piagent/config.yaml``), reading it as UTF-8, YAML parsing with a loader that rejects a
key given twice, and turning read and syntax errors into ``ConfigProblems`` that say where.
What the data must hold is ``sections``' business; ``check_config`` (``piagent check-config``)
also makes sure a configured API key file is usable.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import yaml

from piagent.config.api_key import resolve_api_key
from piagent.config.schema import CONFIG_ENV, DEFAULT_CONFIG_PATH, Config
from piagent.config.sections import parse_config
from piagent.errors import ConfigError, ConfigProblems

__all__ = ["check_config", "config_path", "load_config"]


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        first_seen: dict[Hashable, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in first_seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found {key!r} twice (first on line {first_seen[key]})",
                    key_node.start_mark,
                )
            if isinstance(key, Hashable):
                first_seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def config_path(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] = os.environ
) -> Path:
    """The config file to read: ``path``, else ``$PIAGENT_CONFIG``, else the default."""
    if path is not None:
        return Path(path)
    return Path(env.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate the config file (see config_path); raises ConfigProblems."""
    source = config_path(path)
    name = str(source)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        problem = ConfigError("", f"cannot read the config file: {exc.strerror or exc}")
        raise ConfigProblems(name, [problem]) from exc
    except UnicodeDecodeError as exc:
        problem = ConfigError("", f"not UTF-8 text (byte {exc.start})")
        raise ConfigProblems(name, [problem]) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: safe
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = ConfigError("", f"YAML syntax error at {where}: {exc.problem or exc.context}")
        raise ConfigProblems(name, [problem]) from exc
    except yaml.YAMLError as exc:
        raise ConfigProblems(name, [ConfigError("", f"YAML error: {exc}")]) from exc
    return parse_config(data, name)


def check_config(path: str | os.PathLike[str] | None = None) -> Config:
    """``piagent check-config``: load_config, plus the configured API key file must be usable
    and the ``wake`` engine and models and the ``audio.aec`` engine loadable here (the daemon
    runs on without them)."""
    config = load_config(path)
    problems: list[ConfigError] = []
    if config.agent.api_key_file is not None:
        try:
            resolve_api_key(config.agent, {})
        except ConfigError as exc:
            problems.append(exc)
    if config.wake is not None:
        from piagent.wake import wake_problems  # the engine is imported only when configured

        problems.extend(wake_problems(config.wake))
    if config.audio.aec.enabled:
        from piagent.audio.aec import engine_problem  # loads the engine's library

        if (problem := engine_problem(config.audio.aec.engine)) is not None:
            problems.append(ConfigError("audio.aec.engine", problem))
    if problems:
        raise ConfigProblems(str(config_path(path)), problems)
    return config
