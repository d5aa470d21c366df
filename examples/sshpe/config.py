"""The trainer's configuration: typed dataclasses, one declaration per option.

Each option is one dataclass field. Its type gives the command-line parser (see
:mod:`sshpe.cli`), its entry in the class docstring's ``Attributes:`` section is the help
text, and ``metadata`` may hold a ``flag`` (when the command-line name differs from the
field's) and a ``metavar``. A run's configuration is built in layers, later ones winning:

1. the field defaults (the SSHPE protocol for your own annotation files);
2. the :data:`PROFILES` entry of the data: ``synthetic`` (no data arguments: a CPU-sized
   job on the bundled set, the README's command) or ``files``;
3. sizes derived from the crop height (target sigma, Joint Cutout boxes) and mixing points
   from the network (``--arch``) unless given;
4. a saved configuration (``--config run/config.json``);
5. the command-line flags.

The result, :class:`TrainConfig`, is what the trainer saves in its run folder and its
checkpoints: ``--config`` repeats a run exactly and ``--resume`` compares it section by
section (every section but :class:`RuntimeConfig` must match).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

import torch

from sshpe.methods import MethodConfig, scaled_cutout, scaled_sigma
from sshpe.models import Arch, mix_points

__all__ = [
    "CONFIG_FILE",
    "FOLLOWS_ARCH",
    "INVOCATION_ONLY",
    "MAX_BATCH",
    "MAX_CUTOUT_JOINTS",
    "MAX_INPUT",
    "MAX_LR",
    "MAX_WIDTH",
    "PROFILES",
    "RESUME_MAY_CHANGE",
    "SCALED_WITH_HEIGHT",
    "SECTIONS",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "RuntimeConfig",
    "ScheduleConfig",
    "TrainConfig",
    "build_config",
    "derived_options",
    "field_types",
    "flag_of",
    "load_config_file",
]


#: The resolved configuration's file name in a run folder.
CONFIG_FILE = "config.json"
#: Upper bounds of options whose huge values would fail deep inside a run (an allocation,
#: a float32 overflow) instead of with a line that names the flag.
MAX_INPUT = 2048
MAX_WIDTH = 16.0
MAX_BATCH = 65536
MAX_LR = 1e30
MAX_CUTOUT_JOINTS = 1000
#: Sections that may change on ``--resume``: how the run is evaluated, where it runs.
RESUME_MAY_CHANGE = ("evaluation", "runtime")
#: Runtime options that hold for one invocation only: a saved configuration's are ignored.
INVOCATION_ONLY = frozenset({"resume", "overwrite", "stop_after"})
#: Options by section, ``{section: {field: value}}``.
Layer = Mapping[str, Mapping[str, Any]]


class ConfigError(ValueError):
    """A bad option value; the message names the option as its command-line flag."""


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "posemum-aug"


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check_box_score(section: Any, boxes: str, score: str) -> None:
    """A detection score threshold ``score`` is a finite number, given only with its
    detection-results file ``boxes``."""
    value = getattr(section, score)
    _require(math.isfinite(value), f"{flag_of(score)} must be a finite number, got {value}")
    _require(
        value == 0 or getattr(section, boxes) is not None,
        f"{flag_of(score)} {value:g} is a threshold on the detections of {flag_of(boxes)}, "
        f"which is not given (give it, or {flag_of(score)} 0)",
    )


@dataclass(frozen=True)
class DataConfig:
    """Data (all files omitted: the bundled synthetic set).

    Attributes:
        images: image folder of ``train_ann``.
        train_ann: COCO keypoint annotations for training.
        val_ann: COCO keypoint annotations for evaluation.
        val_images: image folder of ``val_ann`` (default: ``images``).
        unlabeled_ann: annotations of the unlabelled pool, labels ignored (default:
            ``train_ann``); with ``unlabeled_boxes``, only its image list is read, to name
            the files of the detections' image ids.
        unlabeled_images: image folder of the unlabelled pool (default: ``images``).
        unlabeled_boxes: a COCO detection-results file (a JSON list of image_id,
            category_id, bbox, score) whose person boxes are the unlabelled pool, instead of
            the boxes of ``unlabeled_ann`` (SSHPE's wild pool: a detector's boxes on
            unlabeled2017). Image ids name files through ``unlabeled_ann`` if given, else
            as COCO's: the id zero-padded to 12 digits, .jpg.
        unlabeled_box_score: the lowest score of an ``unlabeled_boxes`` detection kept
            (SSHPE keeps all).
        labeled: labelled instances, the first N of ``train_ann`` in file order; 0 = all.
        flip_pairs: the left/right joints swapped by flips, as LEFT:RIGHT joint names (e.g.
            LHip:RHip LKnee:RKnee); other joints map to themselves (default: the category's
            'flip_pairs', else paired by name: left_x / right_x, l_x / r_x, x_l / x_r,
            LHip / RHip).
    """

    images: Path | None = field(default=None, metadata={"metavar": "DIR"})
    train_ann: Path | None = field(default=None, metadata={"metavar": "FILE"})
    val_ann: Path | None = field(default=None, metadata={"metavar": "FILE"})
    val_images: Path | None = field(default=None, metadata={"metavar": "DIR"})
    unlabeled_ann: Path | None = field(default=None, metadata={"metavar": "FILE"})
    unlabeled_images: Path | None = field(default=None, metadata={"metavar": "DIR"})
    unlabeled_boxes: Path | None = field(default=None, metadata={"metavar": "FILE"})
    unlabeled_box_score: float = field(default=0.0, metadata={"metavar": "S"})
    labeled: int = field(default=1000, metadata={"metavar": "N"})
    flip_pairs: tuple[str, ...] | None = field(default=None, metadata={"metavar": "LEFT:RIGHT"})

    def __post_init__(self) -> None:
        given = [v is not None for v in (self.images, self.train_ann, self.val_ann)]
        _require(
            all(given) or not any(given),
            "give --images, --train-ann and --val-ann together (or none of them)",
        )
        _require(self.labeled >= 0, f"--labeled must be >= 0 (0 = all), got {self.labeled}")
        _check_box_score(self, "unlabeled_boxes", "unlabeled_box_score")
        for pair in self.flip_pairs or ():
            _require(
                re.fullmatch(r"[^:]+:[^:]+", pair) is not None,
                f"--flip-pairs takes LEFT:RIGHT joint names, got {pair!r}",
            )

    @property
    def pairs(self) -> list[tuple[str, str]] | None:
        """``flip_pairs`` as ``(left, right)`` joint names, or ``None``."""
        if self.flip_pairs is None:
            return None
        return [(left, right) for left, right in (p.split(":") for p in self.flip_pairs)]

    @property
    def synthetic(self) -> bool:
        """Whether the run trains on the bundled synthetic set."""
        return self.images is None


@dataclass(frozen=True)
class ModelConfig:
    """Model.

    Attributes:
        arch: the network: SimpleBaseline on ResNet-18 / ResNet-50, or HRNet-W32 / W48
            (sshpe.models.build_model).
        width: channel multiplier (1 = paper).
        input_size: crop height and width, multiples of 32; heatmaps are 4x smaller.
        pretrained: weights to start from (see sshpe.models.load_pretrained).
    """

    arch: Arch = "resnet18"
    width: float = 1.0
    input_size: tuple[int, int] = field(default=(256, 192), metadata={"metavar": ("H", "W")})
    pretrained: Path | None = field(default=None, metadata={"metavar": "FILE"})

    def __post_init__(self) -> None:
        height, width = self.input_size
        _require(
            32 <= height <= MAX_INPUT and 32 <= width <= MAX_INPUT,
            f"--input-size must be in 32..{MAX_INPUT}, got {height} {width}",
        )
        _require(
            height % 32 == 0 and width % 32 == 0,
            f"--input-size must be multiples of 32, got {height} {width}",
        )
        _require(
            0 < self.width <= MAX_WIDTH, f"--width must be in (0, {MAX_WIDTH}], got {self.width}"
        )


@dataclass(frozen=True)
class ScheduleConfig:
    """Optimisation.

    Attributes:
        steps: training steps (required for your own files, or give ``epochs``).
        epochs: passes over the labelled set, instead of ``steps``.
        batch_size: labelled crops per step and process.
        unlabeled_batch_size: unlabelled crops per step and process.
        lr: Adam learning rate.
        lr_milestones: fractions of the steps where the learning rate is multiplied by
            ``lr_gamma`` (none: a constant rate).
        lr_gamma: learning-rate decay factor.
        seed: seed of the weights, the augmentation and the data order.
        amp: bfloat16 autocast (CUDA only).
    """

    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 32
    unlabeled_batch_size: int = 32
    lr: float = 1e-3
    lr_milestones: tuple[float, ...] = field(
        default=(0.7, 0.9), metadata={"metavar": "F", "nargs": "*"}
    )
    lr_gamma: float = 0.1
    seed: int = 0
    amp: bool = False

    def __post_init__(self) -> None:
        _require(self.steps is None or self.epochs is None, "give --steps or --epochs, not both")
        for name in ("steps", "batch_size", "unlabeled_batch_size"):
            value = getattr(self, name)
            _require(value is None or value >= 1, f"{flag_of(name)} must be >= 1, got {value}")
        for name in ("batch_size", "unlabeled_batch_size"):
            value = getattr(self, name)
            _require(value <= MAX_BATCH, f"{flag_of(name)} must be <= {MAX_BATCH}, got {value}")
        _require(self.epochs is None or self.epochs > 0, f"--epochs must be > 0, got {self.epochs}")
        _require(self.lr > 0, f"--lr must be > 0, got {self.lr}")
        _require(self.seed >= 0, f"--seed must be >= 0, got {self.seed}")
        _require(self.lr_gamma > 0, f"--lr-gamma must be > 0, got {self.lr_gamma}")
        _require(
            all(0 < f < 1 for f in self.lr_milestones),
            f"--lr-milestones are fractions in (0, 1), got {list(self.lr_milestones)}",
        )
        # Adam's step is up to 10 lr: beyond float32's range it overflows instead of diverging
        top = math.log10(self.lr) + len(self.lr_milestones) * max(0.0, math.log10(self.lr_gamma))
        _require(
            top <= math.log10(MAX_LR),
            f"--lr {self.lr:g} with --lr-gamma {self.lr_gamma:g} at {len(self.lr_milestones)} "
            f"--lr-milestones reaches 1e{top:.0f}; the learning rate must stay <= {MAX_LR:g}",
        )


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation (may change on --resume, which then evaluates the run again).

    Attributes:
        val_boxes: evaluate on the person boxes of a COCO detection-results file (a JSON
            list of image_id, category_id, bbox, score, on the images of ``val_ann``)
            instead of the ground-truth boxes: SimpleBaseline's and SSHPE's test on a
            detector's boxes (each person scored by box score x mean confident joint
            score, OKS-NMS at 0.9; AP against ``val_ann``).
        val_box_score: the lowest score of a ``val_boxes`` detection kept (SimpleBaseline
            and mmpose keep all).
        flip_test: average each prediction with the flipped crop's.
        eval_batch_size: crops per evaluation batch.
        protocol: the keypoint AP protocol: coco, crowdpose (the official CrowdPose
            protocol), or auto (crowdpose for CrowdPose's 14 joints, else coco).
    """

    val_boxes: Path | None = field(default=None, metadata={"metavar": "FILE"})
    val_box_score: float = field(default=0.0, metadata={"metavar": "S"})
    flip_test: bool = False
    eval_batch_size: int = 64
    protocol: Literal["auto", "coco", "crowdpose"] = "auto"

    def __post_init__(self) -> None:
        _check_box_score(self, "val_boxes", "val_box_score")
        size = self.eval_batch_size
        _require(1 <= size <= MAX_BATCH, f"--eval-batch-size must be in 1..{MAX_BATCH}, got {size}")


@dataclass(frozen=True)
class RuntimeConfig:
    """Run (may change between a run and its --resume).

    Attributes:
        device: cpu, cuda or cuda:N (default: cuda when available).
        workers: data-loading processes per process (default: 4 on CUDA; 0 on CPU, where
            they would take cores from the training threads; 0 loads in-process).
        cache_crops: keep the un-augmented crops in memory as uint8 (default: on with
            ``workers`` 0 when they fit in 2 GiB).
        cache: where the synthetic default set is generated.
        out: output folder.
        resume: continue the run in ``out`` exactly, from its checkpoint and
            ``config.json`` (other flags: only the runtime ones may change).
        overwrite: delete an earlier run's outputs in ``out`` first.
        ckpt_every: steps between checkpoints.
        stop_after: leave after N steps of this invocation with a checkpoint (as if
            killed); ``resume`` continues.
        log_every: steps between metric lines (and divergence checks).
        eval_every: steps between evaluations (0: at the end only).
        pseudo_every: steps between pseudo-label diagnostics against the unlabelled
            file's ignored labels (0: off; see sshpe.diagnostics).
        vis_count: crops in predictions.png (0: none).
        progress: show a progress bar.
        tensorboard: also log the scalars of metrics.jsonl to TensorBoard, in ``out``/tb
            (needs the tensorboard package).
    """

    device: str | None = None
    workers: int | None = None
    cache_crops: bool | None = None
    cache: Path = field(default_factory=_cache_root, metadata={"metavar": "DIR"})
    out: Path = field(default=Path("runs/train"), metadata={"metavar": "DIR"})
    resume: bool = False
    overwrite: bool = False
    ckpt_every: int = 100
    stop_after: int | None = field(default=None, metadata={"metavar": "N"})
    log_every: int = 10
    eval_every: int = 0
    pseudo_every: int = 50
    vis_count: int = 8
    progress: bool = True
    tensorboard: bool = False

    def __post_init__(self) -> None:
        for name in ("ckpt_every", "stop_after", "log_every"):
            value = getattr(self, name)
            _require(value is None or value >= 1, f"{flag_of(name)} must be >= 1, got {value}")
        for name in ("workers", "eval_every", "pseudo_every", "vis_count"):
            value = getattr(self, name)
            _require(value is None or value >= 0, f"{flag_of(name)} must be >= 0, got {value}")
        _require(not (self.resume and self.overwrite), "give --resume or --overwrite, not both")
        if self.device is not None:
            _require(
                re.fullmatch(r"cpu|cuda(:\d+)?", self.device) is not None,
                f"--device must be cpu, cuda or cuda:N, got {self.device!r}",
            )


#: The sections of a :class:`TrainConfig`, by name, in command-line order.
SECTIONS: dict[str, type[Any]] = {
    "data": DataConfig,
    "model": ModelConfig,
    "method": MethodConfig,
    "schedule": ScheduleConfig,
    "evaluation": EvalConfig,
    "runtime": RuntimeConfig,
}

#: Method options whose default scales with the crop height ``H`` (SSHPE's values at
#: ``H = 256``), unless a profile, a saved configuration or a flag gives them.
SCALED_WITH_HEIGHT = {
    "sigma": "2 x H / 256 (sshpe.methods.scaled_sigma)",
    "cutout_jitter": "10 x H / 256 (sshpe.methods.scaled_cutout)",
    "cutout_half_size": "10 19 x H / 256 (sshpe.methods.scaled_cutout)",
}
#: Method options whose default follows the network ``--arch`` (sshpe.models.mix_points),
#: unless a profile, a saved configuration or a flag gives them.
FOLLOWS_ARCH = {
    "mix_at": "'' layer1 layer2 layer3 for the ResNets, '' stem stage2 stage3 for the HRNets",
    "unmix_at": "layer4 for the ResNets, stage4 for the HRNets",
}
#: Defaults that depend on the data. ``files``: the SSHPE protocol (the field defaults);
#: a step count is required. ``synthetic``: the CPU-sized job of the README's command on
#: the bundled set.
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "files": {},
    "synthetic": {
        "data": {"labeled": 500},
        "model": {"input_size": (128, 96), "width": 0.25},
        "method": {
            "momentum": 0.99,
            "momentum_warmup": 0,
            # SSHPE's 2 heatmap px rather than the 1 that scaling to 128 px would give: the
            # value every synthetic run in examples/README.md was trained with
            "sigma": 2.0,
        },
        "schedule": {"batch_size": 16, "unlabeled_batch_size": 16, "lr": 3e-3, "steps": 1500},
    },
}


@dataclass(frozen=True)
class TrainConfig:
    """A whole run: one object per section, checked together.

    The summaries of the sections are the command line's group titles.

    Attributes:
        data: Data (all files omitted: the bundled synthetic set).
        model: Model.
        method: The training step (sshpe.methods.MethodConfig), with SSHPE's defaults.
        schedule: Optimisation.
        evaluation: Evaluation (may change on --resume, which then evaluates the run again).
        runtime: Run (may change between a run and its --resume).
        derived: the options whose values were derived from others (the target sigma from
            the crop height, ...; see :func:`build_config`): a saved configuration lists
            them, and ``--config`` / ``--resume`` derive them again instead of taking them
            as given. A file saved before the list existed (no ``"derived"`` key) has its
            values that equal what its own input size and network derive taken as derived
            (:func:`load_config_file`).
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    derived: frozenset[str] = field(default=frozenset(), compare=False)

    def __post_init__(self) -> None:
        schedule, method = self.schedule, self.method
        _require(
            schedule.steps is not None or schedule.epochs is not None,
            "give --steps or --epochs for your own data",
        )
        mixed = {"unlabeled_batch_size": schedule.unlabeled_batch_size}
        if method.mix_labeled:
            mixed["batch_size"] = schedule.batch_size
        for name, size in mixed.items():
            _require(
                not method.mixing or size >= method.mix_group,
                f"{flag_of(name)} {size} is smaller than the mixing group --mix-group "
                f"{method.mix_group}: no sample would be mixed with another",
            )
        device = self.runtime.device or ("cuda" if torch.cuda.is_available() else "cpu")
        _require(not schedule.amp or device.startswith("cuda"), "--amp needs a CUDA --device")
        (tiles_h, tiles_w), (height, width) = method.mix_grid, self.model.input_size
        _require(
            tiles_h <= height and tiles_w <= width,
            f"--mix-grid {tiles_h} {tiles_w} has more tiles than the --input-size "
            f"{height} {width} has pixels",
        )
        _require(
            method.cutout_joints <= MAX_CUTOUT_JOINTS,
            f"--cutout-joints must be <= {MAX_CUTOUT_JOINTS}, got {method.cutout_joints}",
        )
        _require(
            method.confidence_mode != "percentile"
            or method.confidence is None
            or 0 <= method.confidence <= 1,
            "--filter-confidence is the fraction of the batch's joints to drop with "
            f"--filter-mode percentile, in [0, 1], got {method.confidence}",
        )
        _require(
            method.flip_consistency is None or method.flip_consistency >= 0,
            f"--filter-flip is a distance in heatmap pixels, >= 0, got {method.flip_consistency}",
        )

    @property
    def profile(self) -> str:
        """The :data:`PROFILES` entry of the data."""
        return "synthetic" if self.data.synthetic else "files"

    def to_json(self) -> dict[str, Any]:
        """The configuration as JSON values (paths as strings, tuples as lists): the
        sections, and ``"derived"``, the sorted :attr:`derived` options."""
        sections: dict[str, Any] = {
            name: {
                f.name: _to_json(getattr(section, f.name))
                for f in dataclasses.fields(type(section))
            }
            for name, section in self.sections().items()
        }
        return {**sections, "derived": sorted(self.derived)}

    @classmethod
    def from_json(cls, saved: Layer) -> TrainConfig:
        """The configuration that :meth:`to_json` returned (no profile applied).

        Raises:
            ConfigError: on a missing or unknown option, or a bad value.
        """
        try:
            sections = {
                name: SECTIONS[name](**{k: convert(k, v) for k, v in saved[name].items()})
                for name in SECTIONS
            }
        except (KeyError, TypeError, AttributeError) as e:
            raise ConfigError(f"not a configuration of this trainer ({e!r})") from None
        return cls(**sections, derived=frozenset(saved.get("derived", ())))

    def sections(self) -> dict[str, Any]:
        """The section objects by name, as in :data:`SECTIONS`."""
        return {name: getattr(self, name) for name in SECTIONS}

    def differences(self, other: TrainConfig, *, every: bool = False) -> list[str]:
        """The flags of the options whose values differ from ``other``'s; those of
        :data:`RESUME_MAY_CHANGE` only if ``every``."""
        a, b = self.to_json(), other.to_json()
        return [
            flag_of(key)
            for name in SECTIONS
            if every or name not in RESUME_MAY_CHANGE
            for key in a[name]
            if a[name][key] != b[name].get(key)
        ]


def _to_json(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def field_types(cls: type[Any]) -> dict[str, Any]:
    """The resolved type of each field of a section."""
    return typing.get_type_hints(cls)


@cache
def _field_index() -> dict[str, tuple[str, dataclasses.Field[Any]]]:
    index: dict[str, tuple[str, dataclasses.Field[Any]]] = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if f.name in index:
                raise TypeError(f"option {f.name!r} is declared twice")
            index[f.name] = (section, f)
    return index


def flag_of(name: str) -> str:
    """The command-line flag of the option (field) ``name``, e.g. ``--lr-gamma``."""
    _, f = _field_index()[name]
    return str(f.metadata.get("flag", "--" + name.replace("_", "-")))


def convert(name: str, value: Any) -> Any:
    """A JSON or command-line value of option ``name`` as its field's type.

    Raises:
        ConfigError: if the value does not fit the type (numbers must be finite).
    """
    section, _ = _field_index()[name]
    return _convert(field_types(SECTIONS[section])[name], value, flag_of(name))


def _convert(kind: Any, value: Any, flag: str) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, flag)
    if origin is Literal:
        _require(value in args, f"{flag} must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin is tuple:
        _require(isinstance(value, (list, tuple)), f"{flag} takes a list, got {value!r}")
        items = args[:1] * len(value) if args[-1:] == (Ellipsis,) else args
        _require(len(items) == len(value), f"{flag} takes {len(items)} values, got {value!r}")
        return tuple(_convert(k, v, flag) for k, v in zip(items, value, strict=True))
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        _require(isinstance(value, bool), f"{flag} must be true or false, got {value!r}")
        return value
    if kind is int:
        _require(
            (isinstance(value, int) and not isinstance(value, bool))
            or (isinstance(value, str) and value.strip().lstrip("+-").isdigit()),
            f"{flag} must be an integer, got {_shown(value)}",
        )  # not "2.5", "1e30", 2.0 or true
        digits = str(value).strip().lstrip("+-").lstrip("0")
        _require(
            len(digits) <= 19 and abs(int(value)) < 2**63,
            f"{flag} must be an integer in (-2^63, 2^63), got {_shown(value)}",
        )
        return int(value)
    if kind is float:
        try:
            real = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{flag} must be a number, got {_shown(value)}") from None
        except OverflowError:  # an integer beyond float's range
            real = math.inf
        _require(
            not isinstance(value, bool) and math.isfinite(real),
            f"{flag} must be a finite number, got {_shown(value)}",
        )
        return real
    if kind is Path:
        _require(isinstance(value, (str, Path)), f"{flag} must be a path, got {value!r}")
        return Path(value)
    if kind is str:
        _require(isinstance(value, str), f"{flag} must be a string, got {value!r}")
        return value
    raise TypeError(f"{flag}: unsupported option type {kind!r}")


def _shown(value: Any, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters for an error message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def load_config_file(path: Path) -> dict[str, dict[str, Any]]:
    """The sections of a saved configuration (``config.json`` of a run), values converted,
    less the options of :data:`INVOCATION_ONLY` and those the file lists as ``"derived"``
    (:attr:`TrainConfig.derived`: derived again from the options they follow). A file
    without that list (saved before it existed) is read as if it listed the options whose
    values equal what the file's own input size and network derive (a value given equal to
    the derived one is then derived again too).

    Raises:
        ConfigError: if the file is missing, not JSON, names an unknown option or has a
            bad value; the message names the file.
    """
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"--config: cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise ConfigError(f"--config: {path} is not JSON: {e}") from None
    _require(isinstance(data, dict), f"--config: {path} is not a configuration object")
    derived = data.pop("derived") if "derived" in data else _derived_in(data)
    _require(
        isinstance(derived, list) and all(name in _field_index() for name in derived),
        f"--config: {path}: 'derived' must list option names, got {_shown(derived)}",
    )
    layer: dict[str, dict[str, Any]] = {}
    for section, values in data.items():
        _require(section in SECTIONS, f"--config: {path} has an unknown section {section!r}")
        _require(
            isinstance(values, dict), f"--config: {path}: section {section!r} is not an object"
        )
        for name, value in values.items():
            if name in INVOCATION_ONLY or name in derived:
                continue
            known = _field_index().get(name)
            _require(
                known is not None and known[0] == section,
                f"--config: {path} has an unknown option {section}.{name}",
            )
            try:
                layer.setdefault(section, {})[name] = convert(name, value)
            except ConfigError as e:
                raise ConfigError(f"--config {path}: {e}") from None
    return layer


def _derived_in(saved: dict[str, Any]) -> list[str]:
    """The options of a saved configuration without a ``"derived"`` list whose values equal
    what its own model section derives (none if that section cannot be read: the
    caller's checks name the problem)."""
    try:
        model = ModelConfig(**{k: convert(k, v) for k, v in saved["model"].items()})
        method = {k: convert(k, v) for k, v in saved["method"].items() if k in _DERIVED}
    except (ConfigError, KeyError, TypeError, AttributeError):
        return []
    return sorted(k for k, v in derived_options(model).items() if method.get(k) == v)


#: The options :func:`derived_options` derives.
_DERIVED = (*SCALED_WITH_HEIGHT, *FOLLOWS_ARCH)


def derived_options(model: ModelConfig) -> dict[str, Any]:
    """The method options derived from the model: :data:`SCALED_WITH_HEIGHT` from the crop
    height, :data:`FOLLOWS_ARCH` from the network.

    Example:
        >>> derived_options(ModelConfig(input_size=(384, 288)))["cutout_half_size"]
        (15, 28)
    """
    jitter, half_size = scaled_cutout(model.input_size[0])
    mix_at, unmix_at = mix_points(model.arch)
    return {
        "sigma": scaled_sigma(model.input_size[0]),
        "cutout_jitter": jitter,
        "cutout_half_size": half_size,
        "mix_at": mix_at,
        "unmix_at": unmix_at,
    }


def build_config(*layers: Layer) -> TrainConfig:
    """The configuration of the given layers over the defaults and the data's profile.

    Args:
        layers: ``{section: {field: value}}`` mappings of explicitly given options, in
            increasing priority (a saved configuration, then the command line).

    Returns:
        The checked configuration; its :attr:`~TrainConfig.derived` are the options
        derived here (from the crop height, the network) because no layer or profile
        gave them.

    Raises:
        ConfigError: on a bad value or combination, naming the option.
    """
    given: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for layer in layers:
        for section, values in layer.items():
            given[section].update(values)
    data = DataConfig(**given["data"])
    profile = PROFILES["synthetic" if data.synthetic else "files"]
    values = {name: {**profile.get(name, {}), **given[name]} for name in SECTIONS}
    derived = derived_options(ModelConfig(**values["model"]))
    unset = frozenset(derived).difference(values["method"])
    values["method"] = {**derived, **values["method"]}
    sections = {name: SECTIONS[name](**values[name]) for name in SECTIONS}
    return TrainConfig(**sections, derived=unset)
