# Pose-MUM + EMAN on a small HRNet (widths 8-64): mixes at the input, after layer1 and the
# branches of stage2 and stage3, unmixes stage4's output before the head.
_base_ = ["semi_synthetic.py"]

model = dict(
    student=dict(
        type="TopdownPoseEstimator",
        backbone=dict(
            type="HRNet",
            in_channels=3,
            extra=dict(
                stage1=dict(
                    num_modules=1,
                    num_branches=1,
                    block="BOTTLENECK",
                    num_blocks=(1,),
                    num_channels=(16,),
                ),
                stage2=dict(
                    num_modules=1,
                    num_branches=2,
                    block="BASIC",
                    num_blocks=(1, 1),
                    num_channels=(8, 16),
                ),
                stage3=dict(
                    num_modules=1,
                    num_branches=3,
                    block="BASIC",
                    num_blocks=(1, 1, 1),
                    num_channels=(8, 16, 32),
                ),
                stage4=dict(
                    num_modules=1,
                    num_branches=4,
                    block="BASIC",
                    num_blocks=(1, 1, 1, 1),
                    num_channels=(8, 16, 32, 64),
                ),
            ),
        ),
        head=dict(
            type="HeatmapHead",
            in_channels=8,
            out_channels=17,
            deconv_out_channels=None,
            loss=dict(type="KeypointMSELoss", use_target_weight=True),
            decoder={{_base_.codec}},
        ),
        test_cfg=dict(flip_test=False),
    ),
)
