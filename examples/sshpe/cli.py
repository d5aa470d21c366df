"""The trainer's command line, generated from the configuration dataclasses.

Every field of the :data:`~sshpe.config.SECTIONS` becomes one flag: ``--name-with-dashes``
(or the field's ``metadata["flag"]``), its type gives the parsing (``bool``:
``--x`` / ``--no-x``; ``Literal``: choices; ``tuple``: several values; ``X | None``: also
``none``; numbers must be finite), and its entry in the ``Attributes:`` section of the class
docstring is the help text. A small generator of our own rather than a CLI library: the
trainer is meant to be forked, so it should need nothing beyond argparse, and errors stay
one line that names the flag.

Flags left out are absent from the parsed result (not filled with defaults), so that the
configuration can layer them over ``--config`` and the data's profile
(:func:`~sshpe.config.build_config`).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import typing
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Literal

from sshpe.checkpoint import CHECKPOINT
from sshpe.config import (
    CONFIG_FILE,
    PROFILES,
    SECTIONS,
    RuntimeConfig,
    TrainConfig,
    build_config,
    convert,
    field_types,
    flag_of,
    load_config_file,
)

__all__ = ["UsageError", "build_parser", "field_help", "parse_config", "profile_flags"]


class UsageError(Exception):
    """A bad command line or input file: reported as one line, no traceback."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line instead of usage + error
        raise UsageError(message)


class _Help(argparse.RawDescriptionHelpFormatter):
    """Show a flag's default after its help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help or ""


def field_help(cls: type[Any]) -> dict[str, str]:
    """The ``Attributes:`` entries of a dataclass docstring, joined to one line each."""
    doc = inspect.getdoc(cls) or ""
    section = doc.split("Attributes:", 1)[-1] if "Attributes:" in doc else ""
    entries: dict[str, str] = {}
    name = None
    for line in section.splitlines():
        match = re.match(r"^    (\w+): (.*)$", line)
        if match:
            name, text = match.groups()
            entries[name] = text
        elif name is not None and line.startswith("        "):
            entries[name] += " " + line.strip()
        elif line.strip():
            name = None
    return {k: re.sub(r"``|:\w+:`~?|`", "", v) for k, v in entries.items()}


def _default_text(section: str, name: str, default: Any) -> str:
    profiled = {p: v[section][name] for p, v in PROFILES.items() if name in v.get(section, {})}
    shown = [] if default is None or default is False else [_show(default)]
    shown += [f"{_show(v)} on the {p} profile" for p, v in profiled.items()]
    return f" (default: {'; '.join(shown)})" if shown else ""


def _show(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return " ".join(map(str, value)) if value else "none"
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    """The command line: one flag per configuration field, grouped by section."""
    parser = _Parser(
        prog="train.py",
        description="Semi-supervised pose training (SSHPE protocol): supervised, "
        "consistency (PoseCons) or posemum. With no data arguments, trains on the "
        "bundled synthetic set (the synthetic profile).",
        formatter_class=_Help,
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="a saved configuration (a run's config.json) to start from; flags override it",
    )
    for section, cls in SECTIONS.items():
        doc = (inspect.getdoc(cls) or section).splitlines()[0].rstrip(".")
        group = parser.add_argument_group(doc)
        helps, kinds = field_help(cls), field_types(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default_factory is dataclasses.MISSING else None
            text = helps.get(f.name, "") + _default_text(section, f.name, default)
            group.add_argument(
                flag_of(f.name),
                dest=f"{section}.{f.name}",
                default=argparse.SUPPRESS,
                help=text,
                **_parsing(f.name, kinds[f.name], f.metadata),
            )
    return parser


def _parsing(name: str, kind: Any, metadata: Any) -> dict[str, Any]:
    """The ``add_argument`` keywords of a field type."""
    optional = type(None) in typing.get_args(kind)
    inner = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
    if optional:
        kind = inner
    options: dict[str, Any] = {"metavar": metadata.get("metavar", name.upper())}
    if kind is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(kind) is Literal:
        return {"choices": [*typing.get_args(kind), *(["none"] if optional else [])]}
    if typing.get_origin(kind) is tuple:
        args = typing.get_args(kind)
        options["nargs"] = len(args) if args[-1:] != (Ellipsis,) else "*"
    return {**options, "type": str}


def parse_config(argv: Sequence[str] | None = None) -> TrainConfig:
    """The configuration of a command line: defaults, profile, ``--config``, flags.

    Raises:
        UsageError: on a bad flag, value or combination, as one line.
    """
    namespace = build_parser().parse_args(argv)
    flags: dict[str, dict[str, Any]] = {}
    config_file = None
    for key, value in vars(namespace).items():
        if key == "config":
            config_file = value
            continue
        section, name = key.split(".")
        flags.setdefault(section, {})[name] = value
    try:
        for values in flags.values():
            for name, value in values.items():
                values[name] = None if value == "none" else convert(name, value)
        if flags.get("runtime", {}).get("resume") and config_file is None:
            out = flags["runtime"].get("out", RuntimeConfig().out)
            saved = out / CONFIG_FILE  # resume needs no flags but those that change
            config_file = saved if saved.is_file() else None
        layers = [load_config_file(config_file)] if config_file is not None else []
        config = build_config(*layers, flags)
    except ValueError as e:  # ConfigError, or a MethodConfig check
        raise UsageError(str(e)) from None
    checkpoint = config.runtime.out / CHECKPOINT
    if config.runtime.resume and not checkpoint.is_file():
        raise UsageError(f"--resume: no checkpoint at {checkpoint}")
    return config


def profile_flags(name: str, skip: Collection[str] = ()) -> list[str]:
    """The :data:`~sshpe.config.PROFILES` entry ``name`` as command-line flags, less the
    fields in ``skip``: for callers that pass their data as files but want that profile's
    job.

    Example:
        >>> profile_flags("synthetic", skip=("labeled", "steps", "sigma", "momentum_warmup"))[:4]
        ['--input-size', '128', '96', '--width']
    """
    return [
        token
        for values in PROFILES[name].values()
        for key, value in values.items()
        if key not in skip
        for token in [flag_of(key), *map(str, value if isinstance(value, tuple) else [value])]
    ]
