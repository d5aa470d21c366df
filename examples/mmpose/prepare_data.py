"""Write the bundled synthetic person set for the demo configs (``configs/*_synthetic-*.py``).

Generates ``examples/sshpe``'s procedural COCO-format person set, the one that
``examples/train.py`` trains on by default (same sizes and seed, so the same images)::

    OUT/synthetic/person_keypoints_train.json   2000 people
    OUT/synthetic/person_keypoints_val.json     300 people
    OUT/synthetic/images/

The configs read ``OUT`` as their ``data_root`` and split the training file as SSHPE splits
COCO: the first ``labelled_people`` instances keep their labels (``CocoDataset``'s
``indices``), and every training person is also an unlabelled crop, labels ignored. Run
it once (about 10 s)::

    python examples/mmpose/prepare_data.py --out data/posemum_mmpose
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/, for sshpe

from sshpe.synthetic import generate_synthetic_coco


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/posemum_mmpose"))
    parser.add_argument("--num-train", type=int, default=2000, help="training people")
    parser.add_argument("--num-val", type=int, default=300, help="validation people")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for flag in ("num_train", "num_val"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    paths = generate_synthetic_coco(
        args.out / "synthetic", num_train=args.num_train, num_val=args.num_val, seed=args.seed
    )
    print(f"{paths.train_ann}, {paths.val_ann}")


if __name__ == "__main__":
    main()
