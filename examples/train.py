"""Semi-supervised top-down pose estimation on COCO keypoints: SSHPE protocol, Pose-MUM.

With no data arguments it generates the bundled synthetic person set (once, into a cache
folder), trains the default method (``posemum``) and prints the student's and the
teacher's AP::

    python examples/train.py
    python examples/train.py --images coco/train2017 --train-ann person_keypoints_train2017.json \\
        --val-images coco/val2017 --val-ann person_keypoints_val2017.json --labeled 1000 \\
        --arch resnet18 --width 1 --input-size 256 192 --steps 100000 --device cuda --amp
    python examples/train.py --config runs/train/config.json --out runs/again  # repeat a run
    torchrun --nproc_per_node 4 examples/train.py ...     # DistributedDataParallel

Every option is a field of the dataclasses in ``sshpe/config.py`` (``--help`` lists them).
Outputs in ``--out``: ``config.json`` (the resolved configuration), ``metrics.jsonl``
(losses, diagnostics and evaluations, one JSON object per line), ``checkpoint.pt``
(``--resume`` continues it exactly), ``results.json`` and the COCO result files of the
final evaluation, ``curves.png`` and ``predictions.png``. Exit status: 0 done, 2 bad input,
3 training diverged (the last good checkpoint is kept), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sshpe.checkpoint import (
    CHECKPOINT,
    CheckpointError,
    resume_checkpoint,
    rng_state,
    save_atomic,
    set_rng_state,
)
from sshpe.cli import UsageError, error_line, parse_config
from sshpe.config import DataConfig, TrainConfig
from sshpe.diagnostics import joint_groups, plot_training_curves, step_diagnostics
from sshpe.loaders import (
    CropCache,
    StepBatchSampler,
    build_datasets,
    loader,
    synthetic_data,
    to_device,
    use_crop_cache,
)
from sshpe.methods import SSHPEMethod, step_generators
from sshpe.metrics_log import MetricsLog, finite_or_none
from sshpe.models import build_model, load_pretrained
from sshpe.outputs import claim
from sshpe.rundir import locked_run_folder, prepare_run_folder, write_json
from sshpe.runtime import NO_BUFFER_BROADCAST, Distributed, resolve_device
from sshpe.validation import draw_predictions, evaluate_models, results_table


class Diverged(Exception):
    """The loss or the weights stopped being finite."""


def total_steps(config: TrainConfig, labeled: int, world_size: int) -> int:
    """``--steps``, or ``--epochs`` passes over the labelled set."""
    schedule = config.schedule
    if schedule.steps is not None:
        return schedule.steps
    epochs = float(schedule.epochs or 0)
    steps = epochs * labeled / (schedule.batch_size * world_size)
    if steps >= 2**63:
        raise ValueError(
            f"--epochs {epochs:g} over {labeled} labelled people make {steps:.3g} steps; give "
            "fewer epochs"
        )
    return max(1, math.ceil(steps))


def finite_weights(*models: nn.Module) -> bool:
    """Whether every floating entry of the ``models``' states is finite (one host sync)."""
    states = [
        v.isfinite().all()
        for model in models
        for v in model.state_dict().values()
        if v.is_floating_point()
    ]
    return bool(torch.stack(states).all())


def train(
    config: TrainConfig, data: DataConfig, ddp: Distributed, held: ExitStack
) -> dict[str, Any] | None:
    """Set up, train and evaluate; returns ``results.json``'s content (``None`` if stopped
    early by ``--stop-after``). The main process locks the run folder into ``held``, which
    the caller closes however the run ends.

    Raises:
        Diverged: when a loss or a weight is not finite at a check (every log line and
            before every checkpoint); the checkpoint on disk is the last good one.
    """
    run, method_config, schedule = config.runtime, config.method, config.schedule
    device = ddp.device
    torch.manual_seed(schedule.seed)  # the same initial weights on every rank
    sets = build_datasets(data, config)
    workers = run.workers if run.workers is not None else 4 * (device.type == "cuda")
    datasets: list[Any] = [sets.labeled, sets.unlabeled, sets.val]
    if use_crop_cache(run.cache_crops, workers, config.model.input_size, datasets):
        datasets = [None if d is None else CropCache(d) for d in datasets]
    skeleton = sets.val_file.skeleton
    # network A first: it starts from the weights of the single-network methods (paired)
    networks = [
        build_model(config.model.arch, skeleton.num_joints, config.model.width)
        for _ in range(method_config.networks)
    ]
    pretrained = config.model.pretrained
    if pretrained is not None and not run.resume:  # a resumed run loads its checkpoint
        if not pretrained.is_file():
            raise UsageError(f"--pretrained file not found: {pretrained}")
        # network B of the dual methods loads the backbone only: its own initialisation
        skipped, *others = (
            load_pretrained(network, pretrained, keep_head=index > 0)
            for index, network in enumerate(networks)
        )
        if skipped and ddp.main:
            kept = ", ".join(sorted({k.split(".")[0] for k in skipped}))
            print(f"--pretrained: {len(skipped)} tensors not in the file kept their init ({kept})")
        if others and ddp.main:
            after = ", ".join(networks[1].HEAD)
            print(f"--pretrained: network B loads its backbone only ({after}: their own init)")
    for network in networks:
        network.to(device)
    students: list[nn.Module] = list(networks)
    if ddp.enabled:
        ids = [device] if device.type == "cuda" else None
        students = [
            DistributedDataParallel(n, device_ids=ids, **NO_BUFFER_BROADCAST) for n in networks
        ]
    generators = step_generators(schedule.seed, ddp.rank, method_config.streams)
    method = SSHPEMethod(
        students[0], method_config, skeleton, generators, amp=schedule.amp,
        partner=students[1] if method_config.dual else None,
    )  # fmt: skip
    # one Adam over every network: per-parameter, the same as one Adam per network
    optimizer = torch.optim.Adam([p for n in networks for p in n.parameters()], lr=schedule.lr)
    steps = total_steps(config, len(sets.labeled), ddp.world_size)
    milestones = sorted({max(1, round(f * steps)) for f in schedule.lr_milestones})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, schedule.lr_gamma)

    if ddp.main:  # every input is checked: now the run folder may be written
        held.enter_context(locked_run_folder(run.out))
        prepare_run_folder(config)
    ddp.barrier()
    path = run.out / CHECKPOINT
    start, window, running = 0, 0, {}  # the losses summed since the last log line
    logged = 0  # the lines of metrics.jsonl when the checkpoint was written
    if run.resume:
        ckpt = resume_checkpoint(path, config, ddp.world_size)
        finished = run.out / "results.json"
        if ckpt["step"] == ckpt["total_steps"] and finished.is_file():
            earlier = json.loads(finished.read_text())
            # other evaluation options (which --resume may change) evaluate the run again
            if earlier.get("config", {}).get("evaluation") == config.to_json()["evaluation"]:
                return {**earlier, "finished": True}
        missing = [name for name in method.models if name not in ckpt]
        if missing:
            raise CheckpointError(f"--resume: {path} has no {', '.join(missing)}")
        for name, module in method.models.items():
            module.load_state_dict(ckpt[name])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(generators, ckpt["rng"][ddp.rank], path)
        start, window = int(ckpt["step"]), int(ckpt["loss_window"]["start"])
        running = {k: v.to(device) for k, v in ckpt["loss_window"]["sums"].items()}
        logged = int(ckpt["log_lines"])
    resumed = start if run.resume else None
    log = MetricsLog(run.out, ddp.main, resumed, logged, tensorboard=run.tensorboard)
    last_good = start if run.resume else None

    def checkpoint(step: int) -> None:
        rng = ddp.gather(rng_state(generators))
        if ddp.main:
            sums = {k: v.cpu() for k, v in running.items()}
            state = {
                "step": step,
                "total_steps": steps,
                "config": config.to_json(),
                "world_size": ddp.world_size,
                **{name: module.state_dict() for name, module in method.models.items()},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng,
                "loss_window": {"start": window, "sums": sums},
                "log_lines": log.lines,
            }
            save_atomic(state, path)

    def batches(index: int, dataset: Any, size: int) -> Any:
        sampler = StepBatchSampler(
            len(dataset), size, seed=schedule.seed, stream=index, rank=ddp.rank,
            world_size=ddp.world_size, start=start, total=steps,
        )  # fmt: skip
        return iter(loader(dataset, sampler, workers, device))

    labeled_batches = batches(0, datasets[0], schedule.batch_size)
    unlabeled_batches = None
    if datasets[1] is not None:
        unlabeled_batches = batches(1, datasets[1], schedule.unlabeled_batch_size)
    size = config.evaluation.eval_batch_size
    val_batches = [
        list(range(i, min(i + size, len(sets.val)))) for i in range(0, len(sets.val), size)
    ]
    val_loader = loader(datasets[2], val_batches, workers, device)
    models = method.models  # "student" (network A of the dual methods) is the result
    groups = joint_groups(skeleton.names)
    crops_per_step = (
        schedule.batch_size + (schedule.unlabeled_batch_size if unlabeled_batches else 0)
    ) * ddp.world_size

    def evaluate() -> dict[str, dict[str, float]]:
        return evaluate_models(models, val_loader, sets.val_file, config, device, run.out)[0]

    method.train()
    bar = tqdm(
        total=steps, initial=start, desc=method_config.method, unit="step",
        dynamic_ncols=True, disable=not run.progress or not ddp.main,
    )  # fmt: skip
    finite = torch.ones((), dtype=torch.bool, device=device)
    tick, timed = time.perf_counter(), start
    try:
        for step in range(start + 1, steps + 1):
            batch = to_device(next(labeled_batches), device)
            extra, hidden = None, None
            if unlabeled_batches is not None:
                unlabeled = to_device(next(unlabeled_batches), device)
                # the step sees the image; the file's labels go to the diagnostics only
                extra, hidden = {"image": unlabeled["image"]}, unlabeled
            losses = method.losses(batch, extra)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()  # type: ignore[no-untyped-call]  # untyped in torch
            optimizer.step()
            scheduler.step()
            momentum = method.update_teacher()
            finite &= losses["loss"].detach().isfinite()
            for k, v in losses.items():
                running[k] = running.get(k, 0) + v.detach()
            stopping = run.stop_after is not None and step - start == run.stop_after
            saving = step % run.ckpt_every == 0 or step == steps or stopping
            checking = step % run.log_every == 0 or saving
            if checking and ddp.any(not bool(finite) or not finite_weights(*networks)):
                where = f"{path} (step {last_good})" if last_good else "none was written"
                raise Diverged(
                    f"training diverged by step {step}: a loss or weight is not finite "
                    f"(lower --lr?); last good checkpoint: {where}"
                )
            if step % run.log_every == 0 or step == steps:
                record = {k: round(float(v) / (step - window), 7) for k, v in running.items()}
                throughput = (step - timed) * crops_per_step / (time.perf_counter() - tick)
                lr = scheduler.get_last_lr()[0]
                log.write({"step": step, **record, "lr": lr, "momentum": momentum,
                           "crops_per_s": round(throughput, 1)})  # fmt: skip
                bar.set_postfix(loss=f"{record['loss']:.2e}", crops_s=f"{throughput:.0f}")
                running, window, tick, timed = {}, step, time.perf_counter(), step
            diagnose = method.last_pseudo is not None and ddp.main and run.pseudo_every > 0
            if hidden is not None and diagnose and step % run.pseudo_every == 0:
                stats = step_diagnostics(method, hidden["keypoints"], hidden["visibility"], groups)
                log.write({"step": step, **{k: finite_or_none(v) for k, v in stats.items()}})
            bar.update(1)
            if run.eval_every and step % run.eval_every == 0 and step < steps:
                if ddp.main:
                    log.write({"step": step, "eval": evaluate()})
                ddp.barrier()
            if saving:
                checkpoint(step)
                last_good = step
            if stopping and step < steps:
                if ddp.main:
                    print(f"stopped at step {step} of {steps}; continue with --resume")
                return None
        bar.close()
        method.close()
        results: dict[str, Any] = {}
        if ddp.main:
            metrics, crops = evaluate_models(
                models, val_loader, sets.val_file, config, device, run.out
            )
            log.write({"step": steps, "eval": metrics})
            results = {"step": steps, "metrics": metrics, "config": config.to_json()}
            write_json(run.out / "results.json", results)
            claim(run.out, run.out / "curves.png")
            plot_training_curves(log.path, run.out / "curves.png")
            if run.vis_count > 0:
                draw_predictions(
                    run.out / "predictions.png", sets.val, crops, run.vis_count, skeleton.links
                )
        ddp.barrier()
        return results
    finally:  # also on errors: flush the logs, remove the mixing hooks
        bar.close()
        log.close()
        method.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    started = time.perf_counter()
    ddp: Distributed | None = None
    held = ExitStack()  # the run folder's lock, released however the run ends
    try:
        config = parse_config(argv)
        ddp = Distributed(resolve_device(config.runtime.device))
        data = config.data
        if data.synthetic:  # the main process generates, the others wait and read
            if ddp.main:
                data = synthetic_data(data, config.runtime.cache, progress=config.runtime.progress)
            ddp.barrier()
            if not ddp.main:
                data = synthetic_data(data, config.runtime.cache, progress=False)
        results = train(config, data, ddp, held)
    except (UsageError, ValueError, OSError, CheckpointError) as err:
        print(f"train.py: error: {error_line(err)}", file=sys.stderr)
        return 2
    except Diverged as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(
            "train.py: interrupted; --resume continues from the last checkpoint, if one "
            "was written",
            file=sys.stderr,
        )
        return 130
    finally:
        held.close()
        if ddp is not None:
            ddp.close()
    if results and ddp.main:
        flip = "flip test" if config.evaluation.flip_test else "no flip test"
        when = (
            "finished earlier"
            if results.get("finished")
            else f"{time.perf_counter() - started:.0f} s"
        )
        name = Path(data.val_ann or "").name
        boxes = config.evaluation.val_boxes  # else the ground-truth boxes
        flip = flip if boxes is None else f"the boxes of {boxes.name}, {flip}"
        print(f"\n{config.method.method} on {name} ({flip}), {when}:")
        print(results_table(results["metrics"]))
        print(f"outputs in {config.runtime.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
