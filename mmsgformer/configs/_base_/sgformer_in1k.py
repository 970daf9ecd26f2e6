# ImageNet-1k classification with SG-Former (mmpretrain ImageClassifier).
# Evaluation follows the official code: resize the short side to 256 (bicubic, PIL), centre crop
# 224, ImageNet mean/std. Training follows the official recipe (DeiT/Swin style AdamW, 300 epochs,
# batch 1024) through mmpretrain's Swin bases.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmsgformer'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(type='mmsgformer.SGFormer', arch='s', out_indices=(3, ), drop_path_rate=0.1),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        init_cfg=None,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        cal_acc=False),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02, bias=0.),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ],
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]),
)

# No weight decay on norms and the position embedding.
optim_wrapper = dict(
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys={'.pos_embed': dict(decay_mult=0.0)}))
