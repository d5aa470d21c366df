"""Run the demo config semi-supervised and supervised-only, and record the AP curves.

    python examples/mmpose/prepare_data.py --out data/posemum_mmpose
    python examples/mmpose/demo_record.py --data-root data/posemum_mmpose \\
        --out benchmarks/records/mmpose_demo.json

Both runs go through mmpose's stock ``tools/train.py`` at the same time, one thread each
(``OMP_NUM_THREADS=1``), on the same labelled people and batches: the supervised-only run
is the same config with ``model.semi_train_cfg.unsup_weight=0``. The record holds the
commands, the git sha, the wall time of each run and the teacher's and the student's COCO
AP at every validation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mmpose
import torch

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "configs" / "posemum_res18-w16_synthetic-128x96.py"
TRAIN = Path(mmpose.__file__).parent / ".mim" / "tools" / "train.py"
RUNS = {"posemum": [], "supervised": ["model.semi_train_cfg.unsup_weight=0"]}


def curves(work_dir: Path) -> list[dict[str, Any]]:
    """Each validation's iteration (that of the training row before it: mmengine logs
    validations of iteration-based runs at step 0) and the two networks' AP and AP50."""
    (log,) = work_dir.glob("*/vis_data/scalars.json")
    keys = ("teacher/coco/AP", "teacher/coco/AP .5", "student/coco/AP", "student/coco/AP .5")
    found, iteration = [], 0
    for line in log.read_text().splitlines():
        row = json.loads(line)
        iteration = row.get("iter", iteration)
        if "teacher/coco/AP" in row:
            found.append({"iter": iteration, **{key: round(row[key], 4) for key in keys}})
    return found


def collect(work_dir: Path, data_root: Path, conditions: str) -> dict[str, Any]:
    """The record of the finished runs in ``work_dir`` (their sha, commands and wall times
    are in the files :func:`main` wrote there when it started and ended them)."""
    runs = {
        name: {
            **json.loads((work_dir / f"{name}.json").read_text()),
            "validations": curves(work_dir / name),
        }
        for name in RUNS
    }
    return {
        "what": "the mmpose demo config, semi-supervised vs supervised-only (issue 19)",
        "git_sha": (work_dir / "sha").read_text().strip(),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, mmpose {mmpose.__version__}",
        "conditions": conditions,
        "data": f"python examples/mmpose/prepare_data.py --out {data_root}",
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=Path("data/posemum_mmpose"))
    parser.add_argument("--work-dir", type=Path, default=Path("work_dirs/mmpose_demo"))
    parser.add_argument("--out", type=Path, required=True, help="the record (JSON) to write")
    parser.add_argument(
        "--collect", action="store_true", help="only write the record of the runs in --work-dir"
    )
    parser.add_argument("--conditions", default="", help="what else ran on the machine")
    args = parser.parse_args(argv)
    if args.collect:
        args.out.write_text(
            json.dumps(collect(args.work_dir, args.data_root, args.conditions), indent=2) + "\n"
        )
        return
    env = os.environ | {"POSEMUM_MMPOSE_DATA": f"{args.data_root}/", "OMP_NUM_THREADS": "1"}
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", str(HERE)], capture_output=True, text=True
    )
    args.work_dir.mkdir(parents=True, exist_ok=True)
    (args.work_dir / "sha").write_text(
        sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    )
    commands, processes, started = {}, {}, time.monotonic()
    for name, options in RUNS.items():
        command = [sys.executable, str(TRAIN), str(CONFIG), "--work-dir", str(args.work_dir / name)]
        command += ["--cfg-options", *options] if options else []
        commands[name] = command
        log = (args.work_dir / f"{name}.out").open("w")
        processes[name] = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    ended: dict[str, float] = {}
    while len(ended) < len(processes):
        time.sleep(1.0)
        for name, process in processes.items():
            if name not in ended and process.poll() is not None:
                if process.returncode != 0:
                    raise SystemExit(f"the {name} run failed: see {args.work_dir / name}.out")
                ended[name] = time.monotonic() - started
    for name, command in commands.items():
        shown = " ".join(
            ["python", "$MMPOSE_TOOLS/train.py", os.path.relpath(CONFIG), *command[3:]]
        )
        run = {"command": shown, "wall_s": round(ended[name], 1)}
        (args.work_dir / f"{name}.json").write_text(json.dumps(run))
    record = collect(args.work_dir, args.data_root, args.conditions)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
