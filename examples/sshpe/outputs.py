"""What the trainer writes into its run folder, recorded: every output is listed in the
folder's :data:`MANIFEST` before it is written (:func:`claim`), so that ``--overwrite``
deletes exactly the trainer's files and nothing else (see :mod:`sshpe.rundir`).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MANIFEST", "claim", "claimed", "replace_text"]

#: The list of a run's outputs in its folder: paths relative to it, one a line.
MANIFEST = ".train-outputs"


def replace_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file renamed over ``path``: a kill leaves the old
    content or the new one, an interrupt or a failed write no temporary file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def claimed(folder: Path) -> list[str]:
    """The :data:`MANIFEST` entries of the run ``folder`` (only paths inside it)."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return []
    entries = manifest.read_text().splitlines()
    return [e for e in entries if e and not Path(e).is_absolute() and ".." not in Path(e).parts]


def claim(folder: Path, *paths: Path) -> None:
    """Record ``paths`` (inside the run ``folder``) in its :data:`MANIFEST` as outputs of
    this trainer; call it before writing them.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> claim(folder, folder / "results.json", folder / "tb" / "events")
        >>> claim(folder, folder / "results.json")
        >>> claimed(folder)
        ['results.json', 'tb/events']
    """
    listed = claimed(folder)
    new = dict.fromkeys(p.relative_to(folder).as_posix() for p in paths)
    added = [entry for entry in new if entry not in listed]
    if added:
        replace_text(folder / MANIFEST, "".join(f"{e}\n" for e in listed + added))
