"""Sphinx extension for the public names of ``posemum_aug`` (``posemum_aug.__all__``).

- Each must have an API entry under its module (``posemum_aug.mix.mix_tiles``); a missing
  one is a warning, so an error under ``-W``. The API pages list functions and classes one
  by one, so a new public name would otherwise go undocumented without a sound.
- A reference to the name the user imports (``:func:`posemum_aug.mix_tiles```) links to
  that entry.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from sphinx.util import logging

import posemum_aug

logger = logging.getLogger(__name__)


def public_entries() -> dict[str, str]:
    """Each public name of ``posemum_aug`` -> the full name of its API entry."""
    modules = [m for m in vars(posemum_aug).values() if isinstance(m, ModuleType)]
    owners = {name: m.__name__ for m in modules for name in getattr(m, "__all__", ())}
    return {
        name: f"{owners.get(name, 'posemum_aug')}.{name}"
        for name in posemum_aug.__all__
        if name != "__version__"
    }


def check_entries(app: Any, env: Any) -> None:
    documented = env.get_domain("py").objects
    for name, entry in public_entries().items():
        if entry not in documented:
            logger.warning("posemum_aug.%s has no API entry: document it as %s", name, entry)


def resolve_public(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve ``posemum_aug.<name>[.<member>]`` to the entry in ``name``'s module."""
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("posemum_aug."):
        return None
    name, _, member = target.removeprefix("posemum_aug.").partition(".")
    entry = public_entries().get(name)
    if entry is None:
        return None
    full = f"{entry}.{member}" if member else entry
    domain = env.get_domain("py")
    return domain.resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], full, node, contnode
    )


def setup(app: Any) -> dict[str, Any]:
    app.connect("env-check-consistency", check_entries)
    app.connect("missing-reference", resolve_public)
    return {"parallel_read_safe": True, "version": "1"}
