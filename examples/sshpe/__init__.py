"""Helpers of ``examples/train.py``: the SSHPE semi-supervised pose-estimation protocol.

A plain folder, importable with ``examples/`` on ``sys.path`` (``train.py`` puts it there):

* :mod:`sshpe.data`: COCO person-keypoint files, SSHPE splits, a detector's person boxes
  (detection-results files), un-augmented top-down crops;
* :mod:`sshpe.models`: SimpleBaseline with ResNet-18 / ResNet-50 backbones, and
  :mod:`sshpe.hrnet`: HRNet-W32 / W48;
* :mod:`sshpe.methods`: the per-step losses of ``supervised``, ``consistency``,
  ``posemum``, ``dual`` and ``posemum_dual``;
* :mod:`sshpe.evaluate`: COCO OKS AP and the SSHPE test protocol;
* :mod:`sshpe.synthetic`: the bundled procedural person data set.
"""
