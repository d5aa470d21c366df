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
import os
import re
import typing
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Literal

from sshpe.checkpoint import CHECKPOINT
from sshpe.config import (
    CONFIG_FILE,
    FOLLOWS_ARCH,
    PROFILES,
    SCALED_WITH_HEIGHT,
    SECTIONS,
    RuntimeConfig,
    TrainConfig,
    build_config,
    convert,
    field_types,
    flag_of,
    load_config_file,
)

__all__ = [
    "UsageError",
    "build_parser",
    "error_line",
    "field_help",
    "parse_config",
    "profile_flags",
]


class UsageError(Exception):
    """A bad command line or input file: reported as one line, no traceback."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line instead of usage + error
        raise UsageError(message)


class _Help(argparse.RawDescriptionHelpFormatter):
    """The help text as given: :func:`build_parser` writes the defaults into it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help or ""


def field_help(cls: type[Any]) -> dict[str, str]:
    """The ``Attributes:`` entries of a dataclass docstring, joined to one line each, as
    command-line help: Sphinx markup removed, options written ``like_this`` as flags."""
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
    options = {f.name for c in SECTIONS.values() for f in dataclasses.fields(c)}

    def as_flag(match: re.Match[str]) -> str:
        word = match.group(1)
        return flag_of(word) if word in options else word

    return {
        k: re.sub(r"``|:\w+:`~?|`", "", re.sub(r"``(\w+)``", as_flag, v))
        for k, v in entries.items()
    }


def _default_text(section: str, f: dataclasses.Field[Any]) -> str:
    """`` (default: ...)``: the field's default, or how it is derived, and the profiles'."""
    derived = SCALED_WITH_HEIGHT | FOLLOWS_ARCH
    if f.name in derived:
        default = derived[f.name]
    elif f.default_factory is not dataclasses.MISSING:
        default = _show(f.default_factory())
    else:
        default = _show(f.default) if f.default is not None else ""
    profiled = [
        f"{_show(values[section][f.name])} on the {profile} profile"
        for profile, values in PROFILES.items()
        if values.get(section, {}).get(f.name, f.default) != f.default
    ]
    shown = [default] * bool(default) + profiled
    return f" (default: {'; '.join(shown)})" if shown else ""


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return " ".join(repr(v) if v == "" else str(v) for v in value) if value else "none"
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    """The command line: one flag per configuration field, grouped by section."""
    parser = _Parser(
        prog="train.py",
        description="Semi-supervised pose training (SSHPE protocol): supervised, "
        "consistency (PoseCons), posemum, dual (PoseDual) or posemum_dual. With no data "
        "arguments, trains on the bundled synthetic set (the synthetic profile).",
        formatter_class=_Help,
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="a saved configuration (a run's config.json) to start from; flags override it",
    )
    summaries = field_help(TrainConfig)
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(section, summaries[section])
        helps, kinds = field_help(cls), field_types(cls)
        for f in dataclasses.fields(cls):
            text = helps.get(f.name, "") + _default_text(section, f)
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
    metavar = flag_of(name).lstrip("-").replace("-", "_").upper()
    options: dict[str, Any] = {"metavar": metadata.get("metavar", metavar)}
    if kind is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(kind) is Literal:  # None, where allowed, is the default
        return {"choices": list(typing.get_args(kind))}
    if typing.get_origin(kind) is tuple:
        args = typing.get_args(kind)
        options["nargs"] = len(args) if args[-1:] != (Ellipsis,) else metadata.get("nargs", "+")
    return {**options, "type": str}  # converted by sshpe.config.convert; "none" for None


def parse_config(argv: Sequence[str] | None = None) -> TrainConfig:
    """The configuration of a command line: defaults, profile, ``--config``, flags.

    Raises:
        UsageError: on a bad flag, value or combination, as one line.
    """
    namespace = build_parser().parse_args(argv)
    flags: dict[str, dict[str, Any]] = {}
    config_file: Path | None = None
    for key, value in vars(namespace).items():
        if key == "config":
            config_file = value
            continue
        section, name = key.split(".")
        flags.setdefault(section, {})[name] = value
    try:
        for values in flags.values():
            for name, value in values.items():
                values[name] = convert(name, value)
        if flags.get("runtime", {}).get("resume") and config_file is None:
            out = flags["runtime"].get("out", RuntimeConfig().out)
            saved = out / CONFIG_FILE  # resume needs no flags but those that change
            config_file = saved if saved.is_file() else None
        saved_layer = load_config_file(config_file) if config_file is not None else {}
    except ValueError as e:  # ConfigError
        raise UsageError(str(e)) from None
    try:
        config = build_config(saved_layer, flags)
        _check_machine(config)
    except ValueError as e:  # ConfigError, or a MethodConfig check
        raise UsageError(_naming_the_file(str(e), saved_layer, flags, config_file)) from None
    checkpoint = config.runtime.out / CHECKPOINT
    if config.runtime.resume and not checkpoint.is_file():
        raise UsageError(f"--resume: no checkpoint at {checkpoint}")
    return config


def _check_machine(config: TrainConfig) -> None:
    """Check the options bounded by this machine (not part of a saved configuration's
    checks: a run may continue on another machine): at most 4 ``--workers`` per CPU core.

    Raises:
        ValueError: naming the flag.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    most, workers = 4 * (cores or 1), config.runtime.workers
    if workers is not None and workers > most:
        raise ValueError(
            f"--workers must be <= {most} (4 per CPU core of this machine), got {workers}"
        )


def _naming_the_file(
    message: str,
    saved: dict[str, dict[str, Any]],
    flags: dict[str, dict[str, Any]],
    path: Path | None,
) -> str:
    """``message`` ending with the ``--config`` file when a flag it names took its value
    from there rather than from the command line."""
    given = {flag_of(name) for values in flags.values() for name in values}
    from_file = {flag_of(name) for values in saved.values() for name in values} - given
    named = set(re.findall(r"--[a-z][a-z0-9-]*", message))
    return f"{message} (the value of --config {path})" if named & from_file else message


def error_line(error: BaseException) -> str:
    """The one line that reports ``error``: its message, or for an error raised in a
    ``DataLoader`` worker (whose message the loader wraps in the worker's traceback) the
    original message, the traceback's last line."""
    message = str(error).strip()
    if "Original Traceback" not in message:
        return message
    last = message.splitlines()[-1]
    return last.split(": ", 1)[1] if ": " in last else last


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
