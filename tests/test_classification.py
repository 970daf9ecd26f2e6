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


TINY_CLASSIFIER = """
_base_ = {base!r}
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=[32, 64, 128, 256], num_heads=[2, 2, 4, 8],
                            depths=[2, 2, 2, 1], mlp_ratios=[4, 4, 4, 4], sr_ratios=[8, 4, 2, 1])),
    head=dict(num_classes=10, in_channels=256))
data_preprocessor = dict(num_classes=10)
test_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                       dataset=dict(data_root={root!r}))
"""


def test_tools_test_reports_imagenet_top1(tmp_path, reference):
    """tools/test.py on an ImageNet-layout folder: labels chosen as the model's own predictions
    (computed here through the config's pipeline) must give top-1 = 100."""
    import numpy as np
    from PIL import Image
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope
    from mmsgformer.utils import register_safe_globals
    register_safe_globals()

    src, ckpt = tmp_path / 'official.pth', tmp_path / 'converted.pth'
    torch.save(official_wrappers(reference['state_dict'])['timm'], src)
    subprocess.run([sys.executable, osp.join(REPO, 'tools/model_converters/sgformer2mm.py'),
                    str(src), str(ckpt)], check=True, capture_output=True)
    root = tmp_path / 'imagenet'
    (root / 'val').mkdir(parents=True)
    (root / 'meta').mkdir()
    rng = np.random.default_rng(0)
    names = []
    for i, size in enumerate([(300, 260), (240, 320), (256, 256), (333, 301)]):
        image = (rng.random((*size, 3)) * 255).astype(np.uint8)
        Image.fromarray(image).save(root / 'val' / f'img{i}.JPEG')
        names.append(f'img{i}.JPEG')
    config = tmp_path / 'tiny_in1k.py'
    config.write_text(TINY_CLASSIFIER.format(base=osp.join(REPO, 'configs/sgformer_s_in1k.py'),
                                             root=str(root)))

    cfg = Config.fromfile(str(config))
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    model = MODELS.build(dict(cfg.model, data_preprocessor=cfg.data_preprocessor)).eval()
    load_checkpoint(model, str(ckpt), map_location='cpu')
    pipeline = Compose(cfg.test_dataloader.dataset.pipeline)
    labels = []
    for name in names:
        data = model.data_preprocessor(
            {k: [v] for k, v in pipeline(dict(img_path=str(root / 'val' / name))).items()})
        with torch.no_grad():
            labels.append(int(model(data['inputs'], mode='tensor').argmax()))
    (root / 'meta' / 'val.txt').write_text(
        ''.join(f'{n} {label}\n' for n, label in zip(names, labels)))

    result = subprocess.run([sys.executable, osp.join(REPO, 'tools/test.py'), str(config), str(ckpt),
                             '--work-dir', str(tmp_path / 'work')],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'accuracy/top1: 100.0' in result.stdout + result.stderr
