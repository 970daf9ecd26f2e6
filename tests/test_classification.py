"""The ImageNet classifier configs: official logits through converter + config, evaluation pipeline."""
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint

from conftest import REPO
from test_checkpoint import official_wrappers


def build_classifier(config, **backbone):
    from mmpretrain.registry import MODELS
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(osp.join(REPO, config))
    init_default_scope(cfg.default_scope)
    cfg.model.backbone.update(backbone)
    return cfg, MODELS.build(cfg.model)


@pytest.mark.parametrize('size', ['s', 'm', 'b'])
def test_configs_build_with_official_sizes(size):
    cfg, model = build_classifier(f'configs/sgformer_{size}_in1k.py')
    params = {'s': 22_545_981, 'm': 38_689_316, 'b': 77_950_293}[size]
    assert sum(p.numel() for p in model.parameters()) == params
    test_pipeline = cfg.test_dataloader.dataset.pipeline
    resize = next(t for t in test_pipeline if t['type'] == 'ResizeEdge')
    assert (resize['scale'], resize['edge'], resize['interpolation']) == (256, 'short', 'bicubic')
    assert next(t for t in test_pipeline if t['type'] == 'CenterCrop')['crop_size'] == 224


def test_converted_checkpoint_gives_official_logits(tmp_path, reference, reference_arch):
    from mmsgformer.utils import register_safe_globals
    register_safe_globals()
    src, dst = tmp_path / 'official.pth', tmp_path / 'converted.pth'
    torch.save(official_wrappers(reference['state_dict'])['timm'], src)
    subprocess.run([sys.executable, osp.join(REPO, 'tools/model_converters/sgformer2mm.py'),
                    str(src), str(dst)], check=True, capture_output=True)
    _, model = build_classifier('configs/sgformer_s_in1k.py', arch=reference_arch)
    model.head.fc = torch.nn.Linear(reference_arch['embed_dims'][-1], reference['arch']['num_classes'])
    load_checkpoint(model, str(dst), map_location='cpu', strict=True)
    model.eval()
    with torch.no_grad():
        logits = model(reference['inputs'], mode='tensor')
    torch.testing.assert_close(logits, reference['logits'], atol=1e-4, rtol=0)
