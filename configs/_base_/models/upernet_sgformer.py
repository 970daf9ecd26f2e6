# UperNet with an SG-Former-S backbone: mmseg's Swin UperNet model (UPerHead + auxiliary
# FCNHead, SyncBN heads) with the Swin backbone replaced and the head inputs set to
# SG-Former's stage widths. Only the model (and the import that registers SG-Former), so
# that it combines with any dataset, schedule and runtime base, mmseg's own included; the
# heads keep mmseg's num_classes until a dataset config sets it. The backbone lines are those of
# mask-rcnn_sgformer_fpn.py on purpose: each model base replaces its library's backbone whole.
_base_ = 'mmseg::_base_/models/upernet_swin.py'

custom_imports = dict(imports=['mmsgformer'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmsgformer.SGFormer',
        arch='s',
        in_channels=3,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,
        # Converted ImageNet-1k weights (tools/model_converters/sgformer2mm.py, see
        # docs/segmentation.md); the size configs point it at their own arch.
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/sgformer_s_in1k_converted.pth'),
    ),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256),
)
