"""Make the bundled synthetic set ready for mmpose's semi-supervised configs.

Generates ``examples/sshpe``'s procedural COCO-format person set (seeded, into
``OUT/synthetic``) and splits its training images into::

    OUT/labelled.json      the first --labelled-images images, with their keypoints
    OUT/unlabelled.json    the other images, without any annotation
    OUT/unlabelled_boxes.json
                           person boxes of the unlabelled images, in the format of a
                           detector's results (COCO "results" list with scores), as a
                           real semi-supervised run would take them from a detector;
                           here they are the ground-truth boxes, score 1
    OUT/synthetic/person_keypoints_val.json, OUT/synthetic/images/

The configs in ``configs/`` read these (``data_root``). Run it once::

    python examples/mmpose/prepare_data.py --out data/posemum_mmpose
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/, for sshpe

from sshpe.synthetic import generate_synthetic_coco


def split_semi(train_ann: Path, out: Path, labelled_images: int) -> dict[str, int]:
    """Write the labelled, unlabelled and box files of ``train_ann`` into ``out``.

    Returns:
        The counts: ``labelled_images``, ``labelled_people``, ``unlabelled_images``,
        ``unlabelled_people``.

    Raises:
        ValueError: if ``labelled_images`` leaves either part without images.
    """
    coco: dict[str, Any] = json.loads(train_ann.read_text())
    images = sorted(coco["images"], key=lambda image: image["id"])
    if not 1 <= labelled_images < len(images):
        raise ValueError(
            f"--labelled-images must be in [1, {len(images) - 1}] for {len(images)} images, "
            f"got {labelled_images}"
        )
    labelled_ids = {image["id"] for image in images[:labelled_images]}
    annotations = coco["annotations"]
    labelled = [a for a in annotations if a["image_id"] in labelled_ids]
    unlabelled = [a for a in annotations if a["image_id"] not in labelled_ids]
    head = {key: value for key, value in coco.items() if key not in ("images", "annotations")}
    files = {
        "labelled.json": {**head, "images": images[:labelled_images], "annotations": labelled},
        "unlabelled.json": {**head, "images": images[labelled_images:], "annotations": []},
        "unlabelled_boxes.json": [
            {
                "image_id": a["image_id"],
                "category_id": a["category_id"],
                "bbox": a["bbox"],
                "score": 1.0,
            }
            for a in unlabelled
        ],
    }
    for name, content in files.items():
        (out / name).write_text(json.dumps(content))
    return {
        "labelled_images": labelled_images,
        "labelled_people": len(labelled),
        "unlabelled_images": len(images) - labelled_images,
        "unlabelled_people": len(unlabelled),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/posemum_mmpose"))
    parser.add_argument("--num-train", type=int, default=400, help="training people")
    parser.add_argument("--num-val", type=int, default=100, help="validation people")
    parser.add_argument(
        "--labelled-images", type=int, default=40, help="training images whose labels are kept"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    paths = generate_synthetic_coco(
        args.out / "synthetic", num_train=args.num_train, num_val=args.num_val, seed=args.seed
    )
    counts = split_semi(paths.train_ann, args.out, args.labelled_images)
    print(", ".join(f"{value} {key.replace('_', ' ')}" for key, value in counts.items()))


if __name__ == "__main__":
    main()
