"""Shared test helpers: the official reference outputs and a tiny architecture."""
import os
import os.path as osp

import pytest
import torch

from mmsgformer.testing.reference import load_reference

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
REFERENCE_FILE = osp.join(REPO, 'tests', 'data', 'sgformer_reference.pth')
"""Made by ``tools/model_converters/make_reference.py`` with the official code (in the repo)."""
SHARED_FIXTURE = os.environ.get(
    'MMSGFORMER_FIXTURE',
    osp.join(REPO, '..', 'shared', 'fixtures', 'sgformer_tiny_reference.pth'))
"""An older reference made on another machine (outside the repo; an extra check if present)."""

DETECTION_DEMO_CONFIG = osp.join(REPO, 'configs', 'demo', 'maskrcnn_sgformer_tiny_shapes.py')


def tiny_detection_config(data_root, imports=('mmsgformer',), extra: str = '') -> str:
    """Text of a config inheriting the detection demo (absolute ``_base_``) that trains and
    evaluates on a generated shapes dataset at ``data_root``, batch 2, no workers; ``extra``
    lines are appended and merge into the demo's values. Our configs are pure-Python and a
    text config cannot inherit one, so the demo is first written out in full (as a text config)
    to ``data_root/demo_config.py``."""
    from mmengine.config import Config
    base = osp.join(str(data_root), 'demo_config.py')
    Config.fromfile(DETECTION_DEMO_CONFIG).dump(base)
    return (
        f"_base_ = ['{base}']\n"
        f"custom_imports = dict(imports={list(imports)!r}, allow_failed_imports=False)\n"
        f"data_root = '{data_root}/'\n"
        "train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,\n"
        "                        dataset=dict(data_root=data_root))\n"
        "val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,\n"
        "                      dataset=dict(data_root=data_root))\n"
        "test_dataloader = val_dataloader\n"
        "val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')\n"
        "test_evaluator = val_evaluator\n" + extra)


def _cpu_half_matmul() -> bool:
    try:
        torch.ones(1, 1, 1, dtype=torch.half) @ torch.ones(1, 1, 1, dtype=torch.half)
        return True
    except RuntimeError:
        return False


requires_cpu_half = pytest.mark.skipif(
    not _cpu_half_matmul(), reason=f'torch {torch.__version__} has no float16 matmul on the CPU '
                                   f'(torch 2.1; on the GPU it has)')
"""For float16 tests on the CPU (``make test-torch21`` runs some tests under torch 2.1)."""

# A small architecture for fast tests, every block kind included.
TINY_ARCH = dict(embed_dims=[32, 64, 128, 256], num_heads=[2, 2, 4, 8], depths=[2, 2, 2, 1],
                 mlp_ratios=[4, 4, 4, 4])


@pytest.fixture(scope='session')
def reference():
    """The official implementation's weights (official layout), inputs, stage outputs and
    logits in float32 (see :func:`mmsgformer.testing.reference.load_reference`)."""
    return load_reference(REFERENCE_FILE, torch.float32)


@pytest.fixture(scope='session')
def reference64():
    """The same weights and images with the official model run in float64."""
    return load_reference(REFERENCE_FILE, torch.float64)


@pytest.fixture(scope='session')
def shared_reference():
    """The reference of ``../shared/fixtures`` (float32, made elsewhere); skipped when absent."""
    if not osp.isfile(SHARED_FIXTURE):
        pytest.skip(f'no shared reference at {SHARED_FIXTURE} (set MMSGFORMER_FIXTURE)')
    return torch.load(SHARED_FIXTURE, weights_only=True)


@pytest.fixture(scope='session')
def reference_arch(reference):
    arch = reference['arch']
    return {k: arch[k] for k in ('embed_dims', 'num_heads', 'depths', 'mlp_ratios', 'sr_ratios')}
