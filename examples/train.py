"""Semi-supervised top-down pose estimation on COCO keypoints: SSHPE protocol, Pose-MUM.

With no data arguments it generates the bundled synthetic person set (once, into a cache
folder), trains the default method (``posemum``) and prints the student's and the
teacher's AP::

    python examples/train.py
    python examples/train.py --images coco/train2017 --train-ann person_keypoints_train2017.json \\
        --val-images coco/val2017 --val-ann person_keypoints_val2017.json --labeled 1000 \\
        --arch resnet18 --width 1 --input-size 256 192 --steps 100000 --device cuda --amp
    torchrun --nproc_per_node 4 examples/train.py ...     # DistributedDataParallel

Outputs in ``--out``: ``metrics.jsonl`` (training losses and evaluations, one JSON object
per line), ``checkpoint.pt`` (written atomically; ``--resume`` continues it exactly),
``results.json`` and the COCO result files of the final evaluation, and
``predictions.png`` (predicted skeletons on a few validation crops). See
``examples/README.md`` for every option.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import sys
import time
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sshpe.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CocoPersons,
    TopDownDataset,
    crop_to_image,
    denormalize,
    evaluation_instances,
    labelled_instances,
    load_coco_persons,
    unlabelled_instances,
)
from sshpe.diagnostics import joint_groups, plot_training_curves, step_diagnostics
from sshpe.evaluate import evaluate_keypoints, protocol_results
from sshpe.methods import (
    METHODS,
    MethodConfig,
    SSHPEMethod,
    predict_heatmaps,
    scaled_cutout,
    scaled_sigma,
)
from sshpe.models import SimpleBaseline, load_pretrained
from sshpe.synthetic import generate_synthetic_coco

from posemum_aug.heatmap import decode_heatmaps

#: The metrics of the results table, in order.
METRICS = ("AP", "AP50", "AP75", "APm", "APl", "AR")
#: The bundled default job: synthetic set size and the training budget of the README command.
SYNTHETIC = {"num_train": 2000, "num_val": 300}
#: Defaults that depend on the data, for the flags left out: the SSHPE protocol for your own
#: annotation files, a CPU-sized job for the bundled synthetic set (the README's command).
PROFILES: dict[str, dict[str, Any]] = {
    "files": {
        "labeled": 1000,
        "input_size": [256, 192],
        "width": 1.0,
        "ema_momentum": MethodConfig().momentum,
        "momentum_warmup": MethodConfig().momentum_warmup,
        "batch_size": 32,
        "unlabeled_batch_size": 32,
        "lr": 1e-3,
        "steps": None,  # required: --steps or --epochs
    },
    "synthetic": {
        "labeled": 500,
        "input_size": [128, 96],
        "width": 0.25,
        "ema_momentum": 0.99,
        "momentum_warmup": 0,
        "batch_size": 16,
        "unlabeled_batch_size": 16,
        "lr": 3e-3,
        "steps": 1500,
        # SSHPE's 2 heatmap px rather than the 1 that scaling to 128 px would give: the
        # value every synthetic run in examples/README.md was trained with
        "sigma": 2.0,
    },
}
CHECKPOINT = "checkpoint.pt"
#: Each process keeps its own BatchNorm statistics (the EMAN teacher averages them across
#: processes), so DDP must not broadcast rank 0's buffers at every forward. The switch is
#: ``forward_sync_buffers`` since torch 2.13 (``broadcast_buffers`` is deprecated there)
#: and ``broadcast_buffers`` before.
NO_BUFFER_BROADCAST = {
    (
        "forward_sync_buffers"
        if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
        else "broadcast_buffers"
    ): False
}
#: ``--cache-crops`` is on by default with in-process loading when the crops fit in this.
CROP_CACHE_BYTES = 2 * 1024**3


class UsageError(Exception):
    """A bad command line or input file: reported as one line, no traceback."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line instead of usage + error
        raise UsageError(message)


class _Help(argparse.RawDescriptionHelpFormatter):
    """Show a flag's default when it has one (not ``None``, not already in the help)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


# --------------------------------------------------------------------------- command line


def _flag(key: str, value: Any) -> list[str]:
    """One profile entry as command-line tokens, e.g. ``["--input-size", "256", "192"]``."""
    return [f"--{key.replace('_', '-')}", *map(str, value if isinstance(value, list) else [value])]


def _profile_text(values: dict[str, Any]) -> str:
    return ", ".join(" ".join(_flag(k, "required" if v is None else v)) for k, v in values.items())


def profile_flags(name: str, skip: Collection[str] = ()) -> list[str]:
    """The profile ``name`` of :data:`PROFILES` as command-line flags, less the keys in
    ``skip``: for callers that pass their data as files but want that profile's job."""
    return [
        token
        for key, value in PROFILES[name].items()
        if key not in skip
        for token in _flag(key, value)
    ]


def build_parser() -> argparse.ArgumentParser:
    """The command line; every default is the documented one (see examples/README.md)."""
    d = MethodConfig()
    p = _Parser(
        prog="train.py",
        description="Semi-supervised pose training (SSHPE protocol): supervised, "
        "consistency (PoseCons) or posemum. With no data arguments, trains on the "
        "bundled synthetic set.",
        formatter_class=_Help,
        epilog="[profile]: the default depends on the data:\n"
        + "\n".join(f"  {name}: {_profile_text(values)}" for name, values in PROFILES.items()),
    )
    g = p.add_argument_group("data (all omitted: the synthetic default set)")
    g.add_argument("--images", type=Path, help="image folder of --train-ann")
    g.add_argument("--train-ann", type=Path, help="COCO keypoint annotations for training")
    g.add_argument("--val-ann", type=Path, help="COCO keypoint annotations for evaluation")
    g.add_argument("--val-images", type=Path, help="image folder of --val-ann (default: --images)")
    g.add_argument(
        "--unlabeled-ann",
        type=Path,
        help="annotations of the unlabelled pool (labels ignored; default: --train-ann)",
    )
    g.add_argument(
        "--unlabeled-images", type=Path, help="image folder of --unlabeled-ann (default: --images)"
    )
    g.add_argument(
        "--labeled",
        type=int,
        default=None,
        help="labelled instances: the first N of --train-ann in file order, 0 = all [profile]",
    )
    g.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "posemum-aug",
        help="where the synthetic default set is generated",
    )

    g = p.add_argument_group("model")
    g.add_argument(
        "--arch",
        choices=("resnet18", "resnet50"),
        default="resnet18",
        help="SimpleBaseline backbone",
    )
    g.add_argument(
        "--width", type=float, default=None, help="channel multiplier (1 = paper) [profile]"
    )
    g.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="crop size, multiples of 32; heatmaps are 4x smaller [profile]",
    )
    g.add_argument("--pretrained", type=Path, help="weights to start from (see load_pretrained)")

    g = p.add_argument_group("method")
    g.add_argument(
        "--method",
        choices=METHODS,
        default="posemum",
        help="training method (see examples/README.md)",
    )
    g.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="target Gaussian sigma, heatmap px (default: 2 x H / 256, SSHPE's 2 at 256 x 192 "
        "and 3 at 384 x 288) [profile]",
    )
    g.add_argument(
        "--unbiased-targets",
        action=argparse.BooleanOptionalAction,
        default=d.unbiased,
        help="sub-pixel target centres (DARK) instead of the nearest heatmap pixel",
    )
    g.add_argument(
        "--unsup-weight", type=float, default=d.unsup_weight, help="weight of the unsupervised loss"
    )
    g.add_argument(
        "--burn-in",
        type=int,
        default=d.burn_in,
        help="supervised-only steps first; the teacher copies the student until then",
    )
    g.add_argument(
        "--unsup-ramp",
        type=int,
        default=d.unsup_ramp,
        help="steps after the burn-in of a linear ramp of the unsupervised weight (0: off)",
    )
    g.add_argument(
        "--hard-bn-stats",
        choices=("update", "frozen"),
        default=d.hard_bn_stats,
        help="whether the student's unlabelled hard-view pass updates its BatchNorm running "
        "statistics; frozen: it normalises with the batch's only",
    )
    g.add_argument(
        "--scale-sigma", type=float, default=d.scale_sigma, help="std of the views' crop scale"
    )
    g.add_argument(
        "--scale-range", type=float, nargs=2, default=d.scale_range, help="clip of the crop scale"
    )
    g.add_argument("--rotation-sigma", type=float, default=d.rotation_sigma, help="degrees")
    g.add_argument("--rotation-limit", type=float, default=d.rotation_limit, help="degrees")
    g.add_argument("--rotation-p", type=float, default=d.rotation_p, help="easy view")
    g.add_argument("--hard-rotation-p", type=float, default=d.hard_rotation_p, help="hard view")
    g.add_argument(
        "--flip-p", type=float, default=d.flip_p, help="easy view's horizontal flip probability"
    )
    g.add_argument(
        "--joint-cutout",
        action=argparse.BooleanOptionalAction,
        default=d.joint_cutout,
        help="Joint Cutout on the hard view",
    )
    g.add_argument(
        "--cutout-joints", type=int, default=d.cutout_joints, help="Joint Cutout boxes per crop"
    )
    g.add_argument(
        "--cutout-jitter",
        type=float,
        default=None,
        help="box centre jitter std in input px (default: 10 px scaled by H / 256)",
    )
    g.add_argument(
        "--cutout-half-size",
        type=int,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="box half side in input px (default: 10 19 scaled by H / 256)",
    )
    g.add_argument(
        "--teacher",
        choices=("ema", "eman"),
        default=None,
        help="mean teacher (params EMA, BN in train mode) or EMAN (default: ema for "
        "consistency, eman for posemum and for the supervised run's evaluation copy)",
    )
    g.add_argument(
        "--ema-momentum", type=float, default=None, help="weight kept on the teacher [profile]"
    )
    g.add_argument(
        "--momentum-warmup",
        type=int,
        default=None,
        help="steps of MUM's linear momentum ramp, 0 = off [profile]",
    )
    g.add_argument(
        "--momentum-start",
        type=float,
        default=d.momentum_start,
        help="momentum at step 0 of the warm-up",
    )
    g.add_argument("--mix-group", type=int, default=d.mix_group, help="G")
    g.add_argument(
        "--mix-grid", type=int, nargs=2, default=d.mix_grid, metavar=("TH", "TW"), help="tile grid"
    )
    g.add_argument("--mix-p", type=float, default=d.mix_p, help="input-level mixing probability")
    g.add_argument(
        "--mix-p-feature",
        type=float,
        default=d.mix_p_feature,
        help="feature-level re-mix probability",
    )
    g.add_argument(
        "--mix-feature-mode",
        choices=("one", "all"),
        default=d.mix_feature_mode,
        help='"one": at most one feature point per step; "all": a coin per point',
    )
    g.add_argument(
        "--mix-at",
        nargs="+",
        default=list(d.mix_at),
        help="mixing points ('' is the input; stages stem, layer1..layer3)",
    )
    g.add_argument(
        "--unmix-at", default=d.unmix_at, help="stage whose output is unmixed (before the head)"
    )
    g.add_argument("--mix-labeled", action="store_true", help="mix the labelled batch too")
    g.add_argument(
        "--filter-confidence",
        type=float,
        default=None,
        metavar="T",
        help="keep joints whose teacher peak reaches T (default: off)",
    )
    g.add_argument(
        "--filter-mode",
        choices=("absolute", "percentile"),
        default="absolute",
        help="T is a peak value or a per-joint quantile in [0, 1]",
    )
    g.add_argument(
        "--filter-flip",
        type=float,
        default=None,
        metavar="PX",
        help="keep joints the teacher places within PX heatmap px on the mirror (default: off)",
    )
    g.add_argument(
        "--hard-targets",
        action="store_true",
        help="Gaussians at the teacher's peaks instead of its soft heatmaps",
    )
    g.add_argument(
        "--hard-threshold",
        type=float,
        default=d.hard_threshold,
        help="peak a joint needs for a hard target",
    )
    g.add_argument(
        "--decode",
        choices=("dark", "quarter", "none"),
        default=d.decode,
        help="sub-pixel peak refinement",
    )

    g = p.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=None, help="training steps [profile]")
    g.add_argument("--epochs", type=float, default=None, help="passes over the labelled set")
    g.add_argument(
        "--batch-size", type=int, default=None, help="labelled crops per step and rank [profile]"
    )
    g.add_argument(
        "--unlabeled-batch-size",
        type=int,
        default=None,
        help="unlabelled crops per step and rank [profile]",
    )
    g.add_argument("--lr", type=float, default=None, help="Adam learning rate [profile]")
    g.add_argument(
        "--lr-milestones",
        type=float,
        nargs="*",
        default=[0.7, 0.9],
        help="fractions of the steps where the lr is multiplied by --lr-gamma",
    )
    g.add_argument("--lr-gamma", type=float, default=0.1, help="learning-rate decay factor")

    g = p.add_argument_group("evaluation")
    g.add_argument("--flip-test", action="store_true", help="average with the flipped crop")
    g.add_argument("--eval-every", type=int, default=0, help="steps between evaluations (0: end)")
    g.add_argument("--eval-batch-size", type=int, default=64, help="crops per evaluation batch")
    g.add_argument("--vis-count", type=int, default=8, help="crops in predictions.png (0: none)")
    g.add_argument(
        "--pseudo-every",
        type=int,
        default=50,
        help="steps between pseudo-label diagnostics against the unlabelled file's ignored "
        "labels (0: off; see sshpe.diagnostics)",
    )

    g = p.add_argument_group("run")
    g.add_argument(
        "--seed", type=int, default=0, help="seed of the weights, augmentation and data order"
    )
    g.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cpu, cuda or cuda:N",
    )
    g.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA only)")
    g.add_argument(
        "--workers",
        type=int,
        default=None,
        help="data-loading processes per rank (default: 4 on CUDA; 0 on CPU, where they "
        "would take cores from the training threads)",
    )
    g.add_argument(
        "--cache-crops",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the un-augmented crops in memory as uint8 (default: on with --workers 0 "
        "when they fit in 2 GiB)",
    )
    g.add_argument("--out", type=Path, default=Path("runs/train"), help="output folder")
    g.add_argument("--resume", action="store_true", help=f"continue from OUT/{CHECKPOINT} exactly")
    g.add_argument("--ckpt-every", type=int, default=100, help="steps between checkpoints")
    g.add_argument(
        "--stop-after",
        type=int,
        default=None,
        metavar="N",
        help="leave after N steps of this invocation with a checkpoint (as if killed); "
        "--resume continues",
    )
    g.add_argument("--log-every", type=int, default=10, help="steps between metric lines")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


# --------------------------------------------------------------------------- setup


def apply_profile(args: argparse.Namespace) -> None:
    """Fill the flags marked [profile] that were left out, from :data:`PROFILES`."""
    data = (args.images, args.train_ann, args.val_ann)
    if any(v is not None for v in data) and not all(v is not None for v in data):
        raise UsageError("give --images, --train-ann and --val-ann together (or none of them)")
    args.profile = "synthetic" if args.images is None else "files"
    if args.steps is not None and args.epochs is not None:
        raise UsageError("give --steps or --epochs, not both")
    for key, value in PROFILES[args.profile].items():
        if getattr(args, key) is None and not (key == "steps" and args.epochs is not None):
            setattr(args, key, value)
    if args.steps is None and args.epochs is None:
        raise UsageError("give --steps or --epochs for your own data")


def check_args(args: argparse.Namespace) -> None:
    """Reject bad values early, with one line naming the flag."""
    positive = {
        "--steps": args.steps,
        "--batch-size": args.batch_size,
        "--unlabeled-batch-size": args.unlabeled_batch_size,
        "--eval-batch-size": args.eval_batch_size,
        "--ckpt-every": args.ckpt_every,
        "--log-every": args.log_every,
        "--stop-after": args.stop_after,
        "--mix-group": args.mix_group,
    }
    off_at_zero = {
        "--burn-in": args.burn_in,
        "--unsup-ramp": args.unsup_ramp,
        "--pseudo-every": args.pseudo_every,
    }
    for flag, count in off_at_zero.items():
        if count < 0:
            raise UsageError(f"{flag} must be >= 0 (0 = off), got {count}")
    for flag, value in positive.items():
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be >= 1, got {value}")
    if args.epochs is not None and not args.epochs > 0:
        raise UsageError(f"--epochs must be > 0, got {args.epochs}")
    if args.labeled is not None and args.labeled < 0:
        raise UsageError(f"--labeled must be >= 0 (0 = all), got {args.labeled}")
    height, width = args.input_size
    if height < 32 or width < 32 or height % 32 or width % 32:
        raise UsageError(f"--input-size must be multiples of 32, got {height} {width}")
    if not args.width > 0:
        raise UsageError(f"--width must be > 0, got {args.width}")
    mixed = {"--unlabeled-batch-size": args.unlabeled_batch_size}
    if args.mix_labeled:
        mixed["--batch-size"] = args.batch_size
    for flag, size in mixed.items():
        if args.method == "posemum" and size < args.mix_group:
            raise UsageError(
                f"{flag} {size} is smaller than the mixing group --mix-group "
                f"{args.mix_group}: no sample would be mixed with another"
            )
    if args.workers is None:
        args.workers = 4 if str(args.device).startswith("cuda") else 0
    if args.workers < 0:
        raise UsageError(f"--workers must be >= 0, got {args.workers}")
    if args.amp and not str(args.device).startswith("cuda"):
        raise UsageError("--amp needs a CUDA --device")
    if str(args.device).startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {args.device}: CUDA is not available")
    if any(not 0 < f < 1 for f in args.lr_milestones):
        raise UsageError(f"--lr-milestones are fractions in (0, 1), got {args.lr_milestones}")
    if args.pretrained is not None and not args.pretrained.is_file():
        raise UsageError(f"--pretrained file not found: {args.pretrained}")
    if args.resume and not (args.out / CHECKPOINT).is_file():
        raise UsageError(f"--resume: no checkpoint at {args.out / CHECKPOINT}")


def method_config(args: argparse.Namespace) -> MethodConfig:
    """The step's options from the command line."""
    jitter, half_size = scaled_cutout(args.input_size[0])
    return MethodConfig(
        method=args.method,
        sigma=scaled_sigma(args.input_size[0]) if args.sigma is None else args.sigma,
        unbiased=args.unbiased_targets,
        scale_sigma=args.scale_sigma,
        scale_range=tuple(args.scale_range),
        rotation_sigma=args.rotation_sigma,
        rotation_limit=args.rotation_limit,
        rotation_p=args.rotation_p,
        hard_rotation_p=args.hard_rotation_p,
        flip_p=args.flip_p,
        joint_cutout=args.joint_cutout,
        cutout_joints=args.cutout_joints,
        cutout_jitter=jitter if args.cutout_jitter is None else args.cutout_jitter,
        cutout_half_size=half_size
        if args.cutout_half_size is None
        else tuple(args.cutout_half_size),
        unsup_weight=args.unsup_weight,
        burn_in=args.burn_in,
        unsup_ramp=args.unsup_ramp,
        hard_bn_stats=args.hard_bn_stats,
        teacher=args.teacher,
        momentum=args.ema_momentum,
        momentum_warmup=args.momentum_warmup,
        momentum_start=args.momentum_start,
        mix_group=args.mix_group,
        mix_grid=tuple(args.mix_grid),
        mix_p=args.mix_p,
        mix_p_feature=args.mix_p_feature,
        mix_feature_mode=args.mix_feature_mode,
        mix_at=tuple(args.mix_at),
        unmix_at=args.unmix_at,
        mix_labeled=args.mix_labeled,
        confidence=args.filter_confidence,
        confidence_mode=args.filter_mode,
        flip_consistency=args.filter_flip,
        hard_targets=args.hard_targets,
        hard_threshold=args.hard_threshold,
        decode=args.decode,
    )


class Distributed:
    """The process group of a ``torchrun`` launch, or a single process."""

    def __init__(self, device: str) -> None:
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.enabled:
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def enabled(self) -> bool:
        """Whether several processes train together."""
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Whether this process writes files and prints."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process."""
        if self.enabled:
            dist.barrier()

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        """Leave the process group."""
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


class StepBatchSampler:
    """The batches of steps ``start .. total - 1`` of an endless shuffled index stream.

    Each epoch is a fresh permutation seeded by ``(seed, stream, epoch)``, padded by
    wrapping to a multiple of the world size and dealt out round-robin to the ranks (as
    ``DistributedSampler``); a rank's stream is its epochs one after another, cut into
    batches across epoch borders. The batch of a step is thus a pure function of the
    step, which is all ``--resume`` needs to restore the data order.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        *,
        seed: int,
        stream: int,
        rank: int,
        world_size: int,
        start: int,
        total: int,
    ) -> None:
        self.size, self.batch_size = size, batch_size
        self.seed, self.stream = seed, stream
        self.rank, self.world_size = rank, world_size
        self.start, self.total = start, total
        self.per_rank = math.ceil(size / world_size)

    def _epoch(self, epoch: int) -> Tensor:
        state = np.random.SeedSequence([self.seed, self.stream, epoch]).generate_state(2)
        generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        order = torch.randperm(self.size, generator=generator)
        order = order.repeat(math.ceil(self.per_rank * self.world_size / self.size))
        return order[: self.per_rank * self.world_size][self.rank :: self.world_size]

    def __len__(self) -> int:
        return self.total - self.start

    def __iter__(self) -> Iterator[list[int]]:
        epoch, offset = divmod(self.start * self.batch_size, self.per_rank)
        order = self._epoch(epoch)
        for _ in range(len(self)):
            batch: list[int] = []
            while len(batch) < self.batch_size:
                if offset == self.per_rank:
                    epoch, offset = epoch + 1, 0
                    order = self._epoch(epoch)
                take = min(self.batch_size - len(batch), self.per_rank - offset)
                batch += order[offset : offset + take].tolist()
                offset += take
            yield batch


def default_data(args: argparse.Namespace, ddp: Distributed) -> None:
    """Point the data arguments at the synthetic set, generating it on the first run."""
    root = args.cache / "synthetic"
    if ddp.main:
        paths = generate_synthetic_coco(root, **SYNTHETIC, progress=not args.no_progress)
    ddp.barrier()
    if not ddp.main:
        paths = generate_synthetic_coco(root, **SYNTHETIC, progress=False)
    args.images, args.train_ann, args.val_ann = paths.images, paths.train_ann, paths.val_ann


def build_datasets(
    args: argparse.Namespace,
) -> tuple[TopDownDataset, TopDownDataset | None, TopDownDataset, CocoPersons]:
    """Labelled, unlabelled (``None`` for supervised) and validation crops, and the val file."""
    size = tuple(args.input_size)
    train = load_coco_persons(args.train_ann)
    skeleton = train.skeleton
    count = args.labeled
    if count == 0:
        count = len(evaluation_instances(train))
    labeled = TopDownDataset(
        labelled_instances(train, count), args.images, size, skeleton.num_joints
    )
    unlabeled = None
    if args.method != "supervised":
        pool = (
            train if args.unlabeled_ann is None else load_coco_persons(args.unlabeled_ann, skeleton)
        )
        images = args.unlabeled_images or args.images
        unlabeled = TopDownDataset(unlabelled_instances(pool), images, size, skeleton.num_joints)
    val = load_coco_persons(args.val_ann)
    if val.skeleton.names != skeleton.names:
        raise UsageError(f"{args.val_ann} has other joints than {args.train_ann}")
    val_set = TopDownDataset(
        evaluation_instances(val), args.val_images or args.images, size, skeleton.num_joints
    )
    return labeled, unlabeled, val_set, val


class CropCache(Dataset[Any]):
    """Keeps every crop of ``dataset`` after its first load, the image as 8-bit RGB.

    Crops are cut from 8-bit images by Pillow, so the uint8 copy is exact and the image
    normalised again on each read equals the dataset's bit for bit. Meant for in-process
    loading (``--workers 0``, the CPU default), where after the first epoch a step loads
    nothing; the un-augmented crops never change, augmentation happens later.
    """

    def __init__(self, dataset: TopDownDataset) -> None:
        self.dataset = dataset
        self.items: list[dict[str, Any] | None] = [None] * len(dataset)
        self.mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
        self.std = torch.tensor(IMAGENET_STD)[:, None, None]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        if item is None:
            sample = dict(self.dataset[index])
            sample["image"] = denormalize(sample["image"])
            item = self.items[index] = sample
        pixels = item["image"].float() / 255.0
        return {**item, "image": (pixels - self.mean) / self.std}


def cache_crops(args: argparse.Namespace, datasets: Sequence[TopDownDataset | None]) -> bool:
    """Whether to wrap the data sets in :class:`CropCache` (``--cache-crops``, or auto)."""
    if args.cache_crops is not None:
        return bool(args.cache_crops)
    height, width = args.input_size
    crops = sum(len(d) for d in datasets if d is not None)
    return args.workers == 0 and crops * height * width * 3 <= CROP_CACHE_BYTES


def loader(
    dataset: Dataset[Any], sampler: Any, workers: int, device: torch.device
) -> DataLoader[Any]:
    """A data loader over ``sampler``'s batches (a batch sampler or a plain index order)."""
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Move the tensors of a collated batch to ``device``."""
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()
    }


# ------------------------------------------------------------------------ checkpoints

#: Arguments that may change between a run and its ``--resume`` without changing results.
RUNTIME_ARGS = {
    "device",
    "workers",
    "cache_crops",
    "cache",
    "out",
    "resume",
    "stop_after",
    "ckpt_every",
    "log_every",
    "eval_every",
    "vis_count",
    "pseudo_every",
    "no_progress",
}


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """This process's random states: the step generator, torch's CPU and CUDA generators.

    Every draw of a step comes from ``generator``; the global generators are saved too so
    that code added to the step stays exact. Python's and numpy's are not used.
    """
    return {
        "generator": generator.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(generator: torch.Generator, state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    """The arguments that define a run's results, as JSON-friendly values."""
    return {
        k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
        for k, v in sorted(vars(args).items())
        if k not in RUNTIME_ARGS
    }


# ------------------------------------------------------------------------- evaluation


@torch.no_grad()
def predict(
    model: nn.Module,
    data: DataLoader[Any],
    flip_index: Sequence[int] | None,
    args: argparse.Namespace,
    device: torch.device,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, list[int]]:
    """Predictions of ``model`` on every validation crop, in dataset order.

    Returns:
        ``(crop_coords, image_coords, joint_scores, box_scores, areas, image_ids)``.
    """
    was_training = model.training
    model.eval()
    parts: dict[str, list[Tensor]] = {"crop": [], "image": [], "scores": [], "box": [], "area": []}
    image_ids: list[int] = []
    for batch in data:
        image = batch["image"].to(device, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.amp):
            heatmaps = predict_heatmaps(model, image, flip_index)
        coords, scores = decode_heatmaps(heatmaps, refine=args.decode)
        crop = (coords * (image.shape[-1] / heatmaps.shape[-1])).cpu()
        size = (image.shape[-2], image.shape[-1])
        parts["crop"].append(crop)
        parts["image"].append(crop_to_image(crop, batch["center"], batch["scale"], size))
        parts["scores"].append(scores.cpu())
        parts["box"].append(batch["box_score"].float())
        parts["area"].append(batch["scale"].prod(-1))
        image_ids += batch["image_id"].tolist()
    model.train(was_training)
    cat = {k: torch.cat(v) for k, v in parts.items()}
    return cat["crop"], cat["image"], cat["scores"], cat["box"], cat["area"], image_ids


def evaluate(
    models: dict[str, nn.Module],
    data: DataLoader[Any],
    val: CocoPersons,
    args: argparse.Namespace,
    device: torch.device,
) -> tuple[dict[str, dict[str, float]], dict[str, Tensor]]:
    """SSHPE protocol AP of each model; also returns each model's crop predictions."""
    flip_index = val.skeleton.flip_index if args.flip_test else None
    metrics, crops = {}, {}
    for name, model in models.items():
        crop, coords, scores, box, area, ids = predict(model, data, flip_index, args, device)
        results = protocol_results(
            coords, scores, box, ids, val.skeleton.sigmas, category_id=val.category_id, areas=area
        )
        stats = evaluate_keypoints(results, val.ann_file)
        metrics[name] = {k: stats[k] for k in METRICS}
        crops[name] = crop
        (args.out / f"results_{name}.json").write_text(json.dumps(results))
    return metrics, crops


def results_table(metrics: dict[str, dict[str, float]]) -> str:
    """The printed table: one row per model, the COCO metrics as columns."""
    lines = ["model    " + "".join(f"{k:>8}" for k in METRICS)]
    for name, row in metrics.items():
        lines.append(f"{name:<9}" + "".join(f"{row[k]:8.3f}" for k in METRICS))
    return "\n".join(lines)


def draw_predictions(
    path: Path,
    val_set: TopDownDataset,
    crops: dict[str, Tensor],
    count: int,
    links: Sequence[tuple[int, int]],
) -> None:
    """A PNG of ``count`` validation crops: the labels, then each model's predicted skeleton."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = min(count, len(val_set))
    picks = torch.linspace(0, len(val_set) - 1, count).round().long().tolist()
    samples = [val_set[i] for i in picks]
    labels = torch.stack([s["keypoints"] for s in samples])
    labelled = torch.stack([s["visibility"] for s in samples]) > 0
    rows = {"ground truth": (labels, labelled)}
    rows |= {name: (coords[picks], torch.ones_like(labelled)) for name, coords in crops.items()}
    fig, axes = plt.subplots(
        len(rows), count, figsize=(1.6 * count, 2.2 * len(rows)), squeeze=False
    )
    for row, (name, (points, shown)) in enumerate(rows.items()):
        for col, sample in enumerate(samples):
            ax = axes[row][col]
            ax.imshow(denormalize(sample["image"]).permute(1, 2, 0).numpy())
            xy, ok = points[col].numpy(), shown[col].numpy()
            for a, b in links:
                if ok[a] and ok[b]:
                    ax.plot(xy[[a, b], 0], xy[[a, b], 1], color="lime", linewidth=1.2)
            ax.scatter(xy[ok, 0], xy[ok, 1], s=6, color="red", zorder=3)
            ax.set_axis_off()
        axes[row][0].set_title(name, loc="left", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- training


class MetricsLog:
    """``metrics.jsonl``: one JSON object per line, written by the main process only."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None) -> None:
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        kept = []
        if resume_step is not None and path.is_file():  # drop what a killed run logged late
            lines = path.read_text().splitlines()
            kept = [line for line in lines if _logged_step(line) <= resume_step]
        path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        """Append one record."""
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


def _logged_step(line: str) -> float:
    """The step of a ``metrics.jsonl`` line; infinite for a line a kill cut short."""
    try:
        return float(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return math.inf


def split_hidden_labels(batch: dict[str, Any]) -> tuple[dict[str, Any], tuple[Tensor, Tensor]]:
    """An unlabelled batch as what the step may see (the image) and its file's labels.

    The labels go to the diagnostics only, after the step; the step never receives them.

    Returns:
        ``({"image": ...}, (keypoints, visibility))``.
    """
    return {"image": batch["image"]}, (batch["keypoints"], batch["visibility"])


def finite_or_none(value: float) -> float | None:
    """``value`` rounded for the log, or ``None`` (JSON ``null``) when it is not finite."""
    return round(value, 6) if math.isfinite(value) else None


def total_steps(args: argparse.Namespace, labeled: int, world_size: int) -> int:
    """``--steps``, or ``--epochs`` passes over the labelled set."""
    if args.steps is not None:
        return int(args.steps)
    return max(1, math.ceil(args.epochs * labeled / (args.batch_size * world_size)))


def train(args: argparse.Namespace, ddp: Distributed) -> dict[str, dict[str, float]] | None:
    """Set up, train and evaluate; returns the final metrics (``None`` if stopped early)."""
    device = ddp.device
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    labeled, unlabeled, val_set, val = build_datasets(args)
    if cache_crops(args, (labeled, unlabeled, val_set)):
        train_sets = [CropCache(labeled), None if unlabeled is None else CropCache(unlabeled)]
        val_crops: Dataset[Any] = CropCache(val_set)
    else:
        train_sets, val_crops = [labeled, unlabeled], val_set
    skeleton = val.skeleton
    model = SimpleBaseline(args.arch, skeleton.num_joints, args.width)
    if args.pretrained is not None:
        skipped = load_pretrained(model, args.pretrained)
        if skipped and ddp.main:
            print(
                f"--pretrained: {len(skipped)} tensors not in the file kept their init "
                f"({', '.join(sorted({k.split('.')[0] for k in skipped}))})"
            )
    model.to(device)
    student: nn.Module = model
    if ddp.enabled:
        student = DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None, **NO_BUFFER_BROADCAST
        )
    state = np.random.SeedSequence([args.seed, ddp.rank]).generate_state(2)
    generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    method = SSHPEMethod(student, method_config(args), skeleton, generator, amp=args.amp)
    method.teacher.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps = total_steps(args, len(labeled), ddp.world_size)
    milestones = sorted({max(1, round(f * steps)) for f in args.lr_milestones})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, args.lr_gamma)

    start = 0
    path = args.out / CHECKPOINT
    if args.resume:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        changed = sorted(k for k, v in config_of(args).items() if ckpt["config"].get(k) != v)
        if changed:
            raise UsageError(
                f"--resume: {path} was trained with other --{changed[0].replace('_', '-')}"
            )
        if ckpt["world_size"] != ddp.world_size:
            raise UsageError(f"--resume: {path} was trained by {ckpt['world_size']} processes")
        model.load_state_dict(ckpt["student"])
        method.teacher.load_state_dict(ckpt["teacher"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(generator, ckpt["rng"][ddp.rank])
        start = int(ckpt["step"])
    # the losses summed since the last log line, so a resumed run logs the same means
    window = start
    running: dict[str, Tensor] = {}
    if args.resume and "loss_window" in ckpt:
        window = int(ckpt["loss_window"]["start"])
        running = {k: v.to(device) for k, v in ckpt["loss_window"]["sums"].items()}
    log = MetricsLog(args.out / "metrics.jsonl", ddp.main, start if args.resume else None)

    def checkpoint(step: int) -> None:
        rng = ddp.gather(rng_state(generator))
        if ddp.main:
            save_atomic(
                {
                    "step": step,
                    "config": config_of(args),
                    "world_size": ddp.world_size,
                    "student": model.state_dict(),
                    "teacher": method.teacher.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": rng,
                    "loss_window": {
                        "start": window,
                        "sums": {k: v.cpu() for k, v in running.items()},
                    },
                },
                path,
            )

    def sampler(size: int, batch: int, stream: int) -> StepBatchSampler:
        return StepBatchSampler(
            size,
            batch,
            seed=args.seed,
            stream=stream,
            rank=ddp.rank,
            world_size=ddp.world_size,
            start=start,
            total=steps,
        )

    labeled_batches = iter(
        loader(train_sets[0], sampler(len(labeled), args.batch_size, 0), args.workers, device)
    )
    unlabeled_batches = None
    if unlabeled is not None:
        unlabeled_sampler = sampler(len(unlabeled), args.unlabeled_batch_size, 1)
        unlabeled_batches = iter(loader(train_sets[1], unlabeled_sampler, args.workers, device))
    val_batches = [
        list(range(i, min(i + args.eval_batch_size, len(val_set))))
        for i in range(0, len(val_set), args.eval_batch_size)
    ]
    val_loader = loader(val_crops, val_batches, args.workers, device)
    models = {"student": model, "teacher": method.teacher}
    groups = joint_groups(skeleton.names)
    crops_per_step = (
        args.batch_size + (args.unlabeled_batch_size if unlabeled else 0)
    ) * ddp.world_size

    student.train()
    method.teacher.train()
    bar = tqdm(
        total=steps,
        initial=start,
        desc=args.method,
        unit="step",
        dynamic_ncols=True,
        disable=args.no_progress or not ddp.main,
    )
    tick, timed = time.perf_counter(), start
    for step in range(start + 1, steps + 1):
        batch = to_device(next(labeled_batches), device)
        extra, hidden = None, None
        if unlabeled_batches is not None:
            extra, hidden = split_hidden_labels(to_device(next(unlabeled_batches), device))
        losses = method.losses(batch, extra)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        scheduler.step()
        momentum = method.update_teacher()
        for k, v in losses.items():
            running[k] = running.get(k, 0) + v.detach()
        if step % args.log_every == 0 or step == steps:
            record = {k: round(float(v) / (step - window), 7) for k, v in running.items()}
            throughput = (step - timed) * crops_per_step / (time.perf_counter() - tick)
            log.write(
                {
                    "step": step,
                    **record,
                    "lr": scheduler.get_last_lr()[0],
                    "momentum": momentum,
                    "crops_per_s": round(throughput, 1),
                }
            )
            bar.set_postfix(loss=f"{record['loss']:.2e}", crops_s=f"{throughput:.0f}")
            running, window, tick, timed = {}, step, time.perf_counter(), step
        diagnose = hidden is not None and method.last_pseudo is not None and ddp.main
        if diagnose and args.pseudo_every and step % args.pseudo_every == 0:
            stats = step_diagnostics(method, *hidden, groups)
            log.write({"step": step, **{k: finite_or_none(v) for k, v in stats.items()}})
        bar.update(1)
        if args.eval_every and step % args.eval_every == 0 and step < steps:
            if ddp.main:
                metrics, _ = evaluate(models, val_loader, val, args, device)
                log.write({"step": step, "eval": metrics})
            ddp.barrier()
        stopping = args.stop_after is not None and step - start == args.stop_after
        if step % args.ckpt_every == 0 or step == steps or stopping:
            checkpoint(step)
        if stopping and step < steps:
            bar.close()
            if ddp.main:
                print(f"stopped at step {step} of {steps}; continue with --resume")
            return None
    bar.close()
    method.close()

    metrics: dict[str, dict[str, float]] = {}
    if ddp.main:
        metrics, crops = evaluate(models, val_loader, val, args, device)
        log.write({"step": steps, "eval": metrics})
        (args.out / "results.json").write_text(
            json.dumps({"step": steps, "metrics": metrics, "config": config_of(args)}, indent=2)
        )
        plot_training_curves(args.out / "metrics.jsonl", args.out / "curves.png")
        if args.vis_count > 0:
            draw_predictions(
                args.out / "predictions.png", val_set, crops, args.vis_count, skeleton.links
            )
    ddp.barrier()
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    started = time.perf_counter()
    ddp: Distributed | None = None
    try:
        args = build_parser().parse_args(argv)
        apply_profile(args)
        check_args(args)
        ddp = Distributed(args.device)
        if args.images is None:
            default_data(args, ddp)
        args.out.mkdir(parents=True, exist_ok=True)
        metrics = train(args, ddp)
    except (UsageError, ValueError, OSError) as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    finally:
        if ddp is not None:
            ddp.close()
    if metrics and ddp.main:
        flip = "flip test" if args.flip_test else "no flip test"
        seconds = time.perf_counter() - started
        print(f"\n{args.method} on {args.val_ann.name} ({flip}), {seconds:.0f} s:")
        print(results_table(metrics))
        print(f"outputs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
