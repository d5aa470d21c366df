"""Semi-supervised benchmark on the synthetic person set: does the unlabelled data help?

Trains ``examples/train.py`` once per arm and seed, on the same data, network, input size,
batches, steps and learning-rate schedule, and records the validation AP (SSHPE
protocol) over training, the final AP of the student and the teacher, and the
pseudo-label diagnostics of the semi-supervised arms:

=================  ==================================================================
arm                what
=================  ==================================================================
supervised_few     the first ``labeled`` people of the training file only
consistency        SSHPE's PoseCons + Joint Cutout with a classic mean teacher
consistency_eman   the same with an EMAN teacher (ablation)
posemum            consistency + Pose-MUM mixing with an EMAN teacher (the method)
posemum_ema        the same with a mean teacher (ablation)
supervised_all     every training person labelled: the ceiling
=================  ==================================================================

The unlabelled pool is the whole training file, labels ignored (they feed only the
diagnostics). Every run's folder stays under ``--work``; a run whose ``results.json``
exists is read back, a run with only a checkpoint is resumed, so a killed benchmark
continues where it stopped. The record (every run, the command, the git sha and a
``summary`` of the student AP per arm) is written after each run.

    python benchmarks/ssl_synthetic.py            # full: writes records/ssl_synthetic.json
    python benchmarks/ssl_synthetic.py --quick    # smoke run for CI: seconds
    python benchmarks/ssl_synthetic.py --table    # the README table from the record
    python benchmarks/ssl_synthetic.py --arms posemum --seeds 0 --record /tmp/x.json \\
        -- --hard-bn-stats frozen                 # an ablation: flags after -- go to every run
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "examples"))

import train  # noqa: E402
from _common import RESULTS, metadata  # noqa: E402
from sshpe.checkpoint import CHECKPOINT  # noqa: E402
from sshpe.cli import profile_flags  # noqa: E402
from sshpe.config import RuntimeConfig  # noqa: E402
from sshpe.diagnostics import read_metrics  # noqa: E402
from sshpe.synthetic import generate_synthetic_coco  # noqa: E402

RECORD = HERE / "records" / "ssl_synthetic.json"


@dataclass(frozen=True)
class Arm:
    """One arm: the method, whether only the few labels are used, extra flags."""

    method: str
    few: bool = True
    flags: tuple[str, ...] = ()
    ablation: bool = False


ARMS = {
    "supervised_few": Arm("supervised"),
    "consistency": Arm("consistency"),
    "consistency_eman": Arm("consistency", flags=("--teacher", "eman"), ablation=True),
    "posemum": Arm("posemum"),
    "posemum_ema": Arm("posemum", flags=("--teacher", "ema"), ablation=True),
    "supervised_all": Arm("supervised", few=False),
}

#: The full benchmark: data, labels, the per-run budget, seeds. The shared settings were
#: chosen on supervised_few, supervised_all and consistency (see examples/README.md).
FULL: dict[str, Any] = {
    "num_train": 2000,
    "num_val": 300,
    "labeled": 200,
    "steps": 3000,
    "eval_every": 500,
    "seeds": [0, 1, 2],
    "ablation_seeds": [0],
    # the rest is train.py's synthetic profile (network, input size, batches, learning
    # rate, EMA momentum), given as flags because this benchmark passes its data as files
    "train": profile_flags("synthetic", skip=("labeled", "steps")),
}
#: The CI smoke run: a tiny set, a tiny model, a few steps, one seed.
QUICK: dict[str, Any] = {
    "num_train": 24,
    "num_val": 6,
    "labeled": 12,
    "steps": 4,
    "eval_every": 2,
    "seeds": [0],
    "ablation_seeds": [0],
    "train": [
        "--input-size", "64", "64", "--width", "0.125", "--batch-size", "4",
        "--unlabeled-batch-size", "4", "--vis-count", "0", "--pseudo-every", "2",
    ],
}  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The benchmark's budget, which arms and seeds, where runs and the record go."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run, for CI")
    parser.add_argument("--table", action="store_true", help="print the record's table only")
    parser.add_argument(
        "--plot-calibration",
        type=Path,
        default=None,
        metavar="RECORD",
        help="plot a calibration record (records/ssl_calibration.json) beside it, and exit",
    )
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="every arm's seeds")
    parser.add_argument("--steps", type=int, default=None, help="steps per run")
    parser.add_argument("--labeled", type=int, default=None, help="labelled people (few arms)")
    parser.add_argument("--device", default=None, help="passed to train.py")
    parser.add_argument("--cache", type=Path, default=None, help="where the data set is made")
    parser.add_argument("--work", type=Path, default=None, help="run folders (resumable)")
    parser.add_argument("--record", type=Path, default=None, help="the JSON record")
    parser.add_argument(
        "train_flags",
        nargs=argparse.REMAINDER,
        help="after --: more train.py flags for every run (ablations)",
    )
    args = parser.parse_args(argv)
    if args.train_flags[:1] == ["--"]:
        args.train_flags = args.train_flags[1:]
    if args.record is None:
        args.record = RESULTS / "ssl_synthetic_quick.json" if args.quick else RECORD
    if args.work is None:  # the quick run starts afresh every time
        args.work = Path(tempfile.mkdtemp()) if args.quick else RESULTS / "ssl_synthetic"
    return args


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per arm: student AP mean, std (0 for one seed) and count, teacher AP mean, AP50."""
    summary = {}
    for arm in ARMS:
        mine = [r for r in runs if r["arm"] == arm]
        if not mine:
            continue
        ap = [r["metrics"]["student"]["AP"] for r in mine]
        summary[arm] = {
            "AP_mean": statistics.fmean(ap),
            "AP_std": statistics.stdev(ap) if len(ap) > 1 else 0.0,
            "n": len(ap),
            "teacher_AP_mean": statistics.fmean(r["metrics"]["teacher"]["AP"] for r in mine),
            "AP50_mean": statistics.fmean(r["metrics"]["student"]["AP50"] for r in mine),
            "seconds_mean": statistics.fmean(r["seconds"] for r in mine),
        }
    return summary


def _run_record(arm: str, seed: int, out: Path, seconds: float) -> dict[str, Any]:
    """What the record keeps of one finished run: metrics, AP curve, last diagnostics."""
    result = json.loads((out / "results.json").read_text())
    records = read_metrics(out / "metrics.jsonl")
    curve = [
        [r["step"], r["eval"]["student"]["AP"], r["eval"]["teacher"]["AP"]]
        for r in records
        if "eval" in r
    ]
    pseudo = [r for r in records if "pseudo_pck" in r]
    return {
        "arm": arm,
        "seed": seed,
        "metrics": result["metrics"],
        "curve": curve,
        "pseudo": pseudo,
        "seconds": seconds,
    }


def run_arm(
    arm: str, seed: int, common: list[str], budget: dict[str, Any], work: Path
) -> dict[str, Any]:
    """Train one arm and seed (or read it back, or resume it); returns its record."""
    spec = ARMS[arm]
    out = work / f"{arm}-{seed}"
    timing = out / "seconds.json"
    if (out / "results.json").is_file() and timing.is_file():
        return _run_record(arm, seed, out, json.loads(timing.read_text())["seconds"])
    argv = [
        *common,
        "--method", spec.method,
        "--labeled", str(budget["labeled"] if spec.few else 0),
        *spec.flags, *budget["train"],
        "--seed", str(seed), "--out", str(out),
    ]  # fmt: skip
    spent = json.loads(timing.read_text())["seconds"] if timing.is_file() else 0.0
    if (out / CHECKPOINT).is_file():
        argv.append("--resume")
    else:  # a run killed before its first checkpoint starts over
        argv.append("--overwrite")
    started = time.perf_counter()
    if train.main(argv) != 0:
        raise SystemExit(f"ssl_synthetic: the {arm} run with seed {seed} failed")
    seconds = spent + time.perf_counter() - started
    timing.write_text(json.dumps({"seconds": seconds}))
    return _run_record(arm, seed, out, seconds)


def write_record(
    path: Path,
    meta: dict[str, Any],
    budget: dict[str, Any],
    command: str,
    runs: list[dict[str, Any]],
) -> None:
    """The record: metadata, the command, the budget, every run, the summary."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "meta": meta,
        "command": command,
        "budget": budget,
        "summary": summarize(runs),
        "runs": runs,
    }
    path.write_text(json.dumps(record, indent=1) + "\n")


def table(record: dict[str, Any]) -> str:
    """The README's markdown table of a record."""
    lines = [
        "| arm | seeds | student AP (mean +- std) | teacher AP | student AP50 | min/run |",
        "|---|---|---|---|---|---|",
    ]
    for arm, row in record["summary"].items():
        lines.append(
            f"| {arm} | {row['n']} | {row['AP_mean']:.3f} +- {row['AP_std']:.3f} "
            f"| {row['teacher_AP_mean']:.3f} | {row['AP50_mean']:.3f} "
            f"| {row['seconds_mean'] / 60:.1f} |"
        )
    return "\n".join(lines)


def diagnostics_table(record: dict[str, Any]) -> str:
    """Per semi-supervised arm, the pseudo-label diagnostics averaged over the last third
    of every run and over its seeds: PCK of the teacher's targets (all, per group), their
    mean peak, and the student's mean peak with BatchNorm on running and batch statistics."""
    keys = {
        "PCK": "pseudo_pck",
        "head": "pseudo_pck_head",
        "arms": "pseudo_pck_arms",
        "legs": "pseudo_pck_legs",
        "target peak": "pseudo_peak",
        "student peak, running stats": "pseudo_student_peak_eval",
        "student peak, batch stats": "pseudo_student_peak_batch",
    }
    lines = ["| arm | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    steps = record["budget"]["steps"]
    for arm in record["summary"]:
        late = [
            p
            for r in record["runs"]
            if r["arm"] == arm
            for p in r["pseudo"]
            if p["step"] > 2 * steps / 3
        ]
        if not late:
            continue
        cells = []
        for key in keys.values():
            values = [p[key] for p in late if p.get(key) is not None]
            cells.append(f"{statistics.fmean(values):.3f}" if values else "-")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals(summary: dict[str, dict[str, Any]]) -> list[tuple[str, bool]]:
    """The benchmark's goals, each with whether the record meets it (arms it needs only)."""
    out = []
    ap = {arm: row["AP_mean"] for arm, row in summary.items()}
    if "supervised_all" in ap:
        out.append(
            (f"supervised_all {ap['supervised_all']:.3f} >= 0.50", ap["supervised_all"] >= 0.5)
        )
    if {"supervised_few", "supervised_all"} <= ap.keys():
        bound = 0.67 * ap["supervised_all"]
        out.append(
            (
                f"supervised_few {ap['supervised_few']:.3f} <= 0.67 x supervised_all = {bound:.3f}",
                ap["supervised_few"] <= bound,
            )
        )
    if {"supervised_few", "consistency"} <= ap.keys():
        pooled = math.sqrt(
            (summary["consistency"]["AP_std"] ** 2 + summary["supervised_few"]["AP_std"] ** 2) / 2
        )
        gain, need = ap["consistency"] - ap["supervised_few"], max(0.02, 2 * pooled)
        out.append((f"consistency - supervised_few = {gain:.3f} >= {need:.3f}", gain >= need))
    if {"posemum", "consistency"} <= ap.keys():
        out.append(
            (
                f"posemum {ap['posemum']:.3f} >= consistency {ap['consistency']:.3f}",
                ap["posemum"] >= ap["consistency"],
            )
        )
    return out


def plot(record: dict[str, Any], path: Path) -> None:
    """AP against steps per arm (mean over seeds, a band of one std), the teacher's
    pseudo-label PCK and the student's BatchNorm gap of the semi-supervised arms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for arm in record["summary"]:
        runs = [r for r in record["runs"] if r["arm"] == arm]
        steps = [p[0] for p in runs[0]["curve"]]
        ap = [[r["curve"][i][1] for r in runs] for i in range(len(steps))]
        mean = [statistics.fmean(v) for v in ap]
        std = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in ap]
        (line,) = axes[0].plot(steps, mean, marker="o", markersize=3, label=arm)
        axes[0].fill_between(
            steps,
            [m - s for m, s in zip(mean, std, strict=True)],
            [m + s for m, s in zip(mean, std, strict=True)],
            alpha=0.2,
            color=line.get_color(),
        )
        pseudo = runs[0]["pseudo"]
        if pseudo:
            xs = [p["step"] for p in pseudo]
            pck = [_nan(p["pseudo_pck"]) for p in pseudo]
            gap = [
                _nan(p["pseudo_student_peak_batch"]) - _nan(p["pseudo_student_peak_eval"])
                for p in pseudo
            ]
            axes[1].plot(xs, pck, label=arm, color=line.get_color(), linewidth=1)
            axes[2].plot(xs, gap, label=arm, color=line.get_color(), linewidth=1)
    axes[0].set_title("validation AP (student), mean +- std over seeds", fontsize=9)
    axes[1].set_title("teacher pseudo-label PCK@0.05 on the unlabelled batch (seed 0)", fontsize=9)
    axes[2].set_title("student peak: batch stats - running stats (seed 0)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_calibration(record: dict[str, Any], path: Path) -> None:
    """Validation AP against steps of every run of the calibration record (README)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4))
    for run in record["runs"]:
        steps = [p[0] for p in run["curve"]]
        ax.plot(steps, [p[1] for p in run["curve"]], marker="o", markersize=3, label=run["what"])
    ax.set_xlabel("step", fontsize=8)
    ax.set_ylabel("validation AP (student)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title("calibration runs on the clean synthetic set, seed 0", fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or read back) every arm and seed, write the record and the plot, print the table."""
    args = parse_args(argv)
    if args.plot_calibration is not None:
        png = args.plot_calibration.with_suffix(".png")
        plot_calibration(json.loads(args.plot_calibration.read_text()), png)
        print(f"wrote {png}")
        return 0
    if args.table:
        record = json.loads(args.record.read_text())
        print(table(record))
        print()
        print(diagnostics_table(record))
        print()
        for text, met in goals(record["summary"]):
            print(f"{'met' if met else 'NOT met'}: {text}")
        return 0
    budget = dict(QUICK if args.quick else FULL)
    for key in ("steps", "labeled"):
        if getattr(args, key) is not None:
            budget[key] = getattr(args, key)
    if args.seeds is not None:
        budget["seeds"] = budget["ablation_seeds"] = args.seeds
    budget["train"] = [*budget["train"], *args.train_flags]
    cache = args.work / "data" if args.quick else (args.cache or RuntimeConfig().cache)
    paths = generate_synthetic_coco(
        Path(cache) / f"ssl-benchmark-{budget['num_train']}",
        num_train=budget["num_train"],
        num_val=budget["num_val"],
        progress=not args.quick,
    )
    common = [
        "--images", str(paths.images), "--train-ann", str(paths.train_ann),
        "--val-ann", str(paths.val_ann), "--steps", str(budget["steps"]),
        "--eval-every", str(budget["eval_every"]), "--no-progress",
    ]  # fmt: skip
    if args.device is not None:
        common += ["--device", args.device]
    command = " ".join(
        ["python", "benchmarks/ssl_synthetic.py", *(argv if argv is not None else sys.argv[1:])]
    )
    meta = metadata()  # the code the runs start with, whatever is committed meanwhile
    runs: list[dict[str, Any]] = []
    # seed-major, so that a benchmark stopped early has every arm's first seeds
    for seed in sorted({*budget["seeds"], *budget["ablation_seeds"]}):
        for arm in args.arms:
            if seed in (budget["ablation_seeds"] if ARMS[arm].ablation else budget["seeds"]):
                runs.append(run_arm(arm, seed, common, budget, args.work / "runs"))
                write_record(args.record, meta, budget, command, runs)
    record = json.loads(args.record.read_text())
    png = args.record.with_suffix(".png")
    plot(record, png)
    print(
        f"\nsynthetic set: {budget['labeled']} labelled of {budget['num_train']} people, "
        f"{budget['num_val']} val; {budget['steps']} steps per run"
        + (f"; also {' '.join(args.train_flags)}" if args.train_flags else "")
    )
    print(table(record))
    print(f"wrote {args.record} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
