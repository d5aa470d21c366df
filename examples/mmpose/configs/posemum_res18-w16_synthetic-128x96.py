# The demo: Pose-MUM + EMAN on the synthetic set of prepare_data.py, sized for 2 CPU cores
# and set up like examples/train.py's synthetic profile, so that the two can be compared:
# a ResNet-18 SimpleBaseline at a quarter of the width (16-128 channels, 64-channel
# deconvolutions), 128 x 96 crops, heatmap sigma 2, the first 500 people labelled, 16
# labelled + 16 unlabelled crops per step, SSHPE's augmentation, Adam 3e-3, 1000 steps, an
# EMAN teacher at momentum 0.01 (mmdet's convention: the teacher keeps 0.99).
#
#   python examples/mmpose/prepare_data.py --out data/posemum_mmpose
#   python $MMPOSE_TOOLS/train.py examples/mmpose/configs/posemum_res18-w16_synthetic-128x96.py
#
# Supervised-only on the same labelled people and batches:
#   --cfg-options model.semi_train_cfg.unsup_weight=0
_base_ = ["mmpose::_base_/default_runtime.py"]
custom_imports = dict(imports=["posemum_mmpose"], allow_failed_imports=False)

# the folder prepare_data.py wrote; the environment variable POSEMUM_MMPOSE_DATA overrides it
data_root = "{{$POSEMUM_MMPOSE_DATA:data/posemum_mmpose/}}"
dataset_type = "CocoDataset"
data_mode = "topdown"
labelled_people = 500  # the first N instances of the training file (SSHPE's protocol)
labelled_per_batch = 16
batch_size = 32  # labelled + unlabelled crops per step and process
max_iters = 1000
val_interval = 250

# (w, h) crops and heatmaps at stride 4
codec = dict(type="MSRAHeatmap", input_size=(96, 128), heatmap_size=(24, 32), sigma=2)

model = dict(
    type="SemiTopdownPoseEstimator",
    data_preprocessor=dict(
        type="PoseDataPreprocessor",
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
    ),
    backbone=dict(type="ResNet", depth=18, stem_channels=16, base_channels=16),
    head=dict(
        type="HeatmapHead",
        in_channels=128,
        out_channels=17,
        deconv_out_channels=(64, 64, 64),
        deconv_kernel_sizes=(4, 4, 4),
        loss=dict(type="KeypointMSELoss", use_target_weight=True),
        decoder=codec,
    ),
    test_cfg=dict(flip_test=False),
    # the training step (SemiTopdownPoseEstimator's docstring has every key)
    semi_train_cfg=dict(
        sup_weight=1.0,
        unsup_weight=1.0,
        mix=dict(group_size=4, grid=4, p=1.0, p_feature=0.5),
        hard_affine=dict(rotation_p=0.8),
        cutout=dict(num_joints=5, jitter=5.0, half_size=(5, 10)),
    ),
    semi_test_cfg=dict(predict_on="teacher"),
)

# PackPoseInputs' default meta keys and the labelled mark of SetLabelled
meta_keys = (
    "id",
    "img_id",
    "img_path",
    "category_id",
    "crowd_index",
    "ori_shape",
    "img_shape",
    "input_size",
    "input_center",
    "input_scale",
    "flip",
    "flip_direction",
    "flip_indices",
    "raw_ann_info",
    "dataset_name",
    "labelled",
)
# the easy views: SSHPE's scale N(1, 0.25) and rotation N(0, 30 deg) with probability 0.6
# (mmpose draws them from normals truncated at one sigma), horizontal flip; no shift
easy_view = [
    dict(type="LoadImage"),
    dict(type="GetBBoxCenterScale"),
    dict(type="RandomFlip", direction="horizontal"),
    dict(type="RandomBBoxTransform", shift_prob=0.0, scale_factor=(0.75, 1.25), rotate_factor=30),
    dict(type="TopdownAffine", input_size=codec["input_size"]),
]
labelled_pipeline = [
    *easy_view,
    dict(type="GenerateTarget", encoder=codec),
    dict(type="SetLabelled", labelled=True),
    dict(type="PackPoseInputs", meta_keys=meta_keys),
]
unlabelled_pipeline = [
    *easy_view,
    dict(type="SetLabelled", labelled=False),
    dict(type="PackPoseInputs", meta_keys=meta_keys),
]
val_pipeline = [
    dict(type="LoadImage"),
    dict(type="GetBBoxCenterScale"),
    dict(type="TopdownAffine", input_size=codec["input_size"]),
    dict(type="PackPoseInputs"),
]

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=0,
    sampler=dict(
        type="LabelledUnlabelledSampler",
        batch_size=batch_size,
        labelled_per_batch=labelled_per_batch,
    ),
    dataset=dict(
        type="ConcatDataset",
        datasets=[
            dict(
                type=dataset_type,
                data_root=data_root,
                data_mode=data_mode,
                ann_file="synthetic/person_keypoints_train.json",
                data_prefix=dict(img="synthetic/images/"),
                indices=labelled_people,
                pipeline=labelled_pipeline,
            ),
            # every training person, labels ignored (the unlabelled pipeline drops them)
            dict(
                type=dataset_type,
                data_root=data_root,
                data_mode=data_mode,
                ann_file="synthetic/person_keypoints_train.json",
                data_prefix=dict(img="synthetic/images/"),
                pipeline=unlabelled_pipeline,
            ),
        ],
    ),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=0,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_mode=data_mode,
        ann_file="synthetic/person_keypoints_val.json",
        data_prefix=dict(img="synthetic/images/"),
        test_mode=True,
        pipeline=val_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="CocoMetric", ann_file=data_root + "synthetic/person_keypoints_val.json")
test_evaluator = val_evaluator

train_cfg = dict(
    _delete_=True, type="IterBasedTrainLoop", max_iters=max_iters, val_interval=val_interval
)
val_cfg = dict(type="TeacherStudentValLoop")
optim_wrapper = dict(optimizer=dict(type="Adam", lr=3e-3))
param_scheduler = []
auto_scale_lr = dict(base_batch_size=batch_size)

custom_hooks = [
    dict(type="EMANTeacherHook", momentum=0.01),
    dict(type="RankGeneratorHook"),
]
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(
        by_epoch=False, interval=val_interval, save_best="teacher/coco/AP", rule="greater"
    ),
)
log_processor = dict(by_epoch=False)
randomness = dict(seed=0, diff_rank_seed=True)
