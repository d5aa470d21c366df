"""What Pose-MUM's mixing does to the claims benchmark's students, read off their final weights.

For every finished run of a claims record (``records/ssl_claims.json`` and its run
folders), the final student is scored on the validation crops twice:

* **clean**: as the AP is measured (eval mode, BatchNorm on running statistics);
* **mixed**: as training mixes the hard view, without its other augmentations: groups of
  ``G`` crops exchange tiles at the input (the run's group size and grid), the network
  normalises with the batch's statistics (running statistics frozen) in batches of the
  run's unlabelled batch size, and its features are unmixed at the run's unmix point.
  The plans come from one seed, the same for every run.

The score is PCK: a joint counts when the decoded peak (the run's decoder) lies within
0.05 of the crop height of its label; joints outside the crop are left out. The mixed
PCK is also split by *routing*: where a map is not divisible by the grid (ResNet's
``layer4`` is 4 x 3 at 128 x 96 under a 4 x 4 grid), some cells of the unmix point hold
features of one input tile but are unmixed with the plan of its neighbour. A joint is
routed right when the unmix gives the features of the cell that holds it back to its own
sample: always when the cell and the joint lie in the same tile, and otherwise when the
batch's plan happens to draw that sample for both tiles.

Paired by seed, each of the claims' arm pairs (``claims.CLAIMS``) gets the mean
difference of both PCKs with its 95 % t-interval: whether mixing teaches the network the
mixed task, and whether that carries over to clean crops.

    python benchmarks/mixing_probe.py          # writes records/mixing_probe.json and .png
    python benchmarks/mixing_probe.py --table  # the tables from that record
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "examples"))

import torch  # noqa: E402
from _common import metadata  # noqa: E402
from claims import REGIMES, paired_by_seed  # noqa: E402
from sshpe.checkpoint import CHECKPOINT  # noqa: E402
from sshpe.config import RuntimeConfig  # noqa: E402
from sshpe.data import TopDownDataset, evaluation_instances, load_coco_persons  # noqa: E402
from sshpe.models import build_model  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from posemum_aug.batchnorm import frozen_running_stats  # noqa: E402
from posemum_aug.heatmap import decode_heatmaps  # noqa: E402
from posemum_aug.mix import PoseMUM, TilePlan, attach, mix_keypoints, tile_bounds  # noqa: E402

RECORD = HERE / "records" / "mixing_probe.json"
CLAIMS_RECORD = HERE / "records" / "ssl_claims.json"
#: PCK threshold, a fraction of the crop height (as the trainer's pseudo-label diagnostics).
ALPHA = 0.05


def validation_crops(config: dict[str, Any]) -> dict[str, Tensor]:
    """The run's validation crops: ``image`` ``(N, 3, H, W)``, ``keypoints`` ``(N, K, 2)``
    and ``labelled`` ``(N, K)`` (labelled and inside the crop)."""
    data = config["data"]
    height, width = config["model"]["input_size"]
    persons = load_coco_persons(data["val_ann"])
    dataset = TopDownDataset(
        evaluation_instances(persons),
        Path(data["val_images"] or data["images"]),
        (height, width),
        persons.skeleton.num_joints,
    )
    samples = [dataset[i] for i in range(len(dataset))]
    keypoints = torch.stack([s["keypoints"] for s in samples])
    inside = (keypoints >= 0).all(-1) & (keypoints[..., 0] < width) & (keypoints[..., 1] < height)
    labelled = torch.stack([s["visibility"] for s in samples]).bool() & inside
    return {
        "image": torch.stack([s["image"] for s in samples]),
        "keypoints": keypoints,
        "labelled": labelled,
    }


def _tile_index(position: Tensor, size: int, tiles: int) -> Tensor:
    """Which of ``tiles`` tiles (:func:`~posemum_aug.mix.tile_bounds`) holds each pixel."""
    bounds = torch.tensor(tile_bounds(size, tiles)[1:-1])
    return torch.bucketize(position, bounds, right=True)


def routed_right(
    keypoints: Tensor, size: Sequence[int], cells: Sequence[int], plan: TilePlan
) -> Tensor:
    """``(B, K)`` whether the unmix gives each joint's features back to its own sample.

    Sample ``s``'s joint lies in the pixel ``(round(y), round(x))`` (as
    :func:`~posemum_aug.mix.mix_keypoints` places it), so in one input tile, which ``plan``
    gives to the mixed sample ``b``. At the unmix point's map the joint's features lie in
    the cell that covers that pixel, in tile ``t`` of that map's grid; the unmix sends
    them to sample ``plan.source[b, t]``. The joint is routed right when that is ``s``.

    Args:
        keypoints: ``(B, K, 2)`` crop pixels ``(x, y)`` (a joint outside the crop is not
            mixed and its answer means nothing).
        size: ``(H, W)`` of the crop.
        cells: ``(h, w)`` of the unmix point's map.
        plan: the batch's input plan, ``B`` samples.

    Example:
        >>> points = torch.tensor([[[10.0, 5.0], [30.0, 5.0]], [[10.0, 5.0], [30.0, 5.0]]])
        >>> swap = TilePlan(torch.tensor([[[1, 0, 1, 0]], [[0, 1, 0, 1]]]))  # 1 x 4 tiles
        >>> routed_right(points, (128, 96), (4, 3), swap).tolist()  # cell 0 is tile 1's
        [[False, True], [False, True]]
        >>> same = TilePlan(torch.tensor([[[1, 1, 0, 0]], [[0, 0, 1, 1]]]))
        >>> routed_right(points, (128, 96), (4, 3), same).tolist()  # tiles 0, 1 move as one
        [[True, True], [True, True]]
    """
    owner = mix_keypoints(keypoints, plan, size)  # the mixed sample that holds each joint
    tile_out = []
    for axis, coordinate in ((0, 1), (1, 0)):  # rows hold y, columns x
        pixel = keypoints[..., coordinate].round().long().clamp(0, size[axis] - 1)
        cell = pixel * cells[axis] // size[axis]
        tile_out.append(_tile_index(cell, cells[axis], plan.grid[axis]))
    back_to = plan.source[owner, tile_out[0], tile_out[1]]
    return back_to == torch.arange(len(keypoints)).view(-1, 1)


def _correct(heatmaps: Tensor, crops: dict[str, Tensor], decode: str) -> Tensor:
    """``(N, K)`` whether each decoded peak lies within ``ALPHA`` of the crop height."""
    peaks, _ = decode_heatmaps(heatmaps.float(), refine=decode)
    height = crops["image"].shape[-2]
    error = (peaks * height / heatmaps.shape[-2] - crops["keypoints"]).norm(dim=-1)
    return error <= ALPHA * height


@torch.no_grad()
def probe_run(
    model: nn.Module, config: dict[str, Any], crops: dict[str, Tensor], plan_seed: int
) -> dict[str, float]:
    """Clean and mixed PCK of one network (see the module's docstring)."""
    method = config["method"]
    decode = method["decode"]
    batch = config["schedule"]["unlabeled_batch_size"]
    images, labelled = crops["image"], crops["labelled"]

    def predict() -> Tensor:
        return torch.cat([model(images[i : i + batch]) for i in range(0, len(images), batch)])

    def routing(i: int) -> Tensor:
        """Whether each joint of the batch at ``i`` is routed right (its plan's)."""
        keypoints, size = crops["keypoints"][i : i + batch], images.shape[-2:]
        return routed_right(keypoints, size, cells, plans[i // batch])

    model.eval()
    clean = predict()
    mum = PoseMUM(
        group_size=method["mix_group"],
        grid=method["mix_grid"],
        p=1.0,
        p_feature=0.0,
        generator=torch.Generator().manual_seed(plan_seed),
    )
    cells: list[int] = []  # (h, w) of the unmix point's map
    plans: list[TilePlan] = []  # each batch's input plan

    def record_plan(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
        # run before attach's unmix hook (prepended), so the batch's plan is still open
        if mum.plan is None:
            raise RuntimeError("the probe's PoseMUM (p = 1) left a batch unmixed")
        cells[:] = output.shape[-2:]
        plans.append(mum.plan)

    handle = attach(model, mum, method["mix_at"], method["unmix_at"])  # checks the names
    unmix_point = model.get_submodule(method["unmix_at"])
    plan_hook = unmix_point.register_forward_hook(record_plan, prepend=True)
    model.train()
    try:
        with frozen_running_stats(model):
            mixed = predict()
    finally:
        handle.remove()
        plan_hook.remove()
        model.eval()
    right = torch.cat([routing(i) for i in range(0, len(images), batch)])
    ok_clean, ok_mixed = _correct(clean, crops, decode), _correct(mixed, crops, decode)

    def pck(correct: Tensor, mask: Tensor) -> float | None:
        """The share of ``correct`` joints in ``mask``; ``None`` when it holds none."""
        return float(correct[mask].float().mean()) if mask.any() else None

    return {
        "clean_pck": pck(ok_clean, labelled),
        "mixed_pck": pck(ok_mixed, labelled),
        "mixed_pck_routed_right": pck(ok_mixed, labelled & right),
        "mixed_pck_routed_wrong": pck(ok_mixed, labelled & ~right),
        "routed_right_share": pck(right, labelled),
        "unmix_map": list(cells),
    }


def probe(
    runs: list[dict[str, Any]], work: Path, plan_seed: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """:func:`probe_run` for every run of ``runs`` whose folder under ``work/runs`` holds
    its final checkpoint; also the runs left out, each with why."""
    out, skipped = [], []
    crops: dict[str, dict[str, Tensor]] = {}
    for run in runs:
        name = f"{run['regime']}/{run['arm']}-{run['seed']}"
        folder = work / "runs" / run["regime"] / f"{run['arm']}-{run['seed']}"
        if not (folder / CHECKPOINT).is_file():
            skipped.append(f"{name}: no {folder / CHECKPOINT}")
            continue
        config = json.loads((folder / "config.json").read_text())
        # the weights only: checkpoints of runs begun before the trainer wrote checksums
        # cannot be resumed but hold the same final student; the file's hash is recorded
        data = (folder / CHECKPOINT).read_bytes()
        checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if checkpoint["step"] != checkpoint["total_steps"]:
            skipped.append(f"{name}: checkpoint at step {checkpoint['step']}, not the last")
            continue
        files, size = config["data"], config["model"]["input_size"]
        key = json.dumps([files["val_ann"], files["val_images"] or files["images"], size])
        if key not in crops:
            crops[key] = validation_crops(config)
        model = build_model(
            config["model"]["arch"], crops[key]["keypoints"].shape[1], config["model"]["width"]
        )
        model.load_state_dict(checkpoint["student"])
        scores = probe_run(model, config, crops[key], plan_seed)
        out.append(
            {
                "regime": run["regime"],
                "arm": run["arm"],
                "seed": run["seed"],
                **scores,
                "checkpoint_sha256": hashlib.sha256(data).hexdigest(),
            }
        )
        print(
            f"{name}: clean {scores['clean_pck']:.3f}, mixed {scores['mixed_pck']:.3f}",
            flush=True,
        )
    return out, skipped


def pairs(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per regime and claim, the paired difference (``better - worse``) of the clean and
    of the mixed PCK over the seeds where both arms were probed."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for score in ("clean_pck", "mixed_pck"):
        paired = paired_by_seed({(r["regime"], r["arm"], r["seed"]): r[score] for r in rows})
        for regime, entries in paired.items():
            for name, entry in entries.items():
                slot = out.setdefault(regime, {}).setdefault(
                    name, {"difference": entry["difference"], "seeds": entry["seeds"]}
                )
                slot[score] = {k: entry[k] for k in ("diff_mean", "ci95", "n", "verdict", "diffs")}
    return out


def _cell(entry: dict[str, Any]) -> str:
    interval = entry["ci95"]
    span = "" if interval is None else f" [{interval[0]:+.3f}, {interval[1]:+.3f}]"
    return f"{entry['diff_mean']:+.3f}{span}, n={entry['n']}"


#: The per-arm table's scores, in its column order.
ARM_COLUMNS = (
    "clean_pck", "mixed_pck", "mixed_pck_routed_right", "mixed_pck_routed_wrong",
    "routed_right_share",
)  # fmt: skip


def tables(record: dict[str, Any]) -> str:
    """Per regime and arm the mean PCKs; per claim the paired differences."""
    lines = [
        "| regime | arm | seeds | clean PCK | mixed PCK | mixed, routed right | "
        "mixed, routed wrong | routed right |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for regime in REGIMES:
        arms = dict.fromkeys(r["arm"] for r in record["runs"] if r["regime"] == regime)
        for arm in arms:
            mine = [r for r in record["runs"] if r["regime"] == regime and r["arm"] == arm]
            values = [[r[k] for r in mine if r[k] is not None] for k in ARM_COLUMNS]
            shown = " | ".join(f"{statistics.fmean(v):.3f}" if v else "-" for v in values)
            lines.append(f"| {regime} | {arm} | {len(mine)} | {shown} |")
    lines += [
        "",
        "| regime | claim | difference | clean PCK | mixed PCK |",
        "|---|---|---|---|---|",
    ]
    for regime, entries in record["pairs"].items():
        for name, entry in entries.items():
            lines.append(
                f"| {regime} | {name} | {entry['difference']} | {_cell(entry['clean_pck'])} | "
                f"{_cell(entry['mixed_pck'])} |"
            )
    return "\n".join(lines)


def plot(record: dict[str, Any], path: Path) -> None:
    """Per regime, every arm's clean and mixed PCK: one dot per seed, a bar at the mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes = [g for g in REGIMES if any(r["regime"] == g for r in record["runs"])]
    fig, axes = plt.subplots(1, len(regimes), figsize=(6 * len(regimes), 3.6), squeeze=False)
    for ax, regime in zip(axes[0], regimes, strict=True):
        arms = list(dict.fromkeys(r["arm"] for r in record["runs"] if r["regime"] == regime))
        for k, (score, label) in enumerate((("clean_pck", "clean"), ("mixed_pck", "mixed"))):
            for i, arm in enumerate(arms):
                values = [
                    r[score] for r in record["runs"] if r["regime"] == regime and r["arm"] == arm
                ]
                x = i + (k - 0.5) * 0.38
                ax.bar(x, statistics.fmean(values), width=0.36, color=f"C{k}", alpha=0.45,
                       label=label if i == 0 else None)  # fmt: skip
                ax.scatter([x] * len(values), values, s=8, color=f"C{k}")
        ax.set_xticks(range(len(arms)), arms, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(f"PCK@{ALPHA} of the final student", fontsize=8)
        ax.set_title(f"{regime}: validation crops, clean and input-mixed", fontsize=9)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper right", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(HERE.parent))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Probe every finished run of the claims record, write the record, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="print the record's tables only")
    parser.add_argument(
        "--claims", type=Path, default=CLAIMS_RECORD, help="the claims record to probe"
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="its run folders (default: the benchmark's)"
    )
    parser.add_argument("--plan-seed", type=int, default=0, help="seed of the mixing plans")
    parser.add_argument("--record", type=Path, default=RECORD, help="the JSON record to write")
    args = parser.parse_args(argv)
    if args.table:
        print(tables(json.loads(args.record.read_text())))
        return 0
    torch.set_num_threads(1)
    work = args.work if args.work is not None else RuntimeConfig().cache / "ssl-claims"
    source = json.loads(args.claims.read_text())
    rows, skipped = probe(source["runs"], work, args.plan_seed)
    command = " ".join(
        ["python", "benchmarks/mixing_probe.py", *(argv if argv is not None else sys.argv[1:])]
    )
    record = {
        "command": command,
        "meta": metadata(),
        "claims_record": {"path": _shown(args.claims), "runs": len(source["runs"])},
        "plan_seed": args.plan_seed,
        "alpha": ALPHA,
        "skipped": skipped,
        "runs": rows,
        "pairs": pairs(rows),
    }
    args.record.write_text(json.dumps(record, indent=1) + "\n")
    png = args.record.with_suffix(".png")
    plot(record, png)
    print(tables(record))
    for line in skipped:
        print(f"skipped {line}")
    print(f"wrote {args.record} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
