"""Shared test helpers: the official reference fixture and a tiny architecture."""
import os
import os.path as osp

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
FIXTURE = os.environ.get(
    'MMSGFORMER_FIXTURE',
    osp.join(REPO, '..', 'shared', 'fixtures', 'sgformer_tiny_reference.pth'))

DETECTION_DEMO_CONFIG = osp.join(REPO, 'configs', 'demo', 'maskrcnn_sgformer_tiny_shapes.py')


def tiny_detection_config(data_root, imports=('mmsgformer',), extra: str = '') -> str:
    """Text of a downstream config inheriting the detection demo (absolute ``_base_``) that
    trains and evaluates on a generated shapes dataset at ``data_root``, batch 2, no workers;
    ``extra`` lines are appended."""
    return (
        f"_base_ = ['{DETECTION_DEMO_CONFIG}']\n"
        f"custom_imports = dict(imports={list(imports)!r}, allow_failed_imports=False)\n"
        f"data_root = '{data_root}/'\n"
        "train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,\n"
        "                        dataset=dict(data_root=data_root))\n"
        "val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,\n"
        "                      dataset=dict(data_root=data_root))\n"
        "test_dataloader = val_dataloader\n"
        "val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')\n"
        "test_evaluator = val_evaluator\n" + extra)


# The fixture's architecture; small enough for fast tests, every block kind included.
TINY_ARCH = dict(embed_dims=[32, 64, 128, 256], num_heads=[2, 2, 4, 8], depths=[2, 2, 2, 1],
                 mlp_ratios=[4, 4, 4, 4])


@pytest.fixture(scope='session')
def reference():
    """The official implementation's weights, inputs and outputs (see shared/fixtures/README.md)."""
    if not osp.isfile(FIXTURE):
        if os.environ.get('CI'):
            pytest.fail(f'reference fixture missing at {FIXTURE}')
        pytest.skip(f'reference fixture not found at {FIXTURE} (set MMSGFORMER_FIXTURE)')
    return torch.load(FIXTURE, weights_only=True)


@pytest.fixture(scope='session')
def reference_arch(reference):
    arch = reference['arch']
    return {k: arch[k] for k in ('embed_dims', 'num_heads', 'depths', 'mlp_ratios', 'sr_ratios')}
