"""Checkpoints of short real training runs load through every stock OpenMMLab entry point.

What a user of mmdet, mmseg or mmpretrain does, each in a fresh process that imports only the
stock API (never our ``tools/``): the stock ``tools/train.py`` (also with ``--resume``) and
``tools/test.py`` that ``mim train/test PACKAGE`` run, ``init_detector``/``inference_detector``,
``DetInferencer``, MMEngine's ``load_checkpoint``, mmseg's ``init_model``/``inference_model`` and
``MMSegInferencer``, mmpretrain's ``ImageClassificationInferencer`` and ``get_model``. Each run
trains one task for two iterations on generated data (one run per task, shared by the module),
then every entry point reads the checkpoint it wrote. The configs' ``custom_imports`` import
``mmsgformer``, which registers the checkpoint allow-list with torch (README "Checkpoints").
"""

import importlib.util
import os
import os.path as osp
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import REPO, STOCK_MMSEG_PARSES_OUR_CONFIGS

from mmsgformer.synthetic_data import generate_ade_shapes, generate_coco_shapes
from mmsgformer.utils import load_checkpoint_file

DET_CONFIG = osp.join(REPO, 'configs', 'demo', 'mask-rcnn_sgformer-tiny_fpn_shapes.py')
SEG_CONFIG = osp.join(REPO, 'configs', 'demo', 'upernet_sgformer-tiny_shapes.py')

CLS_CONFIG = osp.join(REPO, 'configs', 'sgformer', 'sgformer-s_16xb64_in1k.py')
PACKAGE_OF = {'det': 'mmdet', 'seg': 'mmseg', 'cls': 'mmpretrain'}
TASKS = [
    pytest.param(task, marks=STOCK_MMSEG_PARSES_OUR_CONFIGS) if task == 'seg' else task
    for task in PACKAGE_OF
]

# Small loaders without worker processes; a checkpoint after two iterations.
LOADERS = [
    f'{split}_dataloader.{key}'
    for split in ('train', 'val', 'test')
    for key in ('batch_size=2', 'num_workers=0', 'persistent_workers=False')
]
OPTIONS = {
    'det': LOADERS,
    'seg': LOADERS,
    # SG-Former-S as configured, on 64x64 crops (the backbone takes any size).
    'cls': LOADERS
    + [
        'train_dataloader.dataset.pipeline.1.scale=64',
        'test_dataloader.dataset.pipeline.1.scale=64',
        'test_dataloader.dataset.pipeline.2.crop_size=64',
        'val_dataloader.dataset.pipeline.1.scale=64',
        'val_dataloader.dataset.pipeline.2.crop_size=64',
    ],
}
SCHEDULE = {
    'det': ['train_cfg.max_epochs=1', 'default_hooks.checkpoint.interval=1'],
    'seg': [
        'train_cfg.max_iters=2',
        'train_cfg.val_interval=100',
        'default_hooks.checkpoint.interval=2',
    ],
    # the cosine phase starts at epoch 20: here at 0, to end with the one epoch
    'cls': [
        'train_cfg.max_epochs=1',
        'default_hooks.checkpoint.interval=1',
        'param_scheduler.1.begin=0',
    ],
}
CHECKPOINT = {'det': 'epoch_1.pth', 'seg': 'iter_2.pth', 'cls': 'epoch_1.pth'}
# How each package's train.py resumes from a given checkpoint: (arguments, config options);
# mmseg's --resume is a flag that resumes from load_from.
RESUME = {
    'det': lambda ckpt: (['--resume', ckpt], []),
    'seg': lambda ckpt: (['--resume'], [f'load_from={ckpt}']),
    'cls': lambda ckpt: (['--resume', ckpt], []),
}


def stock_tool(package: str, name: str) -> str:
    """``<package>/.mim/tools/<name>.py`` of the installed package: what ``mim`` runs."""
    root = osp.dirname(importlib.util.find_spec(package).origin)
    path = osp.join(root, '.mim', 'tools', f'{name}.py')
    assert osp.isfile(path), f'{package} ships no {name}.py at {path}'
    return path


def run(args, cwd, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    env.pop('PYTHONPATH', None)
    result = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    return result, result.stdout + result.stderr


def write_imagenet(root, num_per_split=4):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ('train', 'val'):
        os.makedirs(osp.join(root, split))
        lines = []
        for i in range(num_per_split):
            name = f'{split}_{i}.JPEG'
            Image.fromarray((rng.random((72, 64, 3)) * 255).astype(np.uint8)).save(
                osp.join(root, split, name)
            )
            lines.append(f'{name} {i % 3}\n')
        os.makedirs(osp.join(root, 'meta'), exist_ok=True)
        with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
            f.writelines(lines)
    return osp.join(root, 'val', 'val_0.JPEG')


class Workspace:
    """A folder as a user has it: generated data under ``data/``, a config, a training run."""

    def __init__(self, task, path):
        self.task, self.path = task, str(path)
        if task == 'det':
            generate_coco_shapes(osp.join(self.path, 'data', 'coco_shapes'), num_train=4, num_val=2)
            self.config = DET_CONFIG
            self.image = osp.join(self.path, 'data', 'coco_shapes', 'val', '000000.png')
        elif task == 'seg':
            generate_ade_shapes(osp.join(self.path, 'data', 'ade_shapes'), num_train=4, num_val=2)
            self.config = SEG_CONFIG
            self.image = osp.join(
                self.path, 'data', 'ade_shapes', 'images', 'validation', 'shapes_val_00000.jpg'
            )
        else:
            self.image = write_imagenet(osp.join(self.path, 'data', 'imagenet'))
            self.config = CLS_CONFIG

    def train(self, work_dir, args=(), options=()):
        """The package's stock train.py (what ``mim train PACKAGE`` runs) in this folder."""
        return run(
            [
                stock_tool(PACKAGE_OF[self.task], 'train'),
                self.config,
                '--work-dir',
                work_dir,
                *args,
                '--cfg-options',
                *OPTIONS[self.task],
                *SCHEDULE[self.task],
                *options,
            ],
            self.path,
        )


@pytest.fixture(scope='module')
def trained(request, tmp_path_factory):
    """One short training run per task (``request.param``) with the stock train.py: its
    workspace and checkpoint."""
    space = Workspace(request.param, tmp_path_factory.mktemp(request.param))
    work_dir = osp.join(space.path, 'work')
    result, output = space.train(work_dir)
    assert result.returncode == 0, output[-4000:]
    space.checkpoint = osp.join(work_dir, CHECKPOINT[space.task])
    assert osp.isfile(space.checkpoint), os.listdir(work_dir)
    return space


def backbone_checksum(state_dict, prefix=''):
    """Sum of |x| over a backbone's floating-point tensors (float64), to recognise its weights."""
    return sum(
        float(v.double().abs().sum())
        for k, v in sorted(state_dict.items())
        if k.startswith(prefix) and v.is_floating_point()
    )


@pytest.mark.parametrize('trained', TASKS, indirect=True, scope='module')
def test_stock_test_tool(trained):
    """``mim test PACKAGE CONFIG --checkpoint CKPT`` = the package's tools/test.py."""
    result, output = run(
        [
            stock_tool(PACKAGE_OF[trained.task], 'test'),
            trained.config,
            trained.checkpoint,
            '--work-dir',
            osp.join(trained.path, 'test'),
            '--cfg-options',
            *OPTIONS[trained.task],
        ],
        trained.path,
    )
    assert result.returncode == 0, output[-4000:]
    metric = {'det': 'coco/bbox_mAP:', 'seg': 'mIoU:', 'cls': 'accuracy/top1:'}[trained.task]
    assert metric in output, output[-3000:]
    assert f'Load checkpoint from {trained.checkpoint}' in output


@pytest.mark.parametrize('trained', TASKS, indirect=True, scope='module')
def test_stock_train_resume(trained):
    """``mim train PACKAGE CONFIG --resume``: the run restores the checkpoint's weights,
    optimizer, schedulers and message hub (MMEngine logs the restored position only after all
    of them loaded); with the same schedule there is nothing left to train."""
    args, options = RESUME[trained.task](trained.checkpoint)
    result, output = trained.train(osp.join(trained.path, 'resumed'), args, options)
    assert result.returncode == 0, output[-4000:]
    position = {'det': 'epoch: 1, iter: 2', 'seg': 'epoch: 0, iter: 2', 'cls': 'epoch: 1, iter: 2'}[
        trained.task
    ]
    assert f'resumed {position}' in output, output[-3000:]


# What a user writes, each in a fresh interpreter; prints the model's backbone checksum.
API_SCRIPTS = {
    'det': {
        'init_detector': """
            from mmdet.apis import inference_detector, init_detector
            model = init_detector(CONFIG, CHECKPOINT, device='cpu')
            assert len(inference_detector(model, IMAGE).pred_instances) >= 0
        """,
        'DetInferencer': """
            from mmdet.apis import DetInferencer
            inferencer = DetInferencer(model=CONFIG, weights=CHECKPOINT, device='cpu')
            assert 'predictions' in inferencer(IMAGE, return_vis=False, no_save_pred=True)
            model = inferencer.model
        """,
        'mmengine.load_checkpoint': """
            from mmengine.config import Config
            from mmengine.registry import MODELS, init_default_scope
            from mmengine.runner import load_checkpoint
            cfg = Config.fromfile(CONFIG)
            init_default_scope(cfg.default_scope)
            model = MODELS.build(cfg.model)
            load_checkpoint(model, CHECKPOINT, map_location='cpu', strict=True)
        """,
    },
    'seg': {
        'init_model': """
            from mmseg.apis import inference_model, init_model
            model = init_model(CONFIG, CHECKPOINT, device='cpu')
            assert inference_model(model, IMAGE).pred_sem_seg.data.shape[-2:] == (64, 64)
        """,
        'MMSegInferencer': """
            from mmseg.apis import MMSegInferencer
            inferencer = MMSegInferencer(model=CONFIG, weights=CHECKPOINT, device='cpu')
            assert 'predictions' in inferencer(IMAGE, return_vis=False)
            model = inferencer.model
        """,
    },
    'cls': {
        'ImageClassificationInferencer': """
            from mmpretrain import ImageClassificationInferencer
            inferencer = ImageClassificationInferencer(CONFIG, pretrained=CHECKPOINT,
                                                       device='cpu')
            assert 'pred_label' in inferencer(IMAGE)[0]
            model = inferencer.model
        """,
        'get_model': """
            from mmpretrain import get_model
            model = get_model(CONFIG, pretrained=CHECKPOINT, device='cpu')
        """,
    },
}
API_CASES = [
    pytest.param(task, name, id=f'{task}-{name}', marks=STOCK_MMSEG_PARSES_OUR_CONFIGS)
    if task == 'seg'
    else pytest.param(task, name, id=f'{task}-{name}')
    for task, scripts in API_SCRIPTS.items()
    for name in scripts
]


@pytest.mark.parametrize(
    'trained,api',
    API_CASES,
    indirect=['trained'],
    scope='module',
)
def test_stock_api(trained, api):
    body = textwrap.dedent(API_SCRIPTS[trained.task][api])
    assert 'mmsgformer' not in body and 'tools' not in body  # the stock API only
    script = (
        f'CONFIG, CHECKPOINT, IMAGE = {trained.config!r}, {trained.checkpoint!r}, '
        f'{trained.image!r}\n{body}'
        'print("CHECKSUM", sum(float(v.double().abs().sum()) for k, v in '
        'sorted(model.backbone.state_dict().items()) if v.is_floating_point()))\n'
    )
    result, output = run(['-c', script], trained.path)
    assert result.returncode == 0, output[-4000:]
    checksum = re.search(r'CHECKSUM (\S+)', result.stdout)  # progress bars may precede it
    assert checksum, output[-3000:]
    expected = backbone_checksum(
        load_checkpoint_file(trained.checkpoint)['state_dict'], 'backbone.'
    )
    assert float(checksum[1]) == pytest.approx(expected, rel=1e-9)  # the trained weights
