# ImageNet-1k classifier with an SG-Former-S backbone: mmpretrain's Swin-T ImageClassifier
# (global average pooling, linear head with label smoothing, Mixup/CutMix, truncated-normal
# init) with the Swin backbone replaced and the head input set to SG-Former-S's last stage.
# Only the model (and the import that registers SG-Former).
_base_ = 'mmpretrain::_base_/models/swin_transformer/tiny_224.py'

custom_imports = dict(imports=['mmsgformer'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True, type='mmsgformer.SGFormer', arch='s', out_indices=(3,), drop_path_rate=0.1
    ),
    head=dict(in_channels=512),
)
