# The HRNet-W32 student with all of COCO train2017 labelled and COCO unlabeled2017 as the
# unlabelled pool: its people are the crops of a person detector's boxes (the images have
# no annotations).
#
# The box file is yours to make: run a person detector on unlabeled2017 and save its
# results in COCO's detection-results format (a list of {"image_id", "category_id": 1,
# "bbox": [x, y, w, h], "score"}), e.g. mmdet's tools/test.py with a CocoMetric
# outfile_prefix and image_info_unlabeled2017.json as the annotation file. Boxes below
# bbox_score_thr are dropped.
_base_ = ["posemum_hrnet-w32_coco-sshpe-1k-256x192.py"]

unlabelled_bbox_file = (
    "data/coco/person_detection_results/COCO_unlabeled2017_detections_person.json"
)
bbox_score_thr = 0.5  # [ours]

train_dataloader = dict(
    dataset=dict(
        datasets=[
            dict(
                type={{_base_.dataset_type}},
                data_root={{_base_.data_root}},
                data_mode={{_base_.data_mode}},
                ann_file="annotations/person_keypoints_train2017.json",
                data_prefix=dict(img="train2017/"),
                pipeline={{_base_.labelled_pipeline}},
            ),
            dict(
                type={{_base_.dataset_type}},
                data_root={{_base_.data_root}},
                data_mode={{_base_.data_mode}},
                ann_file="annotations/image_info_unlabeled2017.json",
                bbox_file=unlabelled_bbox_file,
                filter_cfg=dict(bbox_score_thr=bbox_score_thr),
                test_mode=True,  # mmpose reads a bbox_file in test mode only
                data_prefix=dict(img="unlabeled2017/"),
                pipeline={{_base_.unlabelled_pipeline}},
            ),
        ]
    )
)
