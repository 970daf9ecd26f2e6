"""tools/train.py trains the segmentation demo config for a few iterations on a tiny generated
ade_shapes dataset, and tools/test.py evaluates the checkpoint: per-class IoU table + mIoU,
coloured predictions (--show-dir) and multi-scale + flip TTA (--tta)."""
import glob
import os
import re
import os.path as osp
import subprocess
import sys

import pytest

from mmsgformer.datasets import generate_ade_shapes

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = 'configs/demo/upernet_sgformer_tiny_shapes.py'
CLASSES = ('background', 'circle', 'square', 'triangle', 'cross')


def _run(args, cwd):
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    proc = subprocess.run([sys.executable] + args, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
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
        data_opts += [f'{split}_dataloader.dataset.data_root={data_root}',
                      f'{split}_dataloader.num_workers=0',
                      f'{split}_dataloader.persistent_workers=False']
    out = _run([
        osp.join(REPO, 'tools', 'train.py'), osp.join(REPO, CONFIG), '--work-dir', work_dir,
        '--cfg-options', 'train_cfg.max_iters=3', 'train_cfg.val_interval=100',
        'train_dataloader.batch_size=2', 'default_hooks.checkpoint.interval=3',
        'default_hooks.logger.interval=1', 'default_hooks.visualization.interval=1',
        *data_opts
    ], cwd=str(tmp))
    assert 'Iter(train) [3/3]' in out, out[-3000:]
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    assert osp.isfile(ckpt)
    return dict(tmp=tmp, ckpt=ckpt, data_opts=data_opts)


def _check_metrics(out):
    # IoUMetric's per-class table, then the tool's summary
    for name in CLASSES:
        assert name in out
    assert re.search(r'\|\s*Class\s*\|\s*IoU\s*\|\s*Acc\s*\|', out), out[-3000:]
    assert 'mIoU:' in out, out[-3000:]
    miou = float(out.split('mIoU:')[-1].split()[0])
    assert 0.0 <= miou <= 100.0


def test_train_then_test_with_show_dir(trained):
    tmp = trained['tmp']
    show_dir = str(tmp / 'show')
    out = _run([
        osp.join(REPO, 'tools', 'test.py'), osp.join(REPO, CONFIG), trained['ckpt'],
        '--work-dir', str(tmp / 'test'), '--show-dir', show_dir,
        '--cfg-options', 'default_hooks.visualization.interval=1', *trained['data_opts']
    ], cwd=str(tmp))
    _check_metrics(out)
    pictures = glob.glob(osp.join(show_dir, '**', '*.png'), recursive=True)
    assert len(pictures) == 3, pictures


def test_test_tta(trained):
    tmp = trained['tmp']
    out = _run([
        osp.join(REPO, 'tools', 'test.py'), osp.join(REPO, CONFIG), trained['ckpt'],
        '--work-dir', str(tmp / 'test_tta'), '--tta', '--cfg-options', *trained['data_opts']
    ], cwd=str(tmp))
    _check_metrics(out)
