"""Every segmentation config builds and runs one forward in loss and predict mode.

The backbone's ``init_cfg`` is disabled (no checkpoint is needed) and SyncBN is reverted to BN,
as tools/train.py does in a single non-distributed process. Inputs are small random images;
predict mode runs whole and slide inference, on an odd image size too.
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

ADE_CONFIGS = [
    'configs/upernet_sgformer_s_ade20k.py',
    'configs/upernet_sgformer_m_ade20k.py',
    'configs/upernet_sgformer_b_ade20k.py',
]
DEMO_CONFIG = 'configs/demo/upernet_sgformer_tiny_shapes.py'
ALL_CONFIGS = ADE_CONFIGS + [DEMO_CONFIG]


def _load(path, pretrained=False):
    cfg = Config.fromfile(osp.join(REPO, path))
    if not pretrained:
        cfg.model.backbone.init_cfg = None
    return cfg


def _build(cfg):
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    import mmsgformer  # noqa: F401  (the configs' custom_imports)
    from mmseg.registry import MODELS
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
        sample.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                                 scale_factor=(1.0, 1.0), flip=False, flip_direction=None))
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
    dims = {'s': [64, 128, 256, 512], 'm': [64, 128, 256, 512],
            'b': [96, 192, 384, 768]}[arch] if isinstance(arch, str) else arch['embed_dims']
    assert list(model.decode_head.in_channels) == list(dims)
    assert model.auxiliary_head.in_channels == dims[model.auxiliary_head.in_index]
    # AdamW without decay on norms and the position embedding
    optim = cfg.optim_wrapper
    assert optim.optimizer.type == 'AdamW'
    assert optim.paramwise_cfg.norm_decay_mult == 0.
    assert optim.paramwise_cfg.custom_keys['pos_embed']['decay_mult'] == 0.
    assert [s['type'] for s in cfg.param_scheduler] == ['LinearLR', 'PolyLR']
    assert cfg.tta_model.type == 'SegTTAModel'
    assert cfg.tta_pipeline[-1]['type'] == 'TestTimeAug'


@pytest.mark.parametrize('path', ADE_CONFIGS)
def test_ade_recipe(path):
    cfg = _load(path, pretrained=True)
    assert cfg.train_dataloader.batch_size == 2  # x 8 GPUs = 16
    assert cfg.train_dataloader.dataset.type == 'ADE20KDataset'
    assert cfg.train_dataloader.dataset.data_root == 'data/ade/ADEChallengeData2016'
    assert cfg.crop_size == (512, 512)
    assert cfg.train_cfg.max_iters == 160000
    assert cfg.optim_wrapper.optimizer.lr == 6e-5
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.01
    warmup, poly = cfg.param_scheduler
    assert warmup.end == 1500 and poly.begin == 1500 and poly.end == 160000
    assert cfg.model.decode_head.num_classes == 150
    arch = cfg.model.backbone.arch
    assert cfg.model.backbone.init_cfg == dict(
        type='Pretrained', checkpoint=f'checkpoints/sgformer_{arch}_in1k_converted.pth')


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
        model.test_cfg = Config(dict(mode='whole') if mode == 'whole' else
                                dict(mode='slide', crop_size=crop, stride=stride))
        for shape in test_shapes:
            with torch.no_grad():
                data = model.data_preprocessor(_batch(num_classes, shape, n=1), training=False)
                out = model(**data, mode='predict')
            assert len(out) == 1
            pred = out[0].pred_sem_seg.data
            assert pred.shape == (1, *shape), (mode, shape, pred.shape)
            assert pred.min() >= 0 and pred.max() < num_classes
            assert out[0].seg_logits.data.shape == (num_classes, *shape)


@pytest.mark.parametrize('path', ADE_CONFIGS)
def test_ade_recipe_pinned(path):
    """The values checked against the former mmseg-based text configs (upernet_swin, ade20k,
    default_runtime, schedule_160k + our recipe) when they became pure-Python."""
    cfg = _load(path, pretrained=True)
    assert cfg.model.backbone.drop_path_rate == 0.3
    assert cfg.optim_wrapper == dict(
        type='OptimWrapper',
        optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
        paramwise_cfg=dict(norm_decay_mult=0., custom_keys={'pos_embed': dict(decay_mult=0.)}))
    assert cfg.param_scheduler == [
        dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
        dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False)]
    assert cfg.train_cfg == dict(type='IterBasedTrainLoop', max_iters=160000, val_interval=16000)
    assert cfg.train_dataloader.dataset.pipeline == [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
        dict(type='RandomCrop', crop_size=(512, 512), cat_max_ratio=0.75),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PhotoMetricDistortion'),
        dict(type='PackSegInputs')]
    assert cfg.test_dataloader.dataset.pipeline[1] == dict(
        type='Resize', scale=(2048, 512), keep_ratio=True)
    resizes = cfg.tta_pipeline[1]['transforms'][0]
    assert [t['scale_factor'] for t in resizes] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert cfg.model.decode_head.norm_cfg == dict(type='SyncBN', requires_grad=True)
    assert cfg.model.data_preprocessor.size == (512, 512)
    # the hooks every task base sets (mmsgformer/engine)
    assert cfg.default_hooks.checkpoint == dict(
        type='mmsgformer.AtomicCheckpointHook', by_epoch=False, interval=16000)
    assert cfg.custom_hooks == [dict(type='mmsgformer.DivergenceGuardHook')]


def test_demo_keeps_the_hooks():
    cfg = _load(DEMO_CONFIG)
    assert cfg.default_hooks.checkpoint == dict(
        type='mmsgformer.AtomicCheckpointHook', by_epoch=False, interval=4500,
        max_keep_ckpts=1, save_last=True)
    assert cfg.custom_hooks == [dict(type='mmsgformer.DivergenceGuardHook')]
    assert cfg.model.data_preprocessor.size == cfg.data_preprocessor.size == (64, 64)
