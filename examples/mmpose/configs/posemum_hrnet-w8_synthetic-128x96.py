# The demo's set-up with a small HRNet (widths 8-64, one block per branch): Pose-MUM mixes at
# the input, after layer1 and the branches of stage2 and stage3, and unmixes stage4's output.
_base_ = ["posemum_res18-w16_synthetic-128x96.py"]

model = dict(
    backbone=dict(
        _delete_=True,
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
    head=dict(in_channels=8, deconv_out_channels=None),
)
