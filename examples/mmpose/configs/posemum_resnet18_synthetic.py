# Pose-MUM + EMAN on a ResNet-18 SimpleBaseline: mixes at the input and after layer1-3,
# unmixes layer4's output before the head.
_base_ = ["semi_synthetic.py"]

model = dict(
    student=dict(
        type="TopdownPoseEstimator",
        backbone=dict(type="ResNet", depth=18),
        head=dict(
            type="HeatmapHead",
            in_channels=512,
            out_channels=17,
            deconv_out_channels=(64, 64, 64),
            deconv_kernel_sizes=(4, 4, 4),
            loss=dict(type="KeypointMSELoss", use_target_weight=True),
            decoder={{_base_.codec}},
        ),
        test_cfg=dict(flip_test=False),
    ),
)
