"""tools/train.py, tools/test.py, --resume, tools/dist_train.sh (2 CPU processes, gloo) and
tools/demo/image_demo.py on a tiny generated shapes dataset.

Runs are a few iterations long, so the model is barely trained: tests keep every detection
(score threshold 0) so that CocoMetric always has results to score, and check the metrics exist,
not their values.
"""

import glob
import os.path as osp
import re
import shutil
import sys

import pytest
from conftest import REPO, checkout_env, run_command, tiny_detection_config

from mmsgformer.synthetic_data import generate_coco_shapes

TRAIN = [sys.executable, osp.join(REPO, 'tools', 'train.py')]
TEST = [sys.executable, osp.join(REPO, 'tools', 'test.py')]
NO_CUDA = {'CUDA_VISIBLE_DEVICES': ''}

# every detection is scored: a barely trained detector still gets metrics
KEEP_ALL = ['model.test_cfg.rcnn.score_thr=0.0']


def _metrics(out, *names):
    """The values tools/test.py printed for ``names`` (each must be there)."""
    summary = out.split('==== test metrics')[-1]
    values = {}
    for name in names:
        match = re.search(rf'^{re.escape(name)}: ([-\d.]+)$', summary, re.MULTILINE)
        assert match, f'{name} missing from:\n{out[-3000:]}'
        values[name] = float(match.group(1))
    return values


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """A tiny dataset and a downstream config (absolute _base_) pointing at it."""
    root = tmp_path_factory.mktemp('det_tools')
    data = root / 'shapes'
    generate_coco_shapes(str(data), num_train=8, num_val=4, seed=1)
    cfg = root / 'tiny_shapes.py'
    cfg.write_text(
        tiny_detection_config(
            data,
            extra='train_cfg = dict(max_epochs=1, val_interval=1)\n'
            'default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))\n'
            'log_processor = dict(window_size=1)\n',
        )
    )
    return root, cfg


def test_generator_is_deterministic(tmp_path):
    gen = osp.join(REPO, 'tools', 'dataset_generators', 'generate_coco_shapes.py')
    outs = []
    for name in ('a', 'b'):
        run_command(
            [sys.executable, gen, tmp_path / name, '--num-train', 3, '--num-val', 2, '--seed', 5],
            cwd=tmp_path,
        )
        outs.append(
            [
                (tmp_path / name / rel).read_bytes()
                for rel in (
                    'annotations/instances_train.json',
                    'annotations/instances_val.json',
                    'train/000002.png',
                    'val/000001.png',
                )
            ]
        )
    assert outs[0] == outs[1]
    from pycocotools.coco import COCO

    coco = COCO(str(tmp_path / 'a' / 'annotations' / 'instances_train.json'))
    assert len(coco.getImgIds()) == 3 and len(coco.getCatIds()) == 3
    ann = coco.loadAnns(coco.getAnnIds())[0]
    assert coco.annToMask(ann).sum() > 0


@pytest.fixture(scope='module')
def trained(tiny):
    """One epoch of training with --auto-scale-lr (batch 2 against the config's base 4)."""
    root, cfg = tiny
    work = root / 'work'
    out = run_command([*TRAIN, cfg, '--work-dir', work, '--auto-scale-lr'], cwd=root)
    assert (work / 'epoch_1.pth').is_file(), out[-3000:]
    shutil.copy(work / 'epoch_1.pth', root / 'trained.pth')  # the resume test removes it
    return root, cfg, work, out


def test_auto_scale_lr_scales_by_batch_ratio(trained):
    import torch

    _, _, work, out = trained
    assert 'Scaling the original LR by 0.5' in out, out[-3000:]
    ckpt = torch.load(work.parent / 'trained.pth', map_location='cpu', weights_only=False)
    # the schedulers' base lr: the config's 1.5e-3 times 2 / 4
    lrs = [g['initial_lr'] for g in ckpt['optimizer']['param_groups']]
    assert lrs == pytest.approx([0.75e-3] * len(lrs))


def test_train_test_resume_demo(trained):
    root, cfg, work, _ = trained
    ckpt = (work / 'last_checkpoint').read_text().strip()
    assert osp.isfile(ckpt)

    # test: the metrics block with both CocoMetric results, predictions dumped, pictures drawn
    pkl = root / 'preds.pkl'
    out = run_command(
        [*TEST, cfg, ckpt, '--work-dir', root / 'test_work', '--out', pkl]
        + ['--show-dir', root / 'show', '--cfg-options', *KEEP_ALL],
        cwd=root,
    )
    metrics = _metrics(out, 'coco/bbox_mAP', 'coco/segm_mAP')
    assert all(0 <= v <= 1 for v in metrics.values()), metrics
    assert pkl.is_file()
    assert len(glob.glob(str(root / 'show' / '**' / '*.png'), recursive=True)) == 4

    # resume: continue the same run to epoch 2 from the latest checkpoint
    out = run_command(
        [*TRAIN, cfg, '--work-dir', work, '--resume', '--cfg-options', 'train_cfg.max_epochs=2'],
        cwd=root,
    )
    assert 'resumed epoch: 1' in out.lower() or 'resumed from' in out.lower(), out[-3000:]
    assert (work / 'epoch_2.pth').is_file()
    assert 'Epoch(train) [1]' not in out  # epoch 1 was not trained again

    # inference demo picture: 2 validation images, ground truth beside prediction
    from PIL import Image

    pic = root / 'pred.png'
    demo = osp.join(REPO, 'tools', 'demo', 'image_demo.py')
    out = run_command(
        [sys.executable, demo, root / 'shapes' / 'val', cfg, work / 'epoch_2.pth']
        + ['--num-images', 2, '--out-file', pic, '--device', 'cpu', '--score-thr', 0.0],
        cwd=root,
    )
    assert '000000.png: ' in out and '000001.png: ' in out and '000002.png' not in out
    with Image.open(pic) as image:  # one row of 4 panels of 480 x 384 pixels (3x enlarged)
        width, height = image.size
        assert 4 * 480 <= width < 5 * 480 and 384 < height < 2 * 384, image.size


def test_amp_refused_on_cpu(tiny):
    root, cfg = tiny
    out = run_command(
        [*TRAIN, cfg, '--amp', '--work-dir', root / 'work_amp'],
        cwd=root,
        env=checkout_env(NO_CUDA),
        returncode=1,
    )
    assert '--amp needs a GPU' in out
    assert not (root / 'work_amp').exists() or not list((root / 'work_amp').glob('*.pth'))


def test_tta_mask_rcnn_refused_box_only_runs(trained):
    root, cfg, work, _ = trained
    test = [*TEST, cfg, root / 'trained.pth', '--work-dir', root / 'test_tta', '--tta']
    out = run_command(test, cwd=root, returncode=1)
    assert 'Mask R-CNN cannot be tested with TTA' in out and 'Traceback' not in out
    # the box-only variant the message suggests: horizontal-flip TTA, bbox metrics
    out = run_command(
        test
        + [
            '--cfg-options',
            'model.roi_head.mask_head=None',
            'model.roi_head.mask_roi_extractor=None',
            'test_evaluator.metric=bbox',
            *KEEP_ALL,
        ],
        cwd=root,
    )
    assert 'using flip TTA' in out
    assert 0 <= _metrics(out, 'coco/bbox_mAP')['coco/bbox_mAP'] <= 1
    assert 'coco/segm_mAP' not in out


def test_test_reads_the_checkpoint_once_and_predicts_as_mmengine(trained, monkeypatch):
    """engine.runner.test (what tools/test.py runs) reads the checkpoint once, and its
    predictions and metrics are those of MMEngine's Runner reading the file itself."""
    import mmengine
    import torch

    from mmsgformer.engine.runner import (
        TestOptions,
        add_prediction_dump,
        build_runner,
        prepare_config,
        test,
    )

    root, cfg, _, _ = trained
    ckpt = str(root / 'trained.pth')
    options = TestOptions(
        work_dir=str(root / 'test_once'),
        out=str(root / 'once.pkl'),
        cfg_options=dict(option.split('=') for option in KEEP_ALL),
    )
    options.cfg_options['model.test_cfg.rcnn.score_thr'] = 0.0
    loads = []
    torch_load = torch.load
    monkeypatch.setattr(torch, 'load', lambda *a, **k: loads.append(a[0]) or torch_load(*a, **k))
    metrics = test(str(cfg), ckpt, options)
    assert loads == [ckpt]

    reference = prepare_config(str(cfg), options, ['test_dataloader'])
    reference.load_from = ckpt
    reference.visualizer.name = 'mmengine_reads_the_file'  # (one visualizer per name)
    runner = build_runner(reference, str(cfg))
    add_prediction_dump(runner, 'det', str(root / 'mmengine.pkl'))
    assert runner.test() == metrics
    assert len(loads) == 2
    ours, theirs = mmengine.load(options.out), mmengine.load(str(root / 'mmengine.pkl'))
    assert len(ours) == len(theirs) == 4
    for a, b in zip(ours, theirs):
        assert len(a['pred_instances']['scores']) > 0
        for key in ('bboxes', 'scores', 'labels'):
            torch.testing.assert_close(a['pred_instances'][key], b['pred_instances'][key])


def test_dist_train_cpu_gloo(tiny):
    """tools/dist_train.sh with 2 processes on a CPU-only machine (gloo), both ranks finish."""
    root, cfg = tiny
    work = root / 'work_dist'
    out = run_command(
        ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), cfg, 2, '--work-dir', work],
        cwd=root,
        env=checkout_env({'PYTHON': sys.executable, 'PORT': '29533', **NO_CUDA}),
    )
    # torchrun exits 0 only when every rank did
    assert (work / 'epoch_1.pth').is_file(), out[-3000:]
    assert 'Distributed training: True' in out
    assert "'backend': 'gloo'" in out and 'CPUDistributedDataParallel' in out
    # 8 images / (2 processes x 2 images) = 2 iterations per epoch on each rank
    assert 'Epoch(train) [1][2/2]' in out


def test_cpu_process_group_is_destroyed_at_exit(tmp_path):
    """init_cpu_dist registers destroy_cpu_dist at exit: a gloo group left alive while the
    interpreter shuts down can SIGABRT the process after all work is done."""
    script = tmp_path / 'exit_hook.py'
    script.write_text(
        'import atexit, os, torch.distributed as dist\n'
        'from mmsgformer.engine import init_cpu_dist, destroy_cpu_dist\n'
        'def report():\n'  # registered first, so it runs after init_cpu_dist's hook
        "    open('destroyed' if not dist.is_initialized() else 'alive', 'w').close()\n"
        'atexit.register(report)\n'
        "os.environ.update(RANK='0', WORLD_SIZE='1', MASTER_ADDR='127.0.0.1',\n"
        "                  MASTER_PORT='29547')\n"
        "init_cpu_dist('pytorch')\n"
        "assert dist.is_initialized() and dist.get_backend() == 'gloo'\n"
    )
    run_command([sys.executable, script], cwd=tmp_path, env=checkout_env(NO_CUDA))
    assert (tmp_path / 'destroyed').is_file() and not (tmp_path / 'alive').exists()
    # calling it again (or without a group) is harmless
    run_command(
        [
            sys.executable,
            '-c',
            'from mmsgformer.engine import destroy_cpu_dist; '
            'destroy_cpu_dist(); destroy_cpu_dist()',
        ],
        cwd=tmp_path,
    )


def test_cpu_ddp_wrapper_reverts_syncbn(tmp_path):
    """Two gloo processes: our wrapper takes a SyncBN model (as in mmseg's configs) with the
    device_ids the Runner passes, and trains it on the CPU."""
    script = tmp_path / 'ddp_syncbn.py'
    script.write_text(
        'import os, torch, torch.nn as nn\n'
        'from mmsgformer.engine import init_cpu_dist, CPUDistributedDataParallel\n'
        "init_cpu_dist('pytorch')\n"
        'model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.SyncBatchNorm(4), nn.ReLU())\n'
        "ddp = CPUDistributedDataParallel(model, device_ids=[int(os.environ['LOCAL_RANK'])],\n"
        '                                 broadcast_buffers=False)\n'
        'assert not any(isinstance(m, nn.SyncBatchNorm) for m in ddp.module.modules())\n'
        'ddp(torch.randn(2, 3, 8, 8)).sum().backward()\n'
        "open(f'rank{torch.distributed.get_rank()}.ok', 'w').close()\n"
    )
    out = run_command(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_port=29541']
        + [script],
        cwd=tmp_path,
        env=checkout_env(NO_CUDA),
    )
    # one marker file per rank (their printed lines can interleave)
    assert (tmp_path / 'rank0.ok').is_file() and (tmp_path / 'rank1.ok').is_file(), out[-3000:]
