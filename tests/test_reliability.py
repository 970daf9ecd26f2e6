"""Reliable training, tool side: crash-safe checkpoints, exact resume after SIGKILL, clear errors
from tools/train.py, and prompt failure of a distributed job when one rank raises.

Every training run here is the demo Mask R-CNN config on 4 generated 160x128 images, batch 2
(2 iterations per epoch), one thread per process, seeded and deterministic.
"""

import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, tiny_detection_config

from mmsgformer.synthetic_data import generate_coco_shapes

TRAIN = osp.join(REPO, 'tools', 'train.py')
TIMEOUT = 600
_PATHS = [REPO]  # + the tmp folder holding the test-only hook module


def _env(extra=None):
    env = dict(os.environ)
    env['OMP_NUM_THREADS'] = '1'
    env['CUDA_VISIBLE_DEVICES'] = ''
    env['PYTHONPATH'] = os.pathsep.join(_PATHS + [env.get('PYTHONPATH', '')])
    env.update(extra or {})
    return env


def _run(cmd, cwd, check=True, extra_env=None, timeout=TIMEOUT):
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=_env(extra_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
    )
    if check:
        assert proc.returncode == 0, f'{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}'
    return proc


# A test-only hook (loaded through custom_imports from tmp_path) that makes one moment of the
# run observable: it writes a marker file and then blocks, so the test can SIGKILL the process
# exactly there.
#  - STALL_AT=write:  while epoch_2's checkpoint file is being written (half of its bytes are on
#    disk, the rest would follow);
#  - STALL_AT=iter:   in the middle of epoch 2 (before its second iteration);
#  - STALL_AT=raise1: rank 1 raises at its second iteration (distributed test).
STALL_HOOK = """
import os, time
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.fileio.backends import LocalBackend

MARK = os.environ.get('STALL_MARK', '')
AT = os.environ.get('STALL_AT', '')


def _mark_and_block():
    with open(MARK, 'w') as f:
        f.write(str(time.time()))
    time.sleep(600)


_orig_put = LocalBackend.put


def _slow_put(self, obj, filepath):
    if AT == 'write' and 'epoch_2' in str(filepath):
        with open(filepath, 'wb') as f:
            f.write(obj[:len(obj) // 2])
            f.flush()
            os.fsync(f.fileno())
        _mark_and_block()
    return _orig_put(self, obj, filepath)


if AT == 'write':
    LocalBackend.put = _slow_put


@HOOKS.register_module()
class StallHook(Hook):
    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if AT == 'iter' and runner.iter == 3:
            _mark_and_block()
        if AT == 'raise1' and runner.iter == 1 and runner.rank == 1:
            with open(MARK, 'w') as f:
                f.write(str(time.time()))
            raise RuntimeError('injected failure on rank 1')
"""


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp('reliability')
    data = root / 'shapes'
    generate_coco_shapes(str(data), num_train=4, num_val=2, seed=1)
    (root / 'stall_hook.py').write_text(STALL_HOOK)
    _PATHS.append(str(root))
    cfg = root / 'tiny.py'
    cfg.write_text(
        tiny_detection_config(
            data,
            imports=('mmsgformer', 'stall_hook'),
            # validation between epochs too
            extra='train_cfg = dict(max_epochs=3, val_interval=1)\n'
            'default_hooks = dict(logger=dict(interval=1),\n'
            '                     checkpoint=dict(interval=1, max_keep_ckpts=1))\n'
            "custom_hooks = [dict(type='StallHook')]\n"
            'log_processor = dict(window_size=1)\n'
            'randomness = dict(seed=0, deterministic=True)\n',
        )
    )
    return root, cfg


@pytest.fixture(scope='module')
def uninterrupted(tiny):
    root, cfg = tiny
    work = root / 'work_ref'
    _run([sys.executable, TRAIN, str(cfg), '--work-dir', str(work)], cwd=root)
    return torch.load(work / 'epoch_3.pth', map_location='cpu', weights_only=False)


def _assert_same_run(ref, ckpt):
    """Bit-identical: every weight, optimizer moment and random state equal, not close."""
    assert ckpt['meta']['epoch'] == ref['meta']['epoch'] == 3
    assert ckpt['meta']['iter'] == ref['meta']['iter'] == 6
    assert ckpt['state_dict'].keys() == ref['state_dict'].keys()
    differ = [k for k, v in ref['state_dict'].items() if not torch.equal(ckpt['state_dict'][k], v)]
    assert not differ, f'{len(differ)} tensors differ, e.g. {differ[:3]}'
    assert ckpt['optimizer']['state'].keys() == ref['optimizer']['state'].keys()
    for k, st in ref['optimizer']['state'].items():
        for name, t in st.items():
            assert torch.equal(ckpt['optimizer']['state'][k][name], t), (k, name)
    assert ckpt['param_schedulers'] == ref['param_schedulers']
    assert torch.equal(ckpt['rng_state']['torch'], ref['rng_state']['torch'])
    assert (ckpt['rng_state']['numpy'][1] == ref['rng_state']['numpy'][1]).all()
    assert ckpt['rng_state']['python'] == ref['rng_state']['python']


@pytest.mark.parametrize('stall_at', ['write', 'iter'])
def test_sigkill_then_resume_matches_uninterrupted(tiny, uninterrupted, stall_at):
    """SIGKILL a real training process mid-checkpoint-write / mid-epoch, resume with
    ``--resume``: the final weights, optimizer, scheduler and counters equal the uninterrupted
    run's; the half-written file never appears under a checkpoint name."""
    root, cfg = tiny
    work = root / f'work_kill_{stall_at}'
    mark = root / f'mark_{stall_at}'
    proc = subprocess.Popen(
        [sys.executable, TRAIN, str(cfg), '--work-dir', str(work)],
        cwd=root,
        env=_env({'STALL_AT': stall_at, 'STALL_MARK': str(mark)}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + TIMEOUT
        while not mark.exists():
            assert proc.poll() is None, f'training ended early:\n{proc.stderr.read()[-5000:]}'
            assert time.time() < deadline
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()

    if stall_at == 'write':
        # killed with half of epoch_2 on disk: only as a temporary file
        assert (work / '.epoch_2.pth.tmp').is_file()
        assert not (work / 'epoch_2.pth').exists()
        # the previous checkpoint is kept until the new one is complete (max_keep_ckpts=1)
        assert (work / 'epoch_1.pth').is_file()
    assert (work / 'last_checkpoint').read_text().strip() == str(work / 'epoch_1.pth')

    out = _run([sys.executable, TRAIN, str(cfg), '--work-dir', str(work), '--resume'], cwd=root)
    log = out.stdout + out.stderr
    assert 'resumed epoch: 1, iter: 2' in log
    assert 'Resumed the random state' in log
    assert not list(work.glob('*.tmp')) and not list(work.glob('.*.tmp'))
    ckpt = torch.load(work / 'epoch_3.pth', map_location='cpu', weights_only=False)
    _assert_same_run(uninterrupted, ckpt)


def test_resume_skips_incomplete_checkpoints(tmp_path):
    """--resume (auto) never takes a truncated file, even one named by last_checkpoint (e.g. a
    run written without atomic saving)."""
    from mmsgformer.engine.reliability import find_resume_checkpoint, remove_stale_tmp

    good = tmp_path / 'epoch_1.pth'
    torch.save({'state_dict': {'w': torch.ones(3)}}, good)
    bad = tmp_path / 'epoch_2.pth'
    bad.write_bytes(good.read_bytes()[:100])
    os.utime(good, (1, 1))
    (tmp_path / 'last_checkpoint').write_text(str(bad))
    (tmp_path / '.epoch_3.pth.tmp').write_bytes(b'half')
    assert find_resume_checkpoint(str(tmp_path)) == str(good)
    (tmp_path / 'last_checkpoint').write_text(str(good))
    assert find_resume_checkpoint(str(tmp_path)) == str(good)
    assert remove_stale_tmp(str(tmp_path)) == [str(tmp_path / '.epoch_3.pth.tmp')]
    assert find_resume_checkpoint(str(tmp_path / 'missing')) is None


# ---- clear errors ----------------------------------------------------------------------------


def _train_fails(cfg, root, *opts):
    proc = _run(
        [
            sys.executable,
            TRAIN,
            str(cfg),
            '--work-dir',
            str(root / 'work_err'),
            '--cfg-options',
            *opts,
        ],
        cwd=root,
        check=False,
        timeout=300,
    )
    assert proc.returncode != 0
    assert 'Traceback' not in proc.stderr, proc.stderr[-5000:]
    return proc.stderr


def test_missing_data_root_message(tiny, tmp_path):
    root, cfg = tiny
    err = _train_fails(cfg, root, f'train_dataloader.dataset.data_root={tmp_path}/nowhere/')
    assert f"the data root '{tmp_path}/nowhere/' does not exist" in err
    assert '--cfg-options train_dataloader.dataset.data_root=' in err


def test_missing_annotation_file_message(tiny):
    root, cfg = tiny
    err = _train_fails(cfg, root, 'val_dataloader.dataset.ann_file=annotations/nope.json')
    assert 'val_dataloader.dataset.ann_file: the annotation file' in err
    assert 'annotations/nope.json' in err and 'does not exist' in err


@pytest.mark.parametrize(
    'config, key',
    [
        (
            'upernet/upernet_sgformer-s_8xb2-160k_ade20k-512x512.py',
            'train_dataloader.dataset.data_root',
        ),
        ('sgformer/sgformer-s_16xb64_in1k.py', 'train_dataloader.dataset.data_root'),
        ('mask_rcnn/mask-rcnn_sgformer-s_fpn_1x_coco.py', 'train_dataloader.dataset.data_root'),
    ],
)
def test_missing_dataset_paths_all_tasks(config, key, tmp_path):
    from mmengine.config import Config

    from mmsgformer.engine.preflight import ConfigPathError, check_dataset_paths

    cfg = Config.fromfile(osp.join(REPO, 'configs', config))
    cfg.merge_from_dict({key: str(tmp_path / 'absent')})
    with pytest.raises(
        ConfigPathError,
        match=f'{key}: the data root .*absent.* does not exist.*--cfg-options {key}=/path/to/data/',
    ):
        check_dataset_paths(cfg, ['train_dataloader'])
    # existing root, missing annotation file / image folder
    (tmp_path / 'absent').mkdir()
    with pytest.raises(ConfigPathError, match='does not exist'):
        check_dataset_paths(cfg, ['train_dataloader'])


def _test_tool_error(tiny, checkpoint, work_dir, returncode: int, *options) -> str:
    """What tools/test.py prints when it refuses to run (``returncode``, no traceback)."""
    root, cfg = tiny
    cmd = [sys.executable, osp.join(REPO, 'tools', 'test.py'), str(cfg), str(checkpoint)]
    proc = _run([*cmd, '--work-dir', str(work_dir), *options], cwd=root, check=False, timeout=300)
    assert proc.returncode == returncode and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    return proc.stderr


def test_test_tool_missing_data_root_message(tiny, tmp_path):
    _, cfg = tiny
    option = f'test_dataloader.dataset.data_root={tmp_path}/gone/'
    stderr = _test_tool_error(tiny, cfg, tmp_path / 'w', 2, '--cfg-options', option)
    assert '--cfg-options test_dataloader.dataset.data_root=' in stderr


def _refused_checkpoint_message(tiny, checkpoint, work_dir) -> str:
    """What tools/test.py prints when it refuses ``checkpoint`` (exit status 1, no traceback)."""
    return _test_tool_error(tiny, checkpoint, work_dir, 1)


def test_test_tool_unreadable_checkpoint_message(tiny, tmp_path):
    """A file that is no checkpoint (here: the config) gets one line naming it, no traceback."""
    _, cfg = tiny
    stderr = _refused_checkpoint_message(tiny, cfg, tmp_path / 'w')
    assert f"error: checkpoint '{cfg}' could not be read" in stderr
    assert 'not a PyTorch checkpoint' in stderr


def test_test_tool_checkpoint_of_another_model_message(tiny, tmp_path):
    """A checkpoint that does not fit the config's model is refused (not loaded in part), in
    one message naming the tensors and the likely cause, no traceback."""
    checkpoint = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'conv1.weight': torch.zeros(8, 3, 7, 7)}}, checkpoint)
    stderr = _refused_checkpoint_message(tiny, checkpoint, tmp_path / 'w')
    assert f"error: checkpoint '{checkpoint}' does not fit this MaskRCNN (0 of its" in stderr
    assert 'unexpected (1): conv1.weight' in stderr
    assert 'another model' in stderr


def test_unknown_arch_message(tiny):
    root, cfg = tiny
    err = _train_fails(cfg, root, 'model.backbone.arch=xl')
    assert "ValueError: SGFormer arch 'xl' does not exist; choose one of" in err
    assert 'class `' not in err  # the registry's nested prefixes are stripped


# ---- distributed -----------------------------------------------------------------------------


def test_dist_rank_failure_exits_promptly(tiny):
    """Rank 1 raises at its second iteration; the job exits non-zero within 60 s of that
    instead of rank 0 waiting in the gradient all-reduce."""
    root, cfg = tiny
    mark = root / 'mark_dist'
    proc = _run(
        [
            'bash',
            osp.join(REPO, 'tools', 'dist_train.sh'),
            str(cfg),
            '2',
            '--work-dir',
            str(root / 'work_dist'),
        ],
        cwd=root,
        check=False,
        extra_env={
            'PYTHON': sys.executable,
            'PORT': '29561',
            'STALL_AT': 'raise1',
            'STALL_MARK': str(mark),
        },
        timeout=400,
    )
    end = time.time()
    assert proc.returncode != 0
    assert mark.exists(), proc.stderr[-5000:]
    assert 'injected failure on rank 1' in proc.stderr + proc.stdout
    assert end - float(mark.read_text()) < 60
