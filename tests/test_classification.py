"""The ImageNet classifier configs: official logits through converter + config, evaluation
pipeline."""

import os.path as osp
import subprocess
import sys

import pytest
import torch
from conftest import ABSENT, REPO, changes_from_upstream, convert_official_checkpoint
from mmengine.config import Config
from mmengine.runner import load_checkpoint


def build_classifier(config, **backbone):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    cfg = Config.fromfile(osp.join(REPO, config))
    init_default_scope(cfg.default_scope)
    cfg.model.backbone.update(backbone)
    return cfg, MODELS.build(cfg.model)


@pytest.mark.parametrize('size', ['s', 'm', 'b'])
def test_configs_build_with_official_sizes(size):
    cfg, model = build_classifier(f'configs/sgformer/sgformer-{size}_16xb64_in1k.py')
    params = {'s': 22_545_981, 'm': 38_689_316, 'b': 77_950_293}[size]
    assert sum(p.numel() for p in model.parameters()) == params
    test_pipeline = cfg.test_dataloader.dataset.pipeline
    resize = next(t for t in test_pipeline if t['type'] == 'ResizeEdge')
    assert (resize['scale'], resize['edge'], resize['interpolation']) == (256, 'short', 'bicubic')
    assert next(t for t in test_pipeline if t['type'] == 'CenterCrop')['crop_size'] == 224


# Per size: drop path rate and head width (the backbone's last stage).
IN1K_SIZES = {'s': (0.1, 512), 'm': (0.2, 512), 'b': (0.4, 768)}
SWIN_IN1K = 'mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py'


@pytest.mark.parametrize('size', sorted(IN1K_SIZES))
def test_in1k_recipe_is_mmpretrain_swin_with_sgformer(size, tmp_path):
    """The ImageNet configs are mmpretrain's Swin-T recipe (AdamW lr 1e-3 for batch 1024, weight
    decay 0.05, 20 warm-up epochs then cosine to 300, Mixup/CutMix, RandAugment, random erasing,
    label smoothing, its pipelines and runtime) with SG-Former in Swin's place: a value of
    mmpretrain's recipe spelled out wrong in our configs fails here."""
    drop_path, channels = IN1K_SIZES[size]
    changes = changes_from_upstream(
        SWIN_IN1K, osp.join(REPO, f'configs/sgformer/sgformer-{size}_16xb64_in1k.py'), tmp_path
    )
    # where a size's value happens to be Swin-T's, it is no change
    assert changes.pop('model.backbone.drop_path_rate', 0.2) == drop_path
    assert changes.pop('model.head.in_channels', 768) == channels
    assert changes == {
        # the backbone, its last stage into the pooled head
        'model.backbone.type': 'mmsgformer.SGFormer',
        'model.backbone.arch': size,
        'model.backbone.out_indices': (3,),
        'model.backbone.img_size': ABSENT,
        # no weight decay on SG-Former's position embedding either; no gradient clipping
        'optim_wrapper.paramwise_cfg.custom_keys..pos_embed.decay_mult': 0.0,
        'optim_wrapper.clip_grad.max_norm': ABSENT,
        # mmsgformer's classes, atomic checkpoints, the divergence guard
        'custom_imports.imports': ['mmsgformer'],
        'custom_imports.allow_failed_imports': False,
        'default_hooks.checkpoint.type': 'mmsgformer.AtomicCheckpointHook',
        'custom_hooks[0].type': 'mmsgformer.DivergenceGuardHook',
    }


def test_converted_checkpoint_gives_official_logits(tmp_path, reference, reference_arch):
    from mmsgformer.utils import register_safe_globals

    register_safe_globals()
    dst = convert_official_checkpoint(reference['state_dict'], tmp_path)
    _, model = build_classifier('configs/sgformer/sgformer-s_16xb64_in1k.py', arch=reference_arch)
    model.head.fc = torch.nn.Linear(
        reference_arch['embed_dims'][-1], reference['arch']['num_classes']
    )
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
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope
    from PIL import Image

    from mmsgformer.utils import register_safe_globals

    register_safe_globals()

    ckpt = convert_official_checkpoint(reference['state_dict'], tmp_path)
    root = tmp_path / 'imagenet'
    (root / 'val').mkdir(parents=True)
    (root / 'meta').mkdir()
    rng = np.random.default_rng(0)
    names = []
    for i, size in enumerate([(300, 260), (240, 320), (256, 256), (333, 301)]):
        image = (rng.random((*size, 3)) * 255).astype(np.uint8)
        Image.fromarray(image).save(root / 'val' / f'img{i}.JPEG')
        names.append(f'img{i}.JPEG')
    (tmp_path / 'configs').symlink_to(osp.join(REPO, 'mmsgformer', 'configs'))
    config = tmp_path / 'tiny_in1k.py'
    config.write_text(
        TINY_CLASSIFIER.format(
            arch=reference_arch, root=str(root), channels=reference_arch['embed_dims'][-1]
        )
    )

    cfg = Config.fromfile(str(config))
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS

    model = MODELS.build(dict(cfg.model, data_preprocessor=cfg.data_preprocessor)).eval()
    load_checkpoint(model, str(ckpt), map_location='cpu')
    pipeline = Compose(cfg.test_dataloader.dataset.pipeline)
    labels = []
    for name in names:
        data = model.data_preprocessor(
            {k: [v] for k, v in pipeline(dict(img_path=str(root / 'val' / name))).items()}
        )
        with torch.no_grad():
            labels.append(int(model(data['inputs'], mode='tensor').argmax()))
    (root / 'meta' / 'val.txt').write_text(
        ''.join(f'{n} {label}\n' for n, label in zip(names, labels))
    )

    result = subprocess.run(
        [
            sys.executable,
            osp.join(REPO, 'tools/test.py'),
            str(config),
            str(ckpt),
            '--work-dir',
            str(tmp_path / 'work'),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'accuracy/top1: 100.0' in result.stdout + result.stderr
