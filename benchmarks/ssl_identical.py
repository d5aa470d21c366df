"""Does the code of this checkout train every claims arm bit for bit like an earlier commit?

The claims benchmark (``ssl_synthetic.py``) runs across sessions, so its seeds are trained
by different commits. Pairing and pooling seeds are sound only if every arm's training
is the same function of the seed at all of them. This script trains each arm of
``ssl_synthetic.ARMS`` for a few steps on the CI smoke set, once with the code of
``COMMIT`` (a temporary git worktree) and once with this checkout, and compares the
student's and teacher's weights and the metrics exactly. Run it before continuing the
benchmark at a new commit:

    python benchmarks/ssl_identical.py 2fdb752     # exit 0: every arm identical
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "examples"))

from sshpe.synthetic import generate_synthetic_coco  # noqa: E402
from ssl_synthetic import ARMS, QUICK  # noqa: E402


def train_arms(root: Path, data: Any, out: Path, names: list[str]) -> list[str]:
    """Train the arms ``names`` for 6 steps with the code under ``root``, one thread;
    returns those that code does not know (its train.py refuses the arm's flags)."""
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    unknown = []
    for name in names:
        arm = ARMS[name]
        argv = [
            sys.executable, str(root / "examples" / "train.py"),
            "--images", str(data.images), "--train-ann", str(data.train_ann),
            "--val-ann", str(data.val_ann), "--steps", "6", "--eval-every", "3",
            "--no-progress", "--seed", "3", "--method", arm.method,
            "--labeled", str(QUICK["labeled"] if arm.few else 0), *arm.flags, *QUICK["train"],
            "--out", str(out / name),
        ]  # fmt: skip
        run = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=root)
        if run.returncode == 2 and "invalid choice" in run.stderr:
            unknown.append(name)
        elif run.returncode != 0:
            raise SystemExit(f"ssl_identical: {name} failed at {root}:\n{run.stderr[-2000:]}")
    return unknown


def tensors(state: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a nested state, by its dotted path."""
    if isinstance(state, torch.Tensor):
        return {prefix: state}
    if isinstance(state, dict):
        return {
            k: v for key, sub in state.items() for k, v in tensors(sub, f"{prefix}{key}.").items()
        }
    return {}


def differences(old: Path, new: Path, names: list[str]) -> list[str]:
    """The arms among ``names`` whose weights or metrics differ between two output folders."""
    differ = []
    for name in names:
        a, b = (torch.load(d / name / "checkpoint.pt", weights_only=True) for d in (old, new))
        ta, tb = (tensors({"student": c["student"], "teacher": c["teacher"]}) for c in (a, b))
        same = ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
        metrics = [
            json.loads((d / name / "results.json").read_text())["metrics"] for d in (old, new)
        ]
        if not same or metrics[0] != metrics[1]:
            differ.append(name)
    return differ


def main() -> int:
    """Train both versions, compare, print the verdict; exit 1 if an arm differs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commit", help="the earlier commit (e.g. a run's git_sha in the record)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    data = generate_synthetic_coco(
        work / "data", num_train=QUICK["num_train"], num_val=QUICK["num_val"], progress=False
    )
    tree = work / "tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", "-q", str(tree), args.commit], cwd=ROOT, check=True
    )
    try:
        unknown = train_arms(tree, data, work / "old", list(ARMS))
        common = [name for name in ARMS if name not in unknown]
        train_arms(ROOT, data, work / "new", common)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True)
    if unknown:
        print(f"new since {args.commit} (not compared): {', '.join(unknown)}")
    differ = differences(work / "old", work / "new", common)
    if differ:
        print(f"differ from {args.commit}: {', '.join(differ)}")
        return 1
    print(f"all {len(common)} arms of {args.commit} train bit for bit as there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
