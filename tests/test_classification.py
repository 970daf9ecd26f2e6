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


# Per size: drop path rate and head width (the backbone's last stage).
IN1K_SIZES = {'s': (0.1, 512), 'm': (0.2, 512), 'b': (0.4, 768)}


@pytest.mark.parametrize('size', sorted(IN1K_SIZES))
def test_in1k_recipe_pinned(size):
    """The values checked against the former mmpretrain-based text configs
    (imagenet_bs64_swin_224, imagenet_bs1024_adamw_swin, default_runtime + our recipe) when they
    became pure-Python."""
    cfg = Config.fromfile(osp.join(REPO, f'configs/sgformer_{size}_in1k.py'))
    drop_path, channels = IN1K_SIZES[size]
    assert (cfg.model.backbone.arch, cfg.model.backbone.drop_path_rate) == (size, drop_path)
    assert cfg.model.head.in_channels == channels
    assert cfg.model.train_cfg.augments == [dict(type='Mixup', alpha=0.8),
                                            dict(type='CutMix', alpha=1.0)]
    assert cfg.optim_wrapper.optimizer == dict(
        type='AdamW', lr=1e-3, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999))
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys['.pos_embed'] == dict(decay_mult=0.0)
    assert cfg.param_scheduler == [
        dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=20,
             convert_to_iter_based=True),
        dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=20)]
    assert cfg.train_cfg == dict(by_epoch=True, max_epochs=300, val_interval=1)
    assert cfg.train_dataloader.batch_size == 64 and cfg.auto_scale_lr.base_batch_size == 1024
    assert [t['type'] for t in cfg.train_dataloader.dataset.pipeline] == [
        'LoadImageFromFile', 'RandomResizedCrop', 'RandomFlip', 'RandAugment', 'RandomErasing',
        'PackInputs']
    assert cfg.default_hooks.checkpoint == dict(type='mmsgformer.AtomicCheckpointHook', interval=1)
    assert cfg.custom_hooks == [dict(type='mmsgformer.DivergenceGuardHook')]


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
from mmengine.config import read_base

with read_base():  # ./configs is a link to the repository's configs
    from .configs.sgformer_s_in1k import *

model.backbone.arch = {arch!r}
model.head.update(num_classes=10, in_channels={channels})
data_preprocessor.num_classes = 10
test_dataloader.update(batch_size=2, num_workers=0, persistent_workers=False,
                       dataset=dict(data_root={root!r}))
"""


def test_tools_test_reports_imagenet_top1(tmp_path, reference, reference_arch):
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
    (tmp_path / 'configs').symlink_to(osp.join(REPO, 'configs'))
    config = tmp_path / 'tiny_in1k.py'
    config.write_text(TINY_CLASSIFIER.format(arch=reference_arch, root=str(root),
                                             channels=reference_arch['embed_dims'][-1]))

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
