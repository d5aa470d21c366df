# Data, schedule and run-time settings shared by the Pose-MUM configs: the synthetic set
# written by prepare_data.py, labelled and unlabelled crops in every batch, an EMAN
# teacher updated by EMANTeacherHook. The model configs add the student to `model`.
default_scope = "mmpose"
custom_imports = dict(imports=["posemum_mmpose"], allow_failed_imports=False)

# the folder prepare_data.py wrote; the environment variable POSEMUM_MMPOSE_DATA overrides it
data_root = "{{$POSEMUM_MMPOSE_DATA:data/posemum_mmpose/}}"
# (w, h) crops and heatmaps: small, for CPUs
codec = dict(type="MSRAHeatmap", input_size=(96, 128), heatmap_size=(24, 32), sigma=1.0)
batch_size = 8
labelled_per_batch = 4
max_iters = 200

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
# the easy views: the crops of mmpose's usual top-down augmentation
labelled_pipeline = [
    dict(type="LoadImage"),
    dict(type="GetBBoxCenterScale"),
    dict(type="RandomFlip", direction="horizontal"),
    dict(type="RandomHalfBody"),
    dict(type="RandomBBoxTransform"),
    dict(type="TopdownAffine", input_size=codec["input_size"]),
    dict(type="GenerateTarget", encoder=codec),
    dict(type="SetLabelled", labelled=True),
    dict(type="PackPoseInputs", meta_keys=meta_keys),
]
unlabelled_pipeline = [
    dict(type="LoadImage"),
    dict(type="GetBBoxCenterScale"),
    dict(type="RandomFlip", direction="horizontal"),
    dict(type="RandomBBoxTransform"),
    dict(type="TopdownAffine", input_size=codec["input_size"]),
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
                type="CocoDataset",
                data_root=data_root,
                ann_file="labelled.json",
                data_prefix=dict(img="synthetic/images/"),
                pipeline=labelled_pipeline,
            ),
            # unlabelled images: person boxes as a detector gives them, no keypoints
            dict(
                type="CocoDataset",
                data_root=data_root,
                ann_file="unlabelled.json",
                bbox_file=data_root + "unlabelled_boxes.json",
                test_mode=True,
                data_prefix=dict(img="synthetic/images/"),
                pipeline=unlabelled_pipeline,
            ),
        ],
    ),
)
val_dataloader = dict(
    batch_size=32,
    num_workers=0,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type="CocoDataset",
        data_root=data_root,
        ann_file="synthetic/person_keypoints_val.json",
        data_prefix=dict(img="synthetic/images/"),
        test_mode=True,
        pipeline=val_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="CocoMetric", ann_file=data_root + "synthetic/person_keypoints_val.json")
test_evaluator = val_evaluator

train_cfg = dict(by_epoch=False, max_iters=max_iters, val_interval=max_iters)
val_cfg = dict()
test_cfg = dict()
optim_wrapper = dict(optimizer=dict(type="Adam", lr=1e-3))
param_scheduler = []

custom_hooks = [dict(type="EMANTeacherHook")]
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=20),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=100, save_last=True),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
log_processor = dict(by_epoch=False)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend="nccl"))
randomness = dict(seed=0)
log_level = "INFO"
load_from = None
resume = False

# Pose-MUM + PoseCons with an EMAN teacher; the model configs add the student
model = dict(
    type="SemiTopdownPoseEstimator",
    momentum=0.999,
    unsup_weight=1.0,
    mix=dict(group_size=2, grid=2, p=1.0, p_feature=0.5),
    hard_affine=dict(rotation_p=0.8),
    cutout=dict(num_joints=5, jitter=5.0, half_size=(5, 10)),
    data_preprocessor=dict(
        type="PoseDataPreprocessor",
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
    ),
)
