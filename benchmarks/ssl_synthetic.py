"""Semi-supervised benchmark: supervised vs consistency (EMA teacher) vs posemum (EMAN).

Trains ``examples/train.py`` on the synthetic person set with few labels (the first
``--labeled`` people of the training file) and the whole training file as the unlabelled
pool, for each method and seed, and reports the validation AP (SSHPE protocol) of the
student and the teacher as mean and standard deviation over seeds.

Same compute budget: every run takes the same number of steps with the same labelled batch
(and, for the semi-supervised methods, the same unlabelled batch), the same network,
input size and learning-rate schedule. The supervised run keeps an EMAN copy of its
student for evaluation, so its "teacher" row is a weight average too.

    python benchmarks/ssl_synthetic.py            # full: 3 seeds (long; see the README)
    python benchmarks/ssl_synthetic.py --quick    # smoke run for CI: seconds
    python benchmarks/ssl_synthetic.py --methods posemum -- --teacher ema   # an ablation

Writes ``results/ssl_synthetic.json`` (every run and the summary) and
``results/ssl_synthetic.png`` (AP per method, mean and std over seeds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "examples"))

import train  # noqa: E402
from _common import RESULTS, print_table, write_json  # noqa: E402
from sshpe.methods import METHODS  # noqa: E402
from sshpe.synthetic import generate_synthetic_coco  # noqa: E402

#: The full benchmark: data, labels and the per-run budget.
FULL = {
    "num_train": 2000,
    "num_val": 300,
    "labeled": 200,
    "steps": 1200,
    "seeds": [0, 1, 2],
    # the rest is train.py's synthetic profile (the README job's network, input size,
    # batches, learning rate and EMA momentum), given as flags because this benchmark
    # passes its data as files; twice the README job's steps
    "train": train.profile_flags("synthetic", skip=("labeled", "steps")),
}
#: The CI smoke run: a tiny set, a tiny model, a few steps, one seed.
QUICK = {
    "num_train": 24,
    "num_val": 6,
    "labeled": 12,
    "steps": 3,
    "seeds": [0],
    "train": [
        "--input-size", "64", "64", "--width", "0.125", "--batch-size", "4",
        "--unlabeled-batch-size", "4", "--vis-count", "0",
    ],
}  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``--quick`` and ``--out`` as every benchmark, plus the run's budget."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run, for CI")
    parser.add_argument("--out", type=Path, default=None, help="JSON output path")
    parser.add_argument("--steps", type=int, default=None, help="steps per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--labeled", type=int, default=None, help="labelled people")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--device", default=None, help="passed to train.py")
    parser.add_argument("--cache", type=Path, default=None, help="where the data set is made")
    parser.add_argument(
        "train_flags",
        nargs=argparse.REMAINDER,
        help="after --: more train.py flags for every run (ablations, e.g. -- --teacher ema)",
    )
    args = parser.parse_args(argv)
    if args.train_flags[:1] == ["--"]:
        args.train_flags = args.train_flags[1:]
    return args


def summarize(runs: list[dict[str, Any]], methods: Sequence[str]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds of each method's student and teacher AP."""
    rows = []
    for method in methods:
        mine = [r for r in runs if r["method"] == method]
        row: dict[str, Any] = {"method": method, "seeds": len(mine)}
        for model in ("student", "teacher"):
            for metric in ("AP", "AP50"):
                values = [r["metrics"][model][metric] for r in mine]
                row[f"{model} {metric}"] = statistics.fmean(values)
                if metric == "AP":
                    row[f"{model} AP std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        row["s/run"] = statistics.fmean(r["seconds"] for r in mine)
        rows.append(row)
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Bar chart of student and teacher AP per method, with the std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    width = 0.38
    for i, model in enumerate(("student", "teacher")):
        xs = [j + (i - 0.5) * width for j in range(len(rows))]
        ax.bar(
            xs,
            [r[f"{model} AP"] for r in rows],
            width,
            yerr=[r[f"{model} AP std"] for r in rows],
            capsize=3,
            label=model,
        )
    ax.set_xticks(range(len(rows)), [r["method"] for r in rows])
    ax.set_ylabel("val AP (OKS)")
    ax.set_title(f"synthetic set, {rows[0]['seeds']} seed(s)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every method and seed, print the table, write the JSON and the plot."""
    args = parse_args(argv)
    budget = dict(QUICK if args.quick else FULL)
    for key in ("steps", "seeds", "labeled"):
        if getattr(args, key) is not None:
            budget[key] = getattr(args, key)
    budget["train"] = [*budget["train"], *args.train_flags]
    with tempfile.TemporaryDirectory() as tmp:
        cache = (
            Path(tmp) if args.quick else (args.cache or train.build_parser().get_default("cache"))
        )
        paths = generate_synthetic_coco(
            Path(cache) / f"ssl-benchmark-{budget['num_train']}",
            num_train=budget["num_train"],
            num_val=budget["num_val"],
            progress=not args.quick,
        )
        common = [
            "--images", str(paths.images), "--train-ann", str(paths.train_ann),
            "--val-ann", str(paths.val_ann), "--labeled", str(budget["labeled"]),
            "--steps", str(budget["steps"]), "--no-progress", *budget["train"],
        ]  # fmt: skip
        if args.device is not None:
            common += ["--device", args.device]
        runs = []
        for seed in budget["seeds"]:
            for method in args.methods:
                out = Path(tmp) / f"{method}-{seed}"
                started = time.perf_counter()
                argv_run = [*common, "--method", method, "--seed", str(seed), "--out", str(out)]
                if train.main(argv_run) != 0:
                    return 1
                result = json.loads((out / "results.json").read_text())
                runs.append(
                    {
                        "method": method,
                        "seed": seed,
                        "metrics": result["metrics"],
                        "seconds": time.perf_counter() - started,
                    }
                )
    rows = summarize(runs, args.methods)
    print(
        f"\nsynthetic set: {budget['labeled']} labelled of {budget['num_train']} people, "
        f"{budget['num_val']} val; {budget['steps']} steps per run"
        + (f"; also {' '.join(args.train_flags)}" if args.train_flags else "")
    )
    columns = ["method", "seeds", "student AP", "student AP std", "teacher AP", "teacher AP std",
               "student AP50", "teacher AP50", "s/run"]  # fmt: skip
    print_table(rows, columns)
    json_path = write_json("ssl_synthetic", [{"budget": budget}, *rows, *runs], args.out)
    png = (args.out or RESULTS / "ssl_synthetic.json").with_suffix(".png")
    plot(rows, png)
    print(f"wrote {json_path} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
