# Pose-MUM + EMAN on COCO with SSHPE's 1K protocol (Xie et al., ICCV 2021): the first 1000
# person instances of person_keypoints_train2017.json keep their labels, and all of train2017
# is the unlabelled pool (labels ignored). The student is mmpose's SimpleBaseline ResNet-50
# from ImageNet weights (init_cfg); validation runs the teacher and the student on val2017
# with the person detector's boxes and flip test, as the plain config does.
#
# "First N instances" is mmpose's order: images in file order, each image's annotations in
# file order, after CocoDataset drops crowd boxes and people without keypoints; `indices`
# keeps the first N of that list.
#
# Everything not set here is mmpose's plain config, which also loads this config's weights
# once exported (posemum-mmpose-export) and whose checkpoints load_from maps into both the
# student and the teacher. Settings marked [ours] are not from SSHPE's paper: untuned.
_base_ = ["mmpose::body_2d_keypoint/topdown_heatmap/coco/td-hm_res50_8xb64-210e_coco-256x192.py"]
custom_imports = dict(imports=["posemum_mmpose"], allow_failed_imports=False)

labelled_instances = 1000
labelled_per_batch = 32  # SSHPE: 32 labelled + 32 unlabelled crops per step
batch_size = 64
max_iters = 60000  # [ours]
val_interval = 5000

model = dict(
    type="SemiTopdownPoseEstimator",
    semi_train_cfg=dict(
        sup_weight=1.0,
        unsup_weight=1.0,
        mix=dict(group_size=4, grid=4, p=1.0, p_feature=0.5),
        hard_affine=dict(rotation_p=0.8),
        cutout=dict(num_joints=5, jitter=10.0, half_size=(10, 19)),
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
# SSHPE's easy view: scale N(1, 0.25), rotation N(0, 30 deg) with probability 0.6 (mmpose
# truncates both normals at one sigma), horizontal flip; no shift, no half body
easy_view = [
    dict(type="LoadImage"),
    dict(type="GetBBoxCenterScale"),
    dict(type="RandomFlip", direction="horizontal"),
    dict(type="RandomBBoxTransform", shift_prob=0.0, scale_factor=(0.75, 1.25), rotate_factor=30),
    dict(type="TopdownAffine", input_size={{_base_.codec.input_size}}),
]
labelled_pipeline = [
    *easy_view,
    dict(type="GenerateTarget", encoder={{_base_.codec}}),
    dict(type="SetLabelled", labelled=True),
    dict(type="PackPoseInputs", meta_keys=meta_keys),
]
unlabelled_pipeline = [
    *easy_view,
    dict(type="SetLabelled", labelled=False),
    dict(type="PackPoseInputs", meta_keys=meta_keys),
]

labelled_dataset = dict(
    type={{_base_.dataset_type}},
    data_root={{_base_.data_root}},
    data_mode={{_base_.data_mode}},
    ann_file="annotations/person_keypoints_train2017.json",
    data_prefix=dict(img="train2017/"),
    indices=labelled_instances,
    pipeline=labelled_pipeline,
)
unlabelled_dataset = dict(
    type={{_base_.dataset_type}},
    data_root={{_base_.data_root}},
    data_mode={{_base_.data_mode}},
    ann_file="annotations/person_keypoints_train2017.json",
    data_prefix=dict(img="train2017/"),
    pipeline=unlabelled_pipeline,
)
train_dataloader = dict(
    _delete_=True,
    batch_size=batch_size,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(
        type="LabelledUnlabelledSampler",
        batch_size=batch_size,
        labelled_per_batch=labelled_per_batch,
    ),
    dataset=dict(type="ConcatDataset", datasets=[labelled_dataset, unlabelled_dataset]),
)

train_cfg = dict(
    _delete_=True, type="IterBasedTrainLoop", max_iters=max_iters, val_interval=val_interval
)
val_cfg = dict(type="TeacherStudentValLoop")  # test_cfg: mmpose's TestLoop on predict_on
optim_wrapper = dict(optimizer=dict(type="Adam", lr=1e-3))  # SSHPE
param_scheduler = [
    dict(type="LinearLR", begin=0, end=500, start_factor=0.001, by_epoch=False),
    dict(
        type="MultiStepLR",
        begin=0,
        end=max_iters,
        milestones=[40000, 55000],
        gamma=0.1,
        by_epoch=False,
    ),  # [ours]
]
auto_scale_lr = dict(base_batch_size=batch_size)  # one process

custom_hooks = [
    dict(type="EMANTeacherHook", momentum=0.001),  # EMAN's teacher momentum 0.999
    dict(type="RankGeneratorHook"),
]
default_hooks = dict(
    checkpoint=dict(
        by_epoch=False, interval=val_interval, save_best="teacher/coco/AP", rule="greater"
    ),
    logger=dict(interval=50),
)
log_processor = dict(by_epoch=False)
randomness = dict(seed=0, diff_rank_seed=True)
