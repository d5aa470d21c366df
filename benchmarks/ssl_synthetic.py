"""The claims benchmark on the synthetic person set: does each of Pose-MUM's claims hold?

Trains ``examples/train.py`` once per regime, arm and seed on the same data, network,
input size, batches, steps and learning-rate schedule. The runs of one seed are *paired*:
every arm starts from the same initial weights, sees the same batches in the same order
and draws the same random values for everything it shares with another arm (each kind of
draw has its own generator, ``sshpe.methods.STREAMS``). Each claim is then the per-seed
difference of two arms' final student AP, reported as its mean, its 95 % t-interval over
the seeds and a verdict: ``holds`` (interval above 0), ``refuted`` (below 0) or
``unresolved at n``.

=================  ==================================================================
arm                what
=================  ==================================================================
supervised_few     the first ``labeled`` people of the training file only
supervised_all     every training person labelled: the ceiling (fewer seeds)
consistency        SSHPE's PoseCons + Joint Cutout with a classic mean teacher
consistency_eman   the same with an EMAN teacher
posemum_ema        consistency + Pose-MUM mixing (input and feature level), mean teacher
posemum            the same with an EMAN teacher: the method
posemum_input      posemum with input-level mixing only (no feature-level re-mix)
dual               SSHPE's PoseDual: two networks, each the other's teacher (run last)
posemum_dual       PoseDual + Pose-MUM mixing of each network's hard view (run last)
=================  ==================================================================

Two regimes: ``scratch`` trains from random weights; ``pretrained`` starts every arm from
one backbone learned beforehand on people disjoint from the benchmark's (all labels of a
cluttered-style set of another generator seed), converted to the ImageNet classifier
layout so that, as for a user starting from ImageNet weights, the deconvolutions and the
heatmap head are freshly initialised. The pretraining is a step of this benchmark: run
once, cached, resumable, recorded.

The unlabelled pool is the whole training file, labels ignored (they feed only the
pseudo-label diagnostics). Everything is resumable at three levels: a run in the
committed record is not run again (the record is written after every run), a finished
run folder is read back, and a run with a checkpoint is resumed. ``--jobs N`` runs N
workers side by side (one thread each by default); they share the work through claim
files in the run folders.

    python benchmarks/ssl_synthetic.py --jobs 2   # full: writes records/ssl_claims.json
    python benchmarks/ssl_synthetic.py --quick    # smoke run of both regimes for CI
    python benchmarks/ssl_synthetic.py --table    # the claims table from the record
    python benchmarks/ssl_synthetic.py --regimes scratch --arms posemum --seeds 0 \\
        --record /tmp/x.json -- --mix-grid 2 2    # a sensitivity check: flags after --
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "examples"))

import torch  # noqa: E402
import train  # noqa: E402
from _common import RESULTS, metadata  # noqa: E402
from claims import CLAIMS, REGIMES, claims, claims_table, paired_claim  # noqa: E402
from sshpe.checkpoint import CHECKPOINT, CheckpointError, load_checkpoint  # noqa: E402
from sshpe.cli import profile_flags  # noqa: E402
from sshpe.config import RuntimeConfig  # noqa: E402
from sshpe.diagnostics import read_metrics  # noqa: E402
from sshpe.synthetic import generate_synthetic_coco  # noqa: E402

RECORD = HERE / "records" / "ssl_claims.json"


def code_version() -> str:
    """The git sha of the code this process loaded, ``-dirty`` when the trainer's or the
    library's tracked files had uncommitted changes: a run records the code it started
    with, whatever is committed while it trains."""
    sha = str(metadata()["git_sha"])
    paths = ["posemum_aug", "examples/sshpe", "examples/train.py", "benchmarks/ssl_synthetic.py"]
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", *paths],
        capture_output=True,
        text=True,
        cwd=HERE.parent,
    )
    return f"{sha}-dirty" if status.returncode == 0 and status.stdout.strip() else sha


#: Taken when the module is imported, with the code (every worker imports it at its start).
CODE_VERSION = code_version()


@dataclass(frozen=True)
class Arm:
    """One arm: the method, whether only the few labels are used, extra flags, whether it
    runs every seed or only the ``all_seeds`` (the ceiling), and whether it is a later
    addition that runs after every seed of the others (``late``)."""

    method: str
    few: bool = True
    flags: tuple[str, ...] = ()
    every_seed: bool = True
    late: bool = False


ARMS = {
    "supervised_few": Arm("supervised"),
    "supervised_all": Arm("supervised", few=False, every_seed=False),
    "consistency": Arm("consistency"),
    "consistency_eman": Arm("consistency", flags=("--teacher", "eman")),
    "posemum_ema": Arm("posemum", flags=("--teacher", "ema")),
    "posemum": Arm("posemum"),
    "posemum_input": Arm("posemum", flags=("--mix-p-feature", "0")),
    # issue 21's dual-network arms: twice a single network's cost, run after the others
    "dual": Arm("dual", late=True),
    "posemum_dual": Arm("posemum_dual", late=True),
}


#: The full benchmark: data, labels, the per-run budget, seeds, the pretraining. The
#: shared settings were chosen on supervised_few, supervised_all and consistency (see
#: examples/README.md); Pose-MUM's own options are METHOD.md's defaults.
FULL: dict[str, Any] = {
    "num_train": 2000,
    "num_val": 300,
    "labeled": 200,
    "steps": 3000,
    "eval_every": 500,
    "seeds": [0, 1, 2, 3, 4],
    "all_seeds": [0, 1, 2],
    # the rest is train.py's synthetic profile (network, input size, batches, learning
    # rate, EMA momentum), given as flags because this benchmark passes its data as files
    "train": profile_flags("synthetic", skip=("labeled", "steps")),
    "pretrain": {
        "num_train": 3000,
        "num_val": 300,
        "seed": 1,
        "style": "cluttered",
        "steps": 3000,
        "eval_every": 1000,
    },
}
#: The CI smoke run: a tiny set, a tiny model, a few steps, one seed, both regimes.
QUICK: dict[str, Any] = {
    "num_train": 24,
    "num_val": 6,
    "labeled": 12,
    "steps": 4,
    "eval_every": 2,
    "seeds": [0],
    "all_seeds": [0],
    "train": [
        "--input-size", "64", "64", "--width", "0.125", "--batch-size", "4",
        "--unlabeled-batch-size", "4", "--vis-count", "0", "--pseudo-every", "2",
    ],
    "pretrain": {
        "num_train": 12, "num_val": 4, "seed": 1, "style": "cluttered", "steps": 3,
        "eval_every": 0,
    },
}  # fmt: skip


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per regime and arm: student AP mean, std (``None`` for one seed), count, teacher AP
    mean."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for regime in REGIMES:
        for arm in ARMS:
            mine = [r for r in runs if r["regime"] == regime and r["arm"] == arm]
            if not mine:
                continue
            ap = [r["metrics"]["student"]["AP"] for r in mine]
            summary.setdefault(regime, {})[arm] = {
                "AP_mean": statistics.fmean(ap),
                "AP_std": statistics.stdev(ap) if len(ap) > 1 else None,
                "n": len(ap),
                "teacher_AP_mean": statistics.fmean(r["metrics"]["teacher"]["AP"] for r in mine),
                "seconds_mean": statistics.fmean(r["seconds"] for r in mine),
            }
    return summary


def regime_checks(summary: dict[str, dict[str, dict[str, Any]]]) -> list[tuple[str, bool]]:
    """The pretrained regime's conditions (room for the unlabelled data, a better ceiling
    than from scratch), each with whether the record meets it (arms it needs only)."""
    out = []
    pre = {arm: row["AP_mean"] for arm, row in summary.get("pretrained", {}).items()}
    scratch = {arm: row["AP_mean"] for arm, row in summary.get("scratch", {}).items()}
    if {"supervised_few", "supervised_all"} <= pre.keys():
        bound = 0.8 * pre["supervised_all"]
        out.append(
            (
                f"pretrained supervised_few {pre['supervised_few']:.3f} <= 0.8 x "
                f"supervised_all = {bound:.3f}",
                pre["supervised_few"] <= bound,
            )
        )
    if "supervised_all" in pre and "supervised_all" in scratch:
        out.append(
            (
                f"pretrained supervised_all {pre['supervised_all']:.3f} > scratch "
                f"{scratch['supervised_all']:.3f}",
                pre["supervised_all"] > scratch["supervised_all"],
            )
        )
    return out


# --------------------------------------------------------------------------- running


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The benchmark's budget, which regimes, arms and seeds, where runs and the record go."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run, for CI")
    parser.add_argument("--table", action="store_true", help="print the record's tables only")
    parser.add_argument(
        "--write-readmes",
        action="store_true",
        help="with --table: also put the record's claims table into both READMEs and "
        "redraw its plot",
    )
    parser.add_argument(
        "--plot-calibration",
        type=Path,
        default=None,
        metavar="RECORD",
        help="plot a calibration record (records/ssl_calibration.json) beside it, and exit",
    )
    parser.add_argument("--regimes", nargs="+", choices=REGIMES, default=list(REGIMES))
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="every arm's seeds")
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side (default 1)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads per run (default: 1 per job)"
    )
    parser.add_argument("--device", default=None, help="passed to train.py")
    parser.add_argument("--cache", type=Path, default=None, help="where the data sets are made")
    parser.add_argument(
        "--work", type=Path, default=None, help="run folders (resumable; default in --cache)"
    )
    parser.add_argument("--record", type=Path, default=None, help="the JSON record")
    parser.add_argument(
        "train_flags",
        nargs=argparse.REMAINDER,
        help="after --: more train.py flags for every run (sensitivity checks)",
    )
    args = parser.parse_args(argv)
    if args.train_flags[:1] == ["--"]:
        args.train_flags = args.train_flags[1:]
    if not 1 <= args.jobs <= max(1, os.cpu_count() or 1):
        raise SystemExit(f"--jobs must be between 1 and the {os.cpu_count()} CPUs, got {args.jobs}")
    if args.threads is not None and args.threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {args.threads}")
    if args.record is None:
        args.record = RESULTS / "ssl_claims_quick.json" if args.quick else RECORD
    if args.cache is None:
        args.cache = RuntimeConfig().cache
    if args.work is None:  # the quick run starts afresh every time
        args.work = Path(tempfile.mkdtemp()) if args.quick else default_work(args)
    return args


def default_work(args: argparse.Namespace) -> Path:
    """The run folders of the full benchmark, or of a sensitivity check's extra train.py
    flags (a folder of their own, named by their hash, so that no run is read back as
    another's).

    Example:
        >>> default_work(argparse.Namespace(cache=Path("c"), train_flags=[])).as_posix()
        'c/ssl-claims'
        >>> flags = ["--mix-grid", "4", "3"]
        >>> default_work(argparse.Namespace(cache=Path("c"), train_flags=flags)).name
        'ssl-claims-8490a23e5d'
    """
    if not args.train_flags:
        return Path(args.cache) / "ssl-claims"
    digest = hashlib.sha256(json.dumps(args.train_flags).encode()).hexdigest()[:10]
    return Path(args.cache) / f"ssl-claims-{digest}"


@dataclass(frozen=True)
class Job:
    """One training run of the benchmark."""

    regime: str
    arm: str
    seed: int

    @property
    def name(self) -> str:
        """The run folder's name under ``work/runs``."""
        return f"{self.regime}/{self.arm}-{self.seed}"


def jobs(regimes: Sequence[str], arms: Sequence[str], budget: dict[str, Any]) -> list[Job]:
    """Every run, seed-major (a benchmark stopped early has every arm's first seeds) and
    the regimes interleaved (both regimes grow together); the late arms after all others."""
    seeds = sorted({*budget["seeds"], *budget["all_seeds"]})
    return [
        Job(regime, arm, seed)
        for late in (False, True)
        for seed in seeds
        for regime in regimes
        for arm in arms
        if ARMS[arm].late == late
        and seed in (budget["seeds"] if ARMS[arm].every_seed else budget["all_seeds"])
    ]


@contextlib.contextmanager
def claimed(folder: Path) -> Iterator[bool]:
    """Whether this process may work in ``folder``: a claim file made atomically, taken
    over when the process that made it is gone, removed on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    claim = folder / ".claim"
    for _ in range(2):
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(claim.read_text() or 0)
                os.kill(pid, 0)
            except (ValueError, ProcessLookupError, FileNotFoundError):
                claim.unlink(missing_ok=True)  # its owner died: take it over
                continue
            except PermissionError:
                pass
            yield False
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        try:
            yield True
        finally:
            claim.unlink(missing_ok=True)
        return
    yield False


def train_run(out: Path, argv: list[str]) -> float:
    """Train (or resume) the run of ``argv`` in ``out``; returns the seconds it took in
    all, earlier sessions included, and keeps them with every sha it ran at."""
    info_path = out / "run.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {"seconds": 0.0}
    command = " ".join(["python", "examples/train.py", *argv])
    if info.get("command", command) != command:
        raise SystemExit(
            f"ssl_synthetic: {out} holds a run of another command:\n  {info['command']}\n"
            f"not\n  {command}\nGive this benchmark a --work folder of its own."
        )
    # (a run.json of the first version of this benchmark was written once, when finished)
    if (out / "results.json").is_file() and info.get("finished", "command" in info):
        return float(info["seconds"])
    resume = (out / CHECKPOINT).is_file()
    if resume:
        try:
            load_checkpoint(out / CHECKPOINT)
        except CheckpointError as err:  # e.g. written by an older train.py
            print(f"ssl_synthetic: {err}; the run starts over")
            resume = False
    # a run killed before its first checkpoint starts over
    full = [*argv, "--resume" if resume else "--overwrite"]
    info["command"] = command
    info["git_sha"] = [*info.get("git_sha", []), CODE_VERSION]
    info["threads"] = torch.get_num_threads()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def save(final: bool) -> None:  # at the start too: a killed run keeps its sha and time
        seconds = info["seconds"] + time.perf_counter() - started
        info_path.write_text(json.dumps({**info, "seconds": seconds, "finished": final}))

    save(False)
    try:
        status = train.main(full)
    finally:
        save(False)
    if status != 0:
        raise SystemExit(f"ssl_synthetic: {out} failed (exit {status})")
    save(True)
    return float(json.loads(info_path.read_text())["seconds"])


def run_record(job: Job, out: Path) -> dict[str, Any]:
    """What the record keeps of one finished run: command, shas, metrics, AP curve, the
    losses every 100 steps and the pseudo-label diagnostics."""
    info = json.loads((out / "run.json").read_text())
    result = json.loads((out / "results.json").read_text())
    records = read_metrics(out / "metrics.jsonl")
    curve = [
        [r["step"], r["eval"]["student"]["AP"], r["eval"]["teacher"]["AP"]]
        for r in records
        if "eval" in r
    ]
    losses = [
        [r["step"], r["sup"], r.get("unsup")]
        for r in records
        if "sup" in r and r["step"] % 100 == 0
    ]
    return {
        "regime": job.regime,
        "arm": job.arm,
        "seed": job.seed,
        "command": info["command"],
        "git_sha": info["git_sha"],
        "threads": info["threads"],
        "metrics": result["metrics"],
        "curve": curve,
        "losses": losses,
        "pseudo": [r for r in records if "pseudo_pck" in r],
        "seconds": info["seconds"],
    }


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def backbone_from_student(checkpoint: Path, path: Path) -> None:
    """The student of a training checkpoint as an ImageNet-style ResNet classifier state
    (``conv1 / bn1 / layer1..4``, no deconvolutions, no head): what ``--pretrained``
    loads as a backbone, leaving the rest at its initialisation."""
    student = torch.load(checkpoint, map_location="cpu", weights_only=True)["student"]
    rename = {"stem.0.": "conv1.", "stem.1.": "bn1."}
    backbone = {}
    for key, value in student.items():
        if key.startswith(("deconv.", "head.")):
            continue
        new = next((n + key[len(o) :] for o, n in rename.items() if key.startswith(o)), key)
        backbone[new] = value
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(backbone, tmp)
    os.replace(tmp, path)


def pretrain(budget: dict[str, Any], args: argparse.Namespace) -> dict[str, Any] | None:
    """The pretrained regime's backbone: made once (resumable) and cached in the work
    folder; returns its record (``None`` while another worker is making it)."""
    spec = budget["pretrain"]
    folder = args.work / "pretrain"
    backbone = folder / "backbone.pt"
    with claimed(folder) as mine:
        if not mine:
            return None
        paths = generate_synthetic_coco(
            args.cache / f"ssl-pretrain-{spec['num_train']}-{spec['style']}-{spec['seed']}",
            num_train=spec["num_train"],
            num_val=spec["num_val"],
            seed=spec["seed"],
            style=spec["style"],
            progress=not args.quick,
        )
        out = folder / "run"
        argv = [
            *run_flags(paths, spec, args.device), "--method", "supervised", "--labeled", "0",
            *budget["train"], "--seed", "0", "--out", str(out),
        ]  # fmt: skip
        seconds = train_run(out, argv)
        if not backbone.is_file():
            backbone_from_student(out / CHECKPOINT, backbone)
        info = json.loads((out / "run.json").read_text())
        return {
            "data": spec,
            "command": info["command"],
            "git_sha": info["git_sha"],
            "metrics": json.loads((out / "results.json").read_text())["metrics"],
            "seconds": seconds,
            "backbone_sha256": file_sha256(backbone),
        }


def run_flags(paths: Any, spec: dict[str, Any], device: str | None) -> list[str]:
    """The train.py flags of a set's files and a ``spec``'s steps and evaluation period."""
    return [
        "--images", str(paths.images), "--train-ann", str(paths.train_ann),
        "--val-ann", str(paths.val_ann), "--steps", str(spec["steps"]),
        "--eval-every", str(spec["eval_every"]), "--no-progress",
        *(["--device", device] if device else []),
    ]  # fmt: skip


def common_flags(budget: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """The train.py flags every arm shares: the benchmark's data and budget."""
    paths = generate_synthetic_coco(
        args.cache / f"ssl-benchmark-{budget['num_train']}",
        num_train=budget["num_train"],
        num_val=budget["num_val"],
        progress=not args.quick,
    )
    return run_flags(paths, budget, args.device)


def job_argv(job: Job, budget: dict[str, Any], common: list[str], work: Path) -> list[str]:
    """The train.py flags of one run."""
    spec = ARMS[job.arm]
    argv = [
        *common, "--method", spec.method,
        "--labeled", str(budget["labeled"] if spec.few else 0), *spec.flags, *budget["train"],
        "--seed", str(job.seed), "--out", str(work / "runs" / job.name),
    ]  # fmt: skip
    if job.regime == "pretrained":
        argv += ["--pretrained", str(work / "pretrain" / "backbone.pt")]
    return argv


def read_record(path: Path, budget: dict[str, Any]) -> dict[str, Any] | None:
    """The record at ``path`` if it was made with this budget (its runs count as done)."""
    if not path.is_file():
        return None
    record: dict[str, Any] = json.loads(path.read_text())
    return record if record.get("budget") == budget else None


def compact(run: dict[str, Any]) -> dict[str, Any]:
    """A run as the record keeps it: pseudo-label diagnostics every 100 steps, rounded to
    5 decimals (the record of 67 runs stays well below 2 MB)."""

    def rounded(value: Any) -> Any:
        return round(value, 5) if isinstance(value, float) else value

    pseudo = [{k: rounded(v) for k, v in p.items()} for p in run["pseudo"] if p["step"] % 100 == 0]
    return {**run, "pseudo": pseudo}


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write the record atomically, with its runs compacted and its summary and claims
    recomputed."""
    runs = sorted(
        map(compact, record["runs"]),
        key=lambda r: (r["seed"], r["regime"], list(ARMS).index(r["arm"])),
    )
    summary = summarize(runs)
    record = {
        **record,
        "summary": summary,
        "claims": claims(runs),
        "checks": [[text, met] for text, met in regime_checks(summary)],
        "runs": runs,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)


def merge_into_record(path: Path, base: dict[str, Any], new: dict[str, Any]) -> None:
    """Add one finished run (or the pretraining) to the record on disk, which another
    worker may have grown meanwhile (the read-modify-write holds a lock file)."""
    lock = path.with_name(f".{path.name}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        record = read_record(path, base["budget"]) or {**base, "runs": []}
        if "pretrain" in new:
            record["pretrain"] = new["pretrain"]
        else:
            key = (new["regime"], new["arm"], new["seed"])
            record["runs"] = [
                r for r in record["runs"] if (r["regime"], r["arm"], r["seed"]) != key
            ]
            record["runs"].append(new)
        write_record(path, record)


def ensure_backbone(
    record: dict[str, Any], budget: dict[str, Any], args: argparse.Namespace, base: dict[str, Any]
) -> bool:
    """Whether the pretrained regime's backbone is ready: made (or remade, on a machine
    without the cache, and checked to be the recorded one) when no other worker is."""
    backbone = args.work / "pretrain" / "backbone.pt"
    recorded = record.get("pretrain", {}).get("backbone_sha256")
    if recorded is not None and backbone.is_file() and file_sha256(backbone) == recorded:
        return True
    made = pretrain(budget, args)
    if made is None:
        return False
    if recorded is not None and made["backbone_sha256"] != recorded:
        raise SystemExit(
            f"ssl_synthetic: the remade {backbone} differs from the recorded pretrained "
            f"backbone (sha256 {recorded}): the pretrained runs of the record cannot be "
            "continued with it"
        )
    merge_into_record(args.record, base, {"pretrain": made})
    return True


def worker(args: argparse.Namespace, budget: dict[str, Any], base: dict[str, Any]) -> None:
    """Run every job not yet in the record and not claimed by another worker, the
    pretraining before the pretrained regime's runs."""
    threads = args.threads or (1 if args.jobs > 1 else torch.get_num_threads())
    torch.set_num_threads(threads)
    common = common_flags(budget, args)
    while True:
        record = read_record(args.record, budget) or {"runs": []}
        done = {(r["regime"], r["arm"], r["seed"]) for r in record["runs"]}
        todo = [
            j
            for j in jobs(args.regimes, args.arms, budget)
            if (j.regime, j.arm, j.seed) not in done
        ]
        if not todo:
            return
        ready = "pretrained" not in {j.regime for j in todo} or ensure_backbone(
            record, budget, args, base
        )
        ran = False
        for job in todo:
            if job.regime == "pretrained" and not ready:
                continue
            out = args.work / "runs" / job.name
            with claimed(out) as mine:
                if mine:
                    train_run(out, job_argv(job, budget, common, args.work))
                    merge_into_record(args.record, base, run_record(job, out))
                    ran = True
            if ran:
                break
        if not ran:  # what is left is being run (or pretrained for) by other workers
            time.sleep(10)


# --------------------------------------------------------------------------- reporting


def arms_table(record: dict[str, Any]) -> str:
    """Per arm and regime: student AP mean +- std over seeds, teacher AP, minutes per run."""
    lines = [
        "| regime | arm | seeds | student AP (mean +- std) | teacher AP | min/run |",
        "|---|---|---|---|---|---|",
    ]
    for regime, rows in record["summary"].items():
        for arm, row in rows.items():
            std = "-" if row["AP_std"] is None else f"{row['AP_std']:.3f}"
            lines.append(
                f"| {regime} | {arm} | {row['n']} | {row['AP_mean']:.3f} +- {std} "
                f"| {row['teacher_AP_mean']:.3f} | {row['seconds_mean'] / 60:.1f} |"
            )
    return "\n".join(lines)


DIAGNOSTICS = {
    "PCK": "pseudo_pck",
    "head": "pseudo_pck_head",
    "arms": "pseudo_pck_arms",
    "legs": "pseudo_pck_legs",
    "target peak": "pseudo_peak",
    "student peak, running stats": "pseudo_student_peak_eval",
    "student peak, batch stats": "pseudo_student_peak_batch",
}


def diagnostics_table(record: dict[str, Any]) -> str:
    """Per regime and semi-supervised arm, the pseudo-label diagnostics averaged over the
    last third of every run and over its seeds: PCK of the teacher's targets (all, per
    group), their mean peak, and the student's mean peak with BatchNorm on running and
    batch statistics."""
    lines = [
        "| regime | arm | " + " | ".join(DIAGNOSTICS) + " |",
        "|---" * (len(DIAGNOSTICS) + 2) + "|",
    ]
    steps = record["budget"]["steps"]
    for regime, rows in record["summary"].items():
        for arm in rows:
            late = [
                p
                for r in record["runs"]
                if r["arm"] == arm and r["regime"] == regime
                for p in r["pseudo"]
                if p["step"] > 2 * steps / 3
            ]
            if not late:
                continue
            cells = []
            for key in DIAGNOSTICS.values():
                values = [p[key] for p in late if p.get(key) is not None]
                cells.append(f"{statistics.fmean(values):.3f}" if values else "-")
            lines.append(f"| {regime} | {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def late_means(run: dict[str, Any], steps: int) -> dict[str, float]:
    """One run's mechanism quantities: final teacher AP and teacher - student AP, and the
    means over the last third of the run of the losses and the pseudo-label diagnostics
    (target PCK and peak, the student's BatchNorm gap on the easy view, and its PCK with
    running statistics, against the hidden labels)."""
    late = [p for p in run["pseudo"] if p["step"] > 2 * steps / 3]
    losses = [x for x in run.get("losses", []) if x[0] > 2 * steps / 3]
    student, teacher = run["metrics"]["student"]["AP"], run["metrics"]["teacher"]["AP"]
    out = {"teacher AP": teacher, "teacher - student AP": teacher - student}

    def mean(values: list[float | None]) -> float | None:
        kept = [v for v in values if v is not None]
        return statistics.fmean(kept) if kept else None

    columns = {
        "sup loss": mean([x[1] for x in losses]),
        "unsup loss": mean([x[2] for x in losses]),
        "target PCK": mean([p.get("pseudo_pck") for p in late]),
        "target peak": mean([p.get("pseudo_peak") for p in late]),
        "student PCK": mean([p.get("pseudo_student_pck_eval") for p in late]),
        "student BN gap": mean(
            [
                None
                if p.get("pseudo_student_peak_batch") is None
                or p.get("pseudo_student_peak_eval") is None
                else p["pseudo_student_peak_batch"] - p["pseudo_student_peak_eval"]
                for p in late
            ]
        ),
    }
    return out | {k: v for k, v in columns.items() if v is not None}


def mechanism_table(record: dict[str, Any]) -> str:
    """Per regime and semi-supervised claim, the paired per-seed difference of each
    :func:`late_means` quantity (mean and 95 % interval): what the two arms do
    differently, beyond their AP."""
    steps = record["budget"]["steps"]
    by_key = {(r["regime"], r["arm"], r["seed"]): late_means(r, steps) for r in record["runs"]}
    names = [
        "teacher AP", "teacher - student AP", "sup loss", "unsup loss", "target PCK",
        "target peak", "student PCK", "student BN gap",
    ]  # fmt: skip
    lines = [
        "| regime | claim | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for regime, entries in record["claims"].items():
        for name, entry in entries.items():
            claim = CLAIMS[name]
            if claim.worse.startswith("supervised"):
                continue
            cells = []
            for quantity in names:
                diffs = [
                    by_key[regime, claim.better, s][quantity]
                    - by_key[regime, claim.worse, s][quantity]
                    for s in entry["seeds"]
                    if quantity in by_key[regime, claim.better, s]
                    and quantity in by_key[regime, claim.worse, s]
                ]
                if not diffs:
                    cells.append("-")
                    continue
                pair = paired_claim(diffs)
                ci = pair["ci95"]
                scale = 1000 if "loss" in quantity else 1  # losses in 1e-3
                interval = f" [{ci[0] * scale:+.3f}, {ci[1] * scale:+.3f}]" if ci else ""
                # a seed whose run lacks the quantity is left out, and the cell says so
                fewer = f", n={pair['n']}" if pair["n"] < len(entry["seeds"]) else ""
                cells.append(f"{pair['diff_mean'] * scale:+.3f}{interval}{fewer}")
            lines.append(f"| {regime} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(record: dict[str, Any], path: Path) -> None:
    """Per regime, AP against steps per arm (mean over seeds); then every claim's paired
    differences per seed with the mean and its 95 % interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes = list(record["summary"])
    fig, axes = plt.subplots(1, len(regimes) + 1, figsize=(5 * (len(regimes) + 1), 3.8))
    for ax, regime in zip(axes, regimes, strict=False):
        for arm in record["summary"][regime]:
            runs = [r for r in record["runs"] if r["arm"] == arm and r["regime"] == regime]
            steps = [p[0] for p in runs[0]["curve"]]
            mean = [statistics.fmean(r["curve"][i][1] for r in runs) for i in range(len(steps))]
            ax.plot(steps, mean, marker="o", markersize=3, label=f"{arm} (n={len(runs)})")
        ax.set_title(f"{regime}: validation AP (student), mean over seeds", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    ax = axes[-1]
    names = list(CLAIMS)
    for k, regime in enumerate(regimes):
        offset = -0.15 + 0.3 * k
        for i, name in enumerate(names):
            entry = record["claims"].get(regime, {}).get(name)
            if entry is None:
                continue
            y = i + offset
            ax.scatter(entry["diffs"], [y] * len(entry["diffs"]), s=8, color=f"C{k}", alpha=0.5)
            if entry["ci95"]:
                ax.plot(entry["ci95"], [y, y], color=f"C{k}", linewidth=2)
            ax.scatter([entry["diff_mean"]], [y], marker="D", color=f"C{k}",
                       label=regime if i == 0 else None)  # fmt: skip
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(names)), [f"{n}: {CLAIMS[n].what}" for n in names], fontsize=7)
    ax.set_ylim(len(names) - 0.5, -0.5)  # the first claim on top, no marker clipped
    ax.margins(x=0.15)
    ax.set_xlabel("student AP difference (per seed, mean, 95 % interval)", fontsize=8)
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


#: The READMEs that show the claims table, between :data:`TABLE_START` and :data:`TABLE_END`.
READMES = (HERE.parent / "README.md", HERE.parent / "examples" / "README.md")
TABLE_START = "<!-- claims table: python benchmarks/ssl_synthetic.py --table --write-readmes -->"
TABLE_END = "<!-- end of claims table -->"


def write_claims_into(path: Path, table: str) -> None:
    """Replace the claims table between the markers of ``path`` by ``table``."""
    text = path.read_text()
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < start:
        raise SystemExit(f"ssl_synthetic: {path} has no claims table markers")
    path.write_text(text[: start + len(TABLE_START)] + "\n" + table + "\n" + text[end:])


def print_tables(record: dict[str, Any]) -> None:
    """The claims, the arms, the diagnostics and the regime checks of a record."""
    print(claims_table(record))
    print()
    print(arms_table(record))
    print()
    print(diagnostics_table(record))
    print()
    print("paired differences (better - worse arm of each claim; losses in 1e-3):")
    print(mechanism_table(record))
    print()
    for text, met in record["checks"]:
        print(f"{'met' if met else 'NOT met'}: {text}")
    print(progress(record))


def progress(record: dict[str, Any]) -> str:
    """How much of the full benchmark the record holds: its runs of the claims arms and of
    the late (dual) arms, each against the full benchmark's count."""
    done = {(r["regime"], r["arm"], r["seed"]) for r in record["runs"]}
    parts = []
    for late, what in ((False, "claims arms"), (True, "dual arms")):
        planned = [j for j in jobs(REGIMES, list(ARMS), FULL) if ARMS[j.arm].late == late]
        have = sum((j.regime, j.arm, j.seed) in done for j in planned)
        parts.append(f"{what} {have} of {len(planned)}")
    return f"record: {len(done)} runs ({', '.join(parts)})"


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or read back) every regime, arm and seed, write the record and the plot,
    print the tables."""
    args = parse_args(argv)
    if args.plot_calibration is not None:
        png = args.plot_calibration.with_suffix(".png")
        plot_calibration(json.loads(args.plot_calibration.read_text()), png)
        print(f"wrote {png}")
        return 0
    if args.table:
        record = json.loads(args.record.read_text())
        print_tables(record)
        if args.write_readmes:
            for path in READMES:
                write_claims_into(path, claims_table(record))
                print(f"wrote the claims table into {path}")
            plot(record, args.record.with_suffix(".png"))
        return 0
    budget = dict(QUICK if args.quick else FULL)
    if args.seeds is not None:
        budget["seeds"] = budget["all_seeds"] = args.seeds
    budget["train"] = [*budget["train"], *args.train_flags]
    command = " ".join(
        ["python", "benchmarks/ssl_synthetic.py", *(argv if argv is not None else sys.argv[1:])]
    )
    if args.quick:  # a smoke run starts afresh
        args.record.unlink(missing_ok=True)
    old = read_record(args.record, budget)
    if old is None and args.record.is_file():
        raise SystemExit(
            f"ssl_synthetic: {args.record} was made with another budget (seeds or train.py "
            "flags), and its runs would be lost: give this benchmark a --record of its own"
        )
    base = {"meta": old["meta"] if old else metadata(), "command": command, "budget": budget}
    common_flags(budget, args)  # the data set, made once before the workers start
    if args.jobs == 1:
        worker(args, budget, base)
    else:
        context = multiprocessing.get_context("spawn")
        workers = [
            context.Process(target=worker, args=(args, budget, base)) for _ in range(args.jobs)
        ]
        for process in workers:
            process.start()
        for process in workers:
            process.join()
        failed = [p.exitcode for p in workers if p.exitcode != 0]
        if failed:
            raise SystemExit(f"ssl_synthetic: a worker failed (exit {failed[0]})")
    record = json.loads(args.record.read_text())
    png = args.record.with_suffix(".png")
    plot(record, png)
    print(
        f"\nsynthetic set: {budget['labeled']} labelled of {budget['num_train']} people, "
        f"{budget['num_val']} val; {budget['steps']} steps per run"
        + (f"; also {' '.join(args.train_flags)}" if args.train_flags else "")
    )
    print_tables(record)
    print(f"wrote {args.record} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
