# SSHPE's 10K protocol: the HRNet-W32 1K config with the first 10000 instances labelled.
_base_ = ["posemum_hrnet-w32_coco-sshpe-1k-256x192.py"]

labelled_instances = 10000
# inheritance replaces lists rather than merging them: both datasets again
train_dataloader = dict(
    dataset=dict(
        datasets=[
            dict(
                type={{_base_.dataset_type}},
                data_root={{_base_.data_root}},
                data_mode={{_base_.data_mode}},
                ann_file="annotations/person_keypoints_train2017.json",
                data_prefix=dict(img="train2017/"),
                indices=labelled_instances,
                pipeline={{_base_.labelled_pipeline}},
            ),
            {{_base_.unlabelled_dataset}},
        ]
    )
)
