"""Export the teacher (or the student) of a semi-supervised checkpoint as a plain mmpose one.

    posemum-mmpose-export work_dirs/RUN/iter_N.pth teacher.pth            # the teacher
    posemum-mmpose-export work_dirs/RUN/iter_N.pth student.pth --network student

(or ``python -m posemum_mmpose.export ...``). The output holds the network's weights
under the plain estimator's names (``backbone.*``, ``head.*``) and, as mmpose's own
checkpoints do, the training set's ``dataset_meta`` (skeleton, flip pairs, OKS sigmas);
the plain config of the same model (for the COCO configs, the mmpose config they inherit)
loads it with ``load_from``, ``tools/test.py``, ``init_model`` or ``MMPoseInferencer`` and
predicts exactly what the semi-supervised model predicts with ``predict_on`` set to that
network.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

#: The state-dict prefix of each network in a ``SemiTopdownPoseEstimator``.
PREFIXES = {"teacher": "teacher.module.", "student": "student."}
#: The model-config keys of ``SemiTopdownPoseEstimator`` that the plain estimator lacks.
SEMI_KEYS = ("semi_train_cfg", "semi_test_cfg", "estimator_type")


def plain_model_config(model: dict[str, Any]) -> dict[str, Any]:
    """The plain estimator's config inside a ``SemiTopdownPoseEstimator`` config.

    Example:
        >>> plain_model_config(dict(type="SemiTopdownPoseEstimator", backbone=dict(type="HRNet"),
        ...                         semi_train_cfg=dict(mix=None)))
        {'type': 'TopdownPoseEstimator', 'backbone': {'type': 'HRNet'}}
    """
    plain = {key: value for key, value in model.items() if key not in SEMI_KEYS}
    plain["type"] = model.get("estimator_type", "TopdownPoseEstimator")
    return plain


def plain_state_dict(state_dict: dict[str, Any], network: str = "teacher") -> dict[str, Any]:
    """The entries of ``network`` in a semi-supervised ``state_dict``, with the prefix removed.

    Raises:
        ValueError: for another ``network``, or a state without that network's entries.
    """
    if network not in PREFIXES:
        raise ValueError(f"network must be 'teacher' or 'student', got {network!r}")
    prefix = PREFIXES[network]
    plain = {
        key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)
    }
    if not plain:
        raise ValueError(
            f"no {prefix}* entries: not a SemiTopdownPoseEstimator checkpoint "
            f"(its first keys: {list(state_dict)[:3]})"
        )
    return plain


def export_checkpoint(source: Path, target: Path, network: str = "teacher") -> dict[str, Any]:
    """Write ``network`` of the checkpoint ``source`` to ``target`` as a plain checkpoint.

    Returns:
        The written checkpoint.

    Raises:
        ValueError: for a missing ``source``, an existing ``target``, or what
            :func:`plain_state_dict` raises.
    """
    if not source.is_file():
        raise ValueError(f"no checkpoint file {str(source)!r}")
    if target.exists():
        raise ValueError(f"{str(target)!r} exists: give a new file name")
    # an mmengine checkpoint holds numpy objects (meta, message hub): it is not weights-only
    checkpoint = torch.load(source, map_location="cpu", weights_only=False)
    state = checkpoint.get("state_dict", checkpoint)
    plain = plain_state_dict(state, network)
    step, _ = state["teacher._extra_state"].tolist()
    meta: dict[str, Any] = {
        "posemum_mmpose": {"source": str(source), "network": network, "teacher_step": int(step)}
    }
    if "dataset_meta" in checkpoint.get("meta", {}):
        meta["dataset_meta"] = checkpoint["meta"]["dataset_meta"]
    exported = {"meta": meta, "state_dict": plain}
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(exported, target)
    return exported


def main(argv: list[str] | None = None) -> None:
    """The ``posemum-mmpose-export`` command."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a SemiTopdownPoseEstimator checkpoint")
    parser.add_argument("out", type=Path, help="the plain checkpoint to write")
    parser.add_argument("--network", choices=sorted(PREFIXES), default="teacher")
    args = parser.parse_args(argv)
    try:
        exported = export_checkpoint(args.checkpoint, args.out, args.network)
    except ValueError as error:
        parser.error(str(error))
    print(f"{args.out}: the {args.network}, {len(exported['state_dict'])} entries")


if __name__ == "__main__":
    main()
