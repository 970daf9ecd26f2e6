# Mask R-CNN + FPN with an SG-Former-S backbone: mmdet's Mask R-CNN model with the ResNet-50
# replaced. Only the model (and the import that registers SG-Former), so that it combines with
# any dataset, schedule and runtime base, mmdet's own included.
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'

custom_imports = dict(imports=['mmsgformer'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmsgformer.SGFormer',
        arch='s',
        in_channels=3,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,
        frozen_stages=-1,
        norm_eval=False,
        with_cp=False,
        # Converted ImageNet-1k weights (tools/model_converters/sgformer2mm.py); the loader
        # raises FileNotFoundError if the file is missing, it never downloads.
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/sgformer_s_in1k_converted.pth'),
    ),
    neck=dict(in_channels=[64, 128, 256, 512]),
)
