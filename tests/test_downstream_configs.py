"""Text configs of a project outside the repository that inherit ours the way mmdet's, mmseg's
and mmpretrain's documentation teaches: by relative path, by absolute path and as
``mmsgformer::<folder>/<file>``; they change classes and data and build. Our model bases
combine with mmdet's and mmseg's own dataset, schedule and runtime bases (Cityscapes), and a
config of the wrong form or an unknown ``mmsgformer::`` path reaches the user of our tools as
one message without a traceback.

(A text child of the detection demo trains and tests through ``tools/train.py`` and
``tools/test.py`` in ``tests/test_tools_detection.py``; from an installed wheel, with ``mim`` and
mmseg's stock tools, in ``tests/test_package.py``.)
"""

import os.path as osp
import sys

import pytest
import torch
from conftest import REPO, run_command
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmsgformer  # noqa: F401  (makes `mmsgformer::` resolve)
from mmsgformer.utils.config import ConfigError, read_config


def _base(form: str, path: str, folder) -> str:
    """How a config in ``folder`` names our text config ``configs/<path>`` in ``_base_``."""
    if form == 'package':
        return f'mmsgformer::{path}'
    absolute = osp.join(REPO, 'configs', path)
    return absolute if form == 'absolute' else osp.relpath(absolute, str(folder))


def _write(folder, name: str, text: str) -> str:
    path = osp.join(str(folder), name)
    with open(path, 'w') as f:
        f.write(text)
    return path


def _build(cfg: Config):
    """The model and the training dataset (not loaded: ``lazy_init``; inside a dataset wrapper
    such as ``RepeatDataset``, the wrapped one) of a config, from the registries of its
    ``default_scope``."""
    init_default_scope(cfg.default_scope)
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS'])
    model = registry.MODELS.build(cfg.model)
    dataset = cfg.train_dataloader.dataset
    while 'dataset' in dataset:
        dataset = dataset.dataset
    return model, registry.DATASETS.build(dict(dataset, lazy_init=True))


def _build_child(folder, bases, text: str):
    """The config (``_base_ = bases`` and ``text``), model and training dataset (as
    :func:`_build`) of a user's text config in ``folder``; its backbone is ours."""
    cfg = read_config(_write(folder, 'child.py', f'_base_ = {list(bases)!r}\n' + text))
    model, dataset = _build(cfg)
    assert type(model.backbone).__name__ == 'SGFormer'
    return cfg, model, dataset


FORMS = ['relative', 'absolute', 'package']


DETECTION_CHILD = """
metainfo = dict(classes=('car', 'bus', 'truck'))
data_root = 'data/mydata/'
model = dict(roi_head=dict(bbox_head=dict(num_classes=3), mask_head=dict(num_classes=3)))
train_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo,
                                     ann_file='annotations/train.json'))
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
"""


@pytest.mark.parametrize('form', FORMS)
def test_detection_child_changes_classes_and_data(form, tmp_path):
    base = _base(form, 'mask_rcnn/mask-rcnn_sgformer-s_fpn_1x_coco.py', tmp_path)
    cfg, model, dataset = _build_child(tmp_path, [base], DETECTION_CHILD)
    assert model.backbone.embed_dims == [64, 128, 256, 512]  # SG-Former-S
    assert model.roi_head.bbox_head.num_classes == model.roi_head.mask_head.num_classes == 3
    assert dataset.metainfo['classes'] == ('car', 'bus', 'truck')
    assert dataset.ann_file == osp.join('data/mydata/', 'annotations/train.json')
    # what the child does not change is ours: the recipe and the hooks
    assert cfg.optim_wrapper.optimizer.type == 'AdamW' and cfg.optim_wrapper.optimizer.lr == 1e-4
    assert cfg.default_hooks.checkpoint.type == 'mmsgformer.AtomicCheckpointHook'
    assert cfg.val_evaluator.ann_file == 'data/mydata/annotations/val.json'


SEGMENTATION_CHILD = """
model = dict(decode_head=dict(num_classes=5), auxiliary_head=dict(num_classes=5))
train_dataloader = dict(dataset=dict(type='BaseSegDataset', data_root='data/mydata',
    metainfo=dict(classes=('a', 'b', 'c', 'd', 'e'), palette=[[0, 0, 0]] * 5)))
"""


@pytest.mark.parametrize('form', FORMS)
def test_segmentation_child_changes_classes_and_data(form, tmp_path):
    base = _base(form, 'upernet/upernet_sgformer-s_8xb2-160k_ade20k-512x512.py', tmp_path)
    _, model, dataset = _build_child(tmp_path, [base], SEGMENTATION_CHILD)
    assert model.decode_head.num_classes == model.auxiliary_head.num_classes == 5
    assert type(dataset).__name__ == 'BaseSegDataset'
    assert dataset.metainfo['classes'] == ('a', 'b', 'c', 'd', 'e')
    assert dataset.data_root == 'data/mydata'


CLASSIFICATION_CHILD = """
model = dict(head=dict(num_classes=10))
train_dataloader = dict(dataset=dict(_delete_=True, type='CustomDataset',
    data_root='data/mydata/train', pipeline={{_base_.train_pipeline}}))
"""


@pytest.mark.parametrize('form', FORMS)
def test_classification_child_changes_classes_and_data(form, tmp_path):
    base = _base(form, 'sgformer/sgformer-s_16xb64_in1k.py', tmp_path)
    _, model, dataset = _build_child(tmp_path, [base], CLASSIFICATION_CHILD)
    assert model.head.num_classes == 10
    assert type(dataset).__name__ == 'CustomDataset' and dataset.data_root == 'data/mydata/train'


MMDET_CITYSCAPES_1X = ['datasets/cityscapes_instance', 'schedules/schedule_1x', 'default_runtime']
MMSEG_CITYSCAPES_80K = ['datasets/cityscapes', 'schedules/schedule_80k', 'default_runtime']


def test_mask_rcnn_on_mmdet_cityscapes_base(tmp_path):
    """Our model base with mmdet's Cityscapes instance data, 1x schedule and runtime."""
    _, model, dataset = _build_child(
        tmp_path,
        ['mmsgformer::_base_/models/mask-rcnn_sgformer_fpn.py']
        + [f'mmdet::_base_/{base}.py' for base in MMDET_CITYSCAPES_1X],
        'model = dict(roi_head=dict(bbox_head=dict(num_classes=8), mask_head=dict(num_classes=8)))',
    )
    assert type(dataset).__name__ == 'CityscapesDataset'
    assert len(dataset.metainfo['classes']) == model.roi_head.bbox_head.num_classes == 8
    model.eval()
    with torch.no_grad():  # the backbone into the FPN at a size of Cityscapes' aspect
        features = model.neck(model.backbone(torch.rand(1, 3, 96, 192)))
    assert [f.shape[-2:] for f in features] == [(24, 48), (12, 24), (6, 12), (3, 6), (2, 3)]


def test_upernet_on_mmseg_cityscapes_base(tmp_path):
    """Our model base with mmseg's Cityscapes data, 80k schedule and runtime."""
    _, model, dataset = _build_child(
        tmp_path,
        ['mmsgformer::_base_/models/upernet_sgformer.py']
        + [f'mmseg::_base_/{base}.py' for base in MMSEG_CITYSCAPES_80K],
        """
crop_size = (512, 1024)
model = dict(data_preprocessor=dict(size=crop_size),
             decode_head=dict(num_classes=19), auxiliary_head=dict(num_classes=19))
""",
    )
    assert type(dataset).__name__ == 'CityscapesDataset'
    assert len(dataset.metainfo['classes']) == model.decode_head.num_classes == 19
    model.eval()
    with torch.no_grad():
        logits = model(torch.rand(1, 3, 64, 128), mode='tensor')
    assert logits.shape == (1, 19, 16, 32)


def test_model_bases_replace_the_backbone_and_so_can_users(tmp_path):
    """Our model bases replace mmdet's ResNet-50 with ``_delete_=True`` (no ResNet key is left
    in SG-Former's arguments), and a user's ``_delete_=True`` replaces SG-Former the same way."""
    ours = read_config(osp.join(REPO, 'configs', '_base_', 'models', 'mask-rcnn_sgformer_fpn.py'))
    assert not {'depth', 'num_stages', 'style', 'norm_cfg'} & set(ours.model.backbone)
    path = _write(
        tmp_path,
        'mask-rcnn_r50.py',
        "_base_ = ['mmsgformer::_base_/models/mask-rcnn_sgformer_fpn.py']\n"
        "model = dict(backbone=dict(_delete_=True, type='ResNet', depth=50),\n"
        '             neck=dict(in_channels=[256, 512, 1024, 2048]))\n',
    )
    assert read_config(path).model.backbone == dict(type='ResNet', depth=50)


# --- bad input -------------------------------------------------------------------------------

PURE_PYTHON = osp.join(REPO, 'mmsgformer', 'configs', 'maskrcnn_sgformer_s_coco.py')
BAD_CONFIGS = {
    'text inherits pure-Python': (
        f"_base_ = ['{PURE_PYTHON}']\n",
        [
            'cannot inherit a pure-Python config',
            'mmsgformer::mask_rcnn/mask-rcnn_sgformer-s_fpn_1x_coco.py',
        ],
    ),
    'pure-Python inherits text': (
        'from mmengine.config import read_base\nwith read_base():\n    from .text_child import *\n',
        ['cannot inherit a pure-Python config', 'the same form'],
    ),
    'unknown mmsgformer:: file': (
        "_base_ = ['mmsgformer::mask_rcnn/mask-rcnn_sgformer-x_fpn_1x_coco.py']\n",
        ['names no config of mmsgformer', 'mask-rcnn_sgformer-s_fpn_1x_coco.py'],
    ),
    'unknown mmsgformer:: folder': (
        "_base_ = ['mmsgformer::maskrcnn/mask-rcnn_sgformer-s_fpn_1x_coco.py']\n",
        ['names no config of mmsgformer', 'mask_rcnn/'],
    ),
    'mmsgformer:: without a folder': (
        "_base_ = ['mmsgformer::mask-rcnn_sgformer-s_fpn_1x_coco.py']\n",
        ['needs a folder', 'mask_rcnn/'],
    ),
}


TEXT_DEMO = 'mmsgformer::demo/upernet_sgformer-tiny_shapes.py'


def _bad_config(folder, case: str) -> str:
    text, _ = BAD_CONFIGS[case]
    _write(
        folder, 'text_child.py', "_base_ = ['mmsgformer::demo/upernet_sgformer-tiny_shapes.py']\n"
    )
    return _write(folder, 'bad.py', text)


@pytest.mark.parametrize('case', sorted(BAD_CONFIGS))
def test_bad_config_gets_a_clear_error(case, tmp_path):
    with pytest.raises(ConfigError) as error:
        read_config(_bad_config(tmp_path, case))
    for expected in BAD_CONFIGS[case][1]:
        assert expected in str(error.value), (expected, str(error.value))


@pytest.mark.parametrize(
    'tool',
    [
        ['train.py'],
        ['test.py', 'checkpoint.pth'],
        ['deployment/export_onnx.py', '--out', 'model.onnx'],
        ['analysis_tools/get_flops.py'],
    ],
    ids=lambda tool: osp.splitext(osp.basename(tool[0]))[0],
)
def test_tools_report_a_bad_config_without_a_traceback(tool, tmp_path):
    config = _bad_config(tmp_path, 'text inherits pure-Python')
    (tmp_path / 'checkpoint.pth').write_bytes(b'')  # the config is what is wrong
    script, *rest = tool
    out = run_command(
        [sys.executable, osp.join(REPO, 'tools', script), config, *rest],
        cwd=tmp_path,
        returncode=None,
    )
    assert 'Traceback' not in out, out[-3000:]
    assert 'error: ' in out and 'mmsgformer::mask_rcnn/' in out, out
