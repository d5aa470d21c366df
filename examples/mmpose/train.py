"""Train a Pose-MUM + EMAN semi-supervised mmpose model with mmengine's Runner.

    python examples/mmpose/prepare_data.py --out data/posemum_mmpose
    python examples/mmpose/train.py examples/mmpose/configs/posemum_resnet18_synthetic.py \\
        --work-dir runs/mmpose_resnet18

``--resume`` continues from the work folder's last checkpoint (student, teacher and the
teacher's step, optimizer, iteration); ``--cfg-options key=value ...`` overrides the config.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # examples/mmpose, for posemum_mmpose

from posemum_mmpose import lite

lite.install()

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="the training config")
    parser.add_argument("--work-dir", type=Path, help="checkpoints and logs (default: runs/NAME)")
    parser.add_argument(
        "--data-root", type=Path, help="the folder of prepare_data.py (default: the config's)"
    )
    parser.add_argument("--resume", action="store_true", help="resume from the last checkpoint")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="config overrides")
    args = parser.parse_args(argv)
    if not args.config.is_file():
        parser.error(f"no config file {args.config}")
    if args.data_root is not None:  # the configs read it in their data_root
        os.environ["POSEMUM_MMPOSE_DATA"] = f"{args.data_root}/"
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = str(args.work_dir or Path("runs") / args.config.stem)
    cfg.resume = args.resume
    Runner.from_cfg(cfg).train()


if __name__ == "__main__":
    main()
