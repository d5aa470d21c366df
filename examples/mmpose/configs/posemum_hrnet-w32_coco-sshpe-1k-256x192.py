# SSHPE's 1K protocol with mmpose's HRNet-W32 student from ImageNet weights: the ResNet-50
# config with the backbone and head of mmpose's td-hm_hrnet-w32_8xb64-210e_coco-256x192.py,
# which is also the plain config of this one's exported weights. Pose-MUM mixes at the
# input, after layer1 and every branch of stage2 and stage3, and unmixes stage4's output.
_base_ = ["posemum_res50_coco-sshpe-1k-256x192.py"]

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
                num_blocks=(4,),
                num_channels=(64,),
            ),
            stage2=dict(
                num_modules=1,
                num_branches=2,
                block="BASIC",
                num_blocks=(4, 4),
                num_channels=(32, 64),
            ),
            stage3=dict(
                num_modules=4,
                num_branches=3,
                block="BASIC",
                num_blocks=(4, 4, 4),
                num_channels=(32, 64, 128),
            ),
            stage4=dict(
                num_modules=3,
                num_branches=4,
                block="BASIC",
                num_blocks=(4, 4, 4, 4),
                num_channels=(32, 64, 128, 256),
            ),
        ),
        init_cfg=dict(
            type="Pretrained",
            checkpoint="https://download.openmmlab.com/mmpose/pretrain_models/hrnet_w32-36af842e.pth",
        ),
    ),
    head=dict(in_channels=32, deconv_out_channels=None),
)
