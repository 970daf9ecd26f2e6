"""Every segmentation config builds and runs one forward in loss and predict mode.

The backbone's ``init_cfg`` is disabled (no checkpoint is needed) and SyncBN is reverted to BN,
as tools/train.py does in a single non-distributed process. Inputs are small random images;
predict mode runs whole and slide inference, on an odd image size too.
"""

import os.path as osp

import pytest
import torch
from conftest import ABSENT, REPO, changes_from_upstream
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData

ADE_CONFIGS = [
    'configs/upernet/upernet_sgformer-s_8xb2-160k_ade20k-512x512.py',
    'configs/upernet/upernet_sgformer-m_8xb2-160k_ade20k-512x512.py',
    'configs/upernet/upernet_sgformer-b_8xb2-160k_ade20k-512x512.py',
]
DEMO_CONFIG = 'configs/demo/upernet_sgformer-tiny_shapes.py'
ALL_CONFIGS = ADE_CONFIGS + [DEMO_CONFIG]


def _load(path, pretrained=False):
    cfg = Config.fromfile(osp.join(REPO, path))
    if not pretrained:
        cfg.model.backbone.init_cfg = None
    return cfg


def _build(cfg):
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    from mmseg.registry import MODELS

    import mmsgformer  # noqa: F401  (the configs' custom_imports)

    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    return model


def _batch(num_classes, shape, n=2, seed=0):
    from mmseg.structures import SegDataSample

    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    h, w = shape
    for _ in range(n):
        inputs.append(torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8))
        sample = SegDataSample()
        seg = torch.randint(0, num_classes, (1, h, w), generator=g)
        seg[:, :2] = 255  # some ignored pixels
        sample.gt_sem_seg = PixelData(data=seg)
        sample.set_metainfo(
            dict(
                img_shape=(h, w),
                ori_shape=(h, w),
                pad_shape=(h, w),
                scale_factor=(1.0, 1.0),
                flip=False,
                flip_direction=None,
            )
        )
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('path', ALL_CONFIGS)
def test_config_structure(path):
    cfg = _load(path)
    assert cfg.default_scope == 'mmseg'
    assert 'mmsgformer' in cfg.custom_imports['imports']
    model = cfg.model
    assert model.backbone.type == 'mmsgformer.SGFormer'
    assert model.decode_head.type == 'UPerHead'
    assert model.auxiliary_head.type == 'FCNHead'
    # the heads read the backbone's channels
    arch = model.backbone.arch
    dims = (
        {'s': [64, 128, 256, 512], 'm': [64, 128, 256, 512], 'b': [96, 192, 384, 768]}[arch]
        if isinstance(arch, str)
        else arch['embed_dims']
    )
    assert list(model.decode_head.in_channels) == list(dims)
    assert model.auxiliary_head.in_channels == dims[model.auxiliary_head.in_index]
    # AdamW without decay on norms and the position embedding
    optim = cfg.optim_wrapper
    assert optim.optimizer.type == 'AdamW'
    assert optim.paramwise_cfg.norm_decay_mult == 0.0
    assert optim.paramwise_cfg.custom_keys['pos_embed']['decay_mult'] == 0.0
    assert [s['type'] for s in cfg.param_scheduler] == ['LinearLR', 'PolyLR']
    assert cfg.tta_model.type == 'SegTTAModel'
    assert cfg.tta_pipeline[-1]['type'] == 'TestTimeAug'


def test_demo_uses_plain_bn():
    cfg = _load(DEMO_CONFIG)
    assert cfg.model.decode_head.norm_cfg.type == 'BN'
    assert cfg.model.auxiliary_head.norm_cfg.type == 'BN'
    assert cfg.model.backbone.init_cfg is None
    classes = cfg.train_dataloader.dataset.metainfo['classes']
    assert cfg.model.decode_head.num_classes == len(classes)
    assert cfg.train_dataloader.dataset.reduce_zero_label


# (loss-mode input, predict-mode input, slide crop, slide stride) per config. The ADE models
# have 150-class heads with 512 channels, so they get the smallest inputs that still exercise
# everything: non-square training input, odd predict size, several overlapping slide windows.
ADE_SIZES = ((32, 48), [(77, 101)], (48, 64), (29, 37))
DEMO_SIZES = ((64, 64), [(64, 64), (77, 101)], (64, 64), (43, 43))
# Paper sizes of UperNet + SG-Former (millions of parameters, auxiliary head included, as
# mmseg counts its Swin UperNet models); we measure S 52.3, M 68.5, B 109.6.
PAPER_PARAMS = {'s': 53, 'm': 68, 'b': 109}


@pytest.mark.parametrize('path', ALL_CONFIGS)
def test_forward_loss_and_predict(path):
    torch.manual_seed(0)
    train_shape, test_shapes, crop, stride = DEMO_SIZES if path == DEMO_CONFIG else ADE_SIZES
    cfg = _load(path)
    # train-time padding to the crop size would make the ADE models run at 512x512
    cfg.model.data_preprocessor.size = train_shape
    model = _build(cfg)
    num_classes = cfg.model.decode_head.num_classes
    arch = cfg.model.backbone.arch
    if isinstance(arch, str):
        params = sum(p.numel() for p in model.parameters()) / 1e6
        assert abs(params - PAPER_PARAMS[arch]) < 1.5, (arch, params)

    model.train()
    data = model.data_preprocessor(_batch(num_classes, train_shape), training=True)
    losses = model(**data, mode='loss')
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)

    model.eval()
    for mode in ('whole', 'slide'):
        model.test_cfg = Config(
            dict(mode='whole')
            if mode == 'whole'
            else dict(mode='slide', crop_size=crop, stride=stride)
        )
        for shape in test_shapes:
            with torch.no_grad():
                data = model.data_preprocessor(_batch(num_classes, shape, n=1), training=False)
                out = model(**data, mode='predict')
            assert len(out) == 1
            pred = out[0].pred_sem_seg.data
            assert pred.shape == (1, *shape), (mode, shape, pred.shape)
            assert pred.min() >= 0 and pred.max() < num_classes
            assert out[0].seg_logits.data.shape == (num_classes, *shape)


SWIN_UPERNET_ADE = (
    'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'
)
SWIN_ONLY_BACKBONE_KEYS = (
    'act_cfg.type',
    'attn_drop_rate',
    'depths',
    'drop_rate',
    'embed_dims',
    'mlp_ratio',
    'norm_cfg.requires_grad',
    'norm_cfg.type',
    'num_heads',
    'patch_norm',
    'patch_size',
    'pretrain_img_size',
    'qk_scale',
    'qkv_bias',
    'strides',
    'use_abs_pos_embed',
    'window_size',
)


@pytest.mark.parametrize('path', ADE_CONFIGS)
def test_ade_recipe_is_mmseg_swin_upernet_with_sgformer(path, tmp_path):
    """The ADE20K configs are mmseg's Swin-T UperNet 160k (AdamW lr 6e-5, weight decay 0.01,
    1500 warm-up iterations then poly decay, batch 16, 512x512 crops, its heads, data, TTA and
    runtime) with SG-Former in Swin's place and nothing else changed: a value of mmseg's recipe
    spelled out wrong in our configs fails here."""
    cfg = _load(path, pretrained=True)
    arch = cfg.model.backbone.arch
    dims = {'s': [64, 128, 256, 512], 'm': [64, 128, 256, 512], 'b': [96, 192, 384, 768]}[arch]
    checkpoint = f'checkpoints/sgformer_{arch}_in1k_converted.pth'
    changes = changes_from_upstream(SWIN_UPERNET_ADE, osp.join(REPO, path), tmp_path)
    # where a size's value happens to be Swin-T's, it is no change
    assert changes.pop('model.decode_head.in_channels', [96, 192, 384, 768]) == dims
    assert changes.pop('model.auxiliary_head.in_channels', 384) == dims[2]
    assert changes == {
        # the backbone
        'model.backbone.type': 'mmsgformer.SGFormer',
        'model.backbone.arch': arch,
        'model.backbone.in_channels': 3,
        'model.backbone.init_cfg.checkpoint': checkpoint,
        **{f'model.backbone.{key}': ABSENT for key in SWIN_ONLY_BACKBONE_KEYS},
        # no weight decay on norm layers (by type) nor on the position embedding
        'optim_wrapper.paramwise_cfg.norm_decay_mult': 0.0,
        'optim_wrapper.paramwise_cfg.custom_keys.pos_embed.decay_mult': 0.0,
        'optim_wrapper.paramwise_cfg.custom_keys.absolute_pos_embed.decay_mult': ABSENT,
        'optim_wrapper.paramwise_cfg.custom_keys.relative_position_bias_table.decay_mult': ABSENT,
        'optim_wrapper.paramwise_cfg.custom_keys.norm.decay_mult': ABSENT,
        # --auto-scale-lr from batch 16
        'auto_scale_lr.enable': False,
        'auto_scale_lr.base_batch_size': 16,
        # mmsgformer's classes, atomic checkpoints, the divergence guard
        'custom_imports.imports': ['mmsgformer'],
        'custom_imports.allow_failed_imports': False,
        'default_hooks.checkpoint.type': 'mmsgformer.AtomicCheckpointHook',
        'custom_hooks[0].type': 'mmsgformer.DivergenceGuardHook',
    }


def test_demo_keeps_the_hooks():
    cfg = _load(DEMO_CONFIG)
    checkpoint_hook = {k: v for k, v in cfg.default_hooks.checkpoint.items() if k != '_scope_'}
    assert checkpoint_hook == dict(
        type='mmsgformer.AtomicCheckpointHook',
        by_epoch=False,
        interval=4500,
        max_keep_ckpts=1,
        save_last=True,
    )
    assert cfg.custom_hooks == [dict(type='mmsgformer.DivergenceGuardHook')]
    assert cfg.model.data_preprocessor.size == cfg.data_preprocessor.size == (64, 64)
