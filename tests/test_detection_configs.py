"""Every detection config builds its model and runs a loss and a predict forward (CPU).

The backbone's ``init_cfg`` is disabled, so nothing is loaded or downloaded. The COCO
configs' Mask R-CNN sizes are checked (S ~41M as in the paper; M see EXPECTED_PARAMS_M).
"""
import glob
import os.path as osp

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'maskrcnn_*.py'))) + sorted(
    glob.glob(osp.join(REPO, 'configs', 'demo', 'maskrcnn_*.py')))

# Mask R-CNN parameter counts (millions) and allowed deviation. S: the paper's 41M. M: the
# paper prints 51M, but the released SG-Former-M backbone alone has 38.2M parameters (38.7M
# with its ImageNet head) and FPN + RPN + RoI heads add 20.2M (exactly as for S: 42.2M - 22.0M),
# so Mask R-CNN M is 58.3M; we pin that measured value (see docs/detection.md).
EXPECTED_PARAMS_M = {'s': (41.0, 1.5), 'm': (58.3, 0.3)}


def _rel(path):
    return osp.relpath(path, REPO)


def build_detector(config):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    from mmdet.registry import MODELS
    return cfg, MODELS.build(cfg.model)


def test_configs_found():
    names = {osp.basename(c) for c in CONFIGS}
    for size in 'smb':
        assert f'maskrcnn_sgformer_{size}_coco.py' in names
        assert f'maskrcnn_sgformer_{size}_coco_3x.py' in names
    assert 'maskrcnn_sgformer_tiny_shapes.py' in names


@pytest.mark.parametrize('config', CONFIGS, ids=_rel)
def test_detector_forward(config):
    from mmdet.testing import demo_mm_inputs

    torch.manual_seed(0)
    cfg, model = build_detector(config)
    assert cfg.custom_imports['imports'] == ['mmsgformer']
    assert cfg.model.backbone.type in ('mmsgformer.SGFormer', 'SGFormer')
    num_classes = cfg.model.roi_head.bbox_head.num_classes

    packed = demo_mm_inputs(
        batch_size=1, image_shapes=[(3, 64, 96)], num_items=[2],
        num_classes=num_classes, with_mask=True)

    model.train()
    data = model.data_preprocessor(packed, True)
    losses = model(**data, mode='loss')
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(x.sum() for x in v)
                for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    for key in ('loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'):
        assert key in losses

    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(packed, False)
        preds = model(**data, mode='predict')
    assert len(preds) == 1
    inst = preds[0].pred_instances
    assert inst.bboxes.shape[-1] == 4
    assert len(inst.masks) == len(inst.bboxes)
    if len(inst):
        assert tuple(inst.masks.shape[-2:]) == tuple(packed['data_samples'][0].ori_shape)


@pytest.mark.parametrize('size', sorted(EXPECTED_PARAMS_M))
def test_model_sizes(size):
    _, model = build_detector(
        osp.join(REPO, 'configs', f'maskrcnn_sgformer_{size}_coco.py'))
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    expected, tol = EXPECTED_PARAMS_M[size]
    assert abs(params_m - expected) < tol, params_m


def test_3x_configs_differ_only_in_schedule_and_pipeline():
    from mmengine.config import Config
    for size in 'smb':
        c1 = Config.fromfile(osp.join(REPO, 'configs', f'maskrcnn_sgformer_{size}_coco.py'))
        c3 = Config.fromfile(osp.join(REPO, 'configs', f'maskrcnn_sgformer_{size}_coco_3x.py'))
        assert c1.train_cfg.max_epochs == 12 and c3.train_cfg.max_epochs == 36
        assert c3.model == c1.model
        assert c3.optim_wrapper == c1.optim_wrapper
        assert c3.param_scheduler[-1]['milestones'] == [27, 33]
        types = [t['type'] for t in c3.train_dataloader.dataset.pipeline]
        assert 'RandomChoice' in types
        assert c1.optim_wrapper.optimizer.type == 'AdamW'
        assert c1.optim_wrapper.paramwise_cfg.norm_decay_mult == 0.
        assert c1.optim_wrapper.paramwise_cfg.custom_keys['pos_embed']['decay_mult'] == 0.
        assert c1.auto_scale_lr.base_batch_size == 16


def test_downstream_config_inherits_ours(tmp_path):
    """A user's config outside the repo inheriting ours (relative and absolute _base_)."""
    from mmengine.config import Config
    ours = osp.join(REPO, 'configs', 'maskrcnn_sgformer_s_coco.py')
    user_dir = tmp_path / 'my_project' / 'configs'
    user_dir.mkdir(parents=True)
    (user_dir / 'rel.py').write_text(
        f"_base_ = ['{osp.relpath(ours, user_dir)}']\n"
        "custom_imports = dict(imports=['mmsgformer'], allow_failed_imports=False)\n"
        "model = dict(backbone=dict(init_cfg=None),\n"
        "             roi_head=dict(bbox_head=dict(num_classes=5),\n"
        "                           mask_head=dict(num_classes=5)))\n")
    (user_dir / 'abs.py').write_text(
        f"_base_ = ['{ours}']\n"
        "custom_imports = dict(imports=['mmsgformer'], allow_failed_imports=False)\n"
        "model = dict(backbone=dict(init_cfg=None))\n"
        "train_cfg = dict(max_epochs=24)\n")
    _, model = build_detector(str(user_dir / 'rel.py'))
    assert model.roi_head.bbox_head.num_classes == 5
    assert type(model.backbone).__name__ == 'SGFormer'
    cfg = Config.fromfile(str(user_dir / 'abs.py'))
    assert cfg.train_cfg.max_epochs == 24
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
