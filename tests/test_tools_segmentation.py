"""tools/train.py trains the segmentation demo config for a few iterations on a tiny generated
ade_shapes dataset, and tools/test.py evaluates the checkpoint: per-class IoU table + mIoU,
coloured predictions (--show-dir) and multi-scale + flip TTA (--tta)."""

import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
from conftest import REPO

from mmsgformer.synthetic_data import generate_ade_shapes

CONFIG = 'configs/demo/upernet_sgformer-tiny_shapes.py'
CLASSES = ('background', 'circle', 'square', 'triangle', 'cross')


def _run(args, cwd):
    # cwd on the path: configs there may import modules written next to them
    env = dict(
        os.environ,
        PYTHONUNBUFFERED='1',
        PYTHONPATH=os.pathsep.join([str(cwd), os.environ.get('PYTHONPATH', '')]),
    )
    proc = subprocess.run(
        [sys.executable] + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    return out


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('seg_tools')
    data_root = str(tmp / 'ade_shapes')
    assert generate_ade_shapes(data_root, num_train=8, num_val=3, img_size=64, seed=1) == 11
    work_dir = str(tmp / 'work')
    data_opts = []
    for split in ('train', 'val', 'test'):
        data_opts += [
            f'{split}_dataloader.dataset.data_root={data_root}',
            f'{split}_dataloader.num_workers=0',
            f'{split}_dataloader.persistent_workers=False',
        ]
    out = _run(
        [
            osp.join(REPO, 'tools', 'train.py'),
            osp.join(REPO, CONFIG),
            '--work-dir',
            work_dir,
            '--cfg-options',
            'train_cfg.max_iters=3',
            'train_cfg.val_interval=100',
            'train_dataloader.batch_size=2',
            'default_hooks.checkpoint.interval=3',
            'default_hooks.logger.interval=1',
            'default_hooks.visualization.interval=1',
            *data_opts,
        ],
        cwd=str(tmp),
    )
    assert 'Iter(train) [3/3]' in out, out[-3000:]
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    assert osp.isfile(ckpt)
    return dict(tmp=tmp, ckpt=ckpt, data_opts=data_opts, data_root=data_root)


TTA_PROBE = """
import json
import os.path as osp

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class TTAProbe(Hook):
    \"\"\"Records the size and flip of every augmented view the test loop feeds the model.\"\"\"

    def __init__(self, out_file):
        self.out_file, self.views = out_file, []

    def before_test_iter(self, runner, batch_idx, data_batch=None):
        # a TTA batch holds one list of images per augmentation
        for inputs, samples in zip(data_batch['inputs'], data_batch['data_samples']):
            for image, sample in zip(inputs, samples):
                self.views.append([osp.basename(sample.img_path), list(image.shape[-2:]),
                                   bool(sample.flip)])

    def after_test(self, runner):
        with open(self.out_file, 'w') as f:
            json.dump(self.views, f)

"""


def _printed_miou(out):
    """The mIoU line of tools/test.py's summary, after IoUMetric's per-class table."""
    for name in CLASSES:
        assert name in out
    assert re.search(r'\|\s*Class\s*\|\s*IoU\s*\|\s*Acc\s*\|', out), out[-3000:]
    assert 'mIoU:' in out, out[-3000:]
    return float(out.split('mIoU:')[-1].split()[0])


def _miou_of_pngs(pred_dir, data_root):
    """mIoU (%) of the --out PNG masks against the validation labels, computed here as
    IoUMetric defines it: per-class IoU over all images, mean over classes that occur; label
    PNG value 0 is ignored, values 1..5 are classes 0..4 (reduce_zero_label), and the
    predictions are written in the same convention (train id + 1)."""
    import numpy as np
    from PIL import Image

    label_dir = osp.join(data_root, 'annotations', 'validation')
    labels = sorted(os.listdir(label_dir))
    preds = sorted(os.listdir(pred_dir))
    assert preds == labels  # one PNG per validation image, same names
    inter = np.zeros(len(CLASSES))
    union = np.zeros(len(CLASSES))
    for name in labels:
        label = np.asarray(Image.open(osp.join(label_dir, name))).astype(int) - 1
        pred = np.asarray(Image.open(osp.join(pred_dir, name))).astype(int) - 1
        assert pred.shape == label.shape == (64, 64)  # the original image size
        assert 0 <= pred.min() and pred.max() < len(CLASSES)
        valid = label >= 0
        for c in range(len(CLASSES)):
            p, t = (pred == c) & valid, (label == c) & valid
            inter[c] += (p & t).sum()
            union[c] += (p | t).sum()
    with np.errstate(invalid='ignore'):
        return float(np.round(np.nanmean(inter / union) * 100, 2))


def test_train_then_test_with_show_dir_and_out(trained):
    tmp = trained['tmp']
    show_dir = str(tmp / 'show')
    pred_dir = str(tmp / 'pred')
    out = _run(
        [
            osp.join(REPO, 'tools', 'test.py'),
            osp.join(REPO, CONFIG),
            trained['ckpt'],
            '--work-dir',
            str(tmp / 'test'),
            '--show-dir',
            show_dir,
            '--out',
            pred_dir,
            '--cfg-options',
            'default_hooks.visualization.interval=1',
            *trained['data_opts'],
        ],
        cwd=str(tmp),
    )
    assert _printed_miou(out) == pytest.approx(
        _miou_of_pngs(pred_dir, trained['data_root']), abs=0.011
    )
    pictures = glob.glob(osp.join(show_dir, '**', '*.png'), recursive=True)
    assert len(pictures) == 3, pictures


def test_test_tta_runs_every_scale_and_flip(trained):
    """--tta feeds the model each validation image at the config's 3 scales, each plain and
    flipped, and the printed mIoU is that of the merged predictions written by --out."""
    tmp = trained['tmp']
    (tmp / 'tta_probe.py').write_text(TTA_PROBE)
    views_file = tmp / 'views.json'
    # a text config cannot inherit our pure-Python ones: inherit the demo written out in full
    from mmengine.config import Config

    base = tmp / 'seg_demo_config.py'
    Config.fromfile(osp.join(REPO, CONFIG)).dump(str(base))
    config = tmp / 'tta_probe_config.py'
    config.write_text(
        f'_base_ = [{str(base)!r}]\n'
        "custom_imports = dict(imports=['mmsgformer', 'tta_probe'], allow_failed_imports=False)\n"
        f"custom_hooks = [dict(type='TTAProbe', out_file={str(views_file)!r})]\n"
    )
    pred_dir = str(tmp / 'pred_tta')
    out = _run(
        [
            osp.join(REPO, 'tools', 'test.py'),
            str(config),
            trained['ckpt'],
            '--work-dir',
            str(tmp / 'test_tta'),
            '--tta',
            '--out',
            pred_dir,
            '--cfg-options',
            *trained['data_opts'],
        ],
        cwd=str(tmp),
    )
    views = json.loads(views_file.read_text())
    images = sorted({name for name, _, _ in views})
    assert len(images) == 3 and len(views) == 3 * 6, views
    for name in images:  # 64x64 images at ratios 0.75, 1, 1.25, each without and with flip
        assert sorted((hw[0], flip) for n, hw, flip in views if n == name) == [
            (48, False),
            (48, True),
            (64, False),
            (64, True),
            (80, False),
            (80, True),
        ]
    assert _printed_miou(out) == pytest.approx(
        _miou_of_pngs(pred_dir, trained['data_root']), abs=0.011
    )
