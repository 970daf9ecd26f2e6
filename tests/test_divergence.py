"""A diverging run stops loudly and never destroys the good checkpoints.

* A real run of the detection demo config (generated data, ``tools/train.py``) made to diverge
  with a huge learning rate: it stops with the message and a non-zero exit, the earlier good
  checkpoint and ``last_checkpoint`` are intact, and ``--resume`` continues from them.
* In-process runs of a one-layer model through MMEngine's ``Runner`` (the path of every tool)
  with chosen iterations made non-finite: the guard's count, the checkpoint hook's refusal, and
  a transient overflow under dynamic loss scaling that must not stop the run.
"""

import hashlib
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
from conftest import REPO, tiny_detection_config
from torch import nn

TRAIN = osp.join(REPO, 'tools', 'train.py')


# ---- in-process runs of a one-layer model -----------------------------------------------------

LOSS, GRAD = 1, 2  # how a sample is poisoned: infinite loss, or finite loss and infinite gradients


def _toy_classes():
    """A one-layer model whose loss (``LOSS``) or gradients (``GRAD``, the loss stays finite: an
    fp16 gradient overflow) become infinite on poisoned samples, its dataset, and an
    ``AmpOptimWrapper`` with a CPU loss scaler (MMEngine's own refuses to start without a GPU;
    the scaler's step skipping is what matters here)."""
    from mmengine.model import BaseModel
    from mmengine.optim import AmpOptimWrapper, OptimWrapper
    from torch.utils.data import Dataset

    class PoisonModel(BaseModel):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 1)

        def forward(self, x, poison, mode='loss'):
            y = self.fc(x)
            if (poison == GRAD).any():
                y.register_hook(lambda grad: grad * float('inf'))
            loss = y.pow(2).mean()
            if (poison == LOSS).any():
                loss = loss * float('inf')
            return dict(loss_main=loss, acc=torch.tensor(float('nan')))

    class PoisonData(Dataset):
        """One sample per iteration; sample i is poisoned as ``poison[i]`` says."""

        def __init__(self, length, poison):
            self.length, self.poison = length, poison

        def __len__(self):
            return self.length

        def __getitem__(self, i):
            gen = torch.Generator().manual_seed(i)
            return dict(x=torch.randn(4, generator=gen), poison=torch.tensor(self.poison.get(i, 0)))

    class CPUAmpOptimWrapper(AmpOptimWrapper):
        def __init__(self, **kwargs):
            OptimWrapper.__init__(self, **kwargs)
            self._scale_update_param = None
            self.cast_dtype = None
            self.loss_scaler = torch.amp.GradScaler('cpu', init_scale=2.0**8)

        def optim_context(self, model):
            return OptimWrapper.optim_context(self, model)

    return PoisonModel, PoisonData, CPUAmpOptimWrapper


def _toy_runner(
    tmp_path,
    poison,
    length=8,
    patience=3,
    amp=False,
    checkpoint=None,
    checkpoint_type='mmsgformer.AtomicCheckpointHook',
):
    """A Runner (work dir ``tmp_path/w``) of 1 epoch of ``length`` iterations; ``poison`` maps
    0-based sample (= iteration) indices to ``LOSS`` or ``GRAD``."""
    from mmengine.runner import Runner

    import mmsgformer  # noqa: F401  (registers the hooks)

    model_cls, data_cls, amp_cls = _toy_classes()
    optim = dict(optimizer=dict(type='SGD', lr=0.01), clip_grad=dict(max_norm=1.0))
    if amp:
        optim['type'] = amp_cls
    return Runner(
        model=model_cls(),
        work_dir=str(tmp_path / 'w'),
        train_dataloader=dict(
            dataset=data_cls(length, poison),
            batch_size=1,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate'),
        ),
        train_cfg=dict(by_epoch=True, max_epochs=1),
        optim_wrapper=optim,
        default_hooks=dict(
            checkpoint=dict(
                type=checkpoint_type, by_epoch=False, **(checkpoint or dict(interval=100))
            )
        ),
        custom_hooks=[dict(type='mmsgformer.DivergenceGuardHook', patience=patience)],
        # a unique name: the logger and message hub are per-name singletons in this process
        default_scope='mmengine',
        experiment_name=f'divergence_{tmp_path.name}',
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        randomness=dict(seed=0),
    )


def _weights_finite(runner):
    return all(torch.isfinite(p).all() for p in runner.model.parameters())


def test_guard_stops_after_patience_nonfinite_iterations(tmp_path):
    """Iterations 4, 5, 6 non-finite (plain optimizer: the weights stay NaN), patience 3: the run
    stops at iteration 6 naming the loss term and the last good checkpoint (iter_3.pth); the
    NaN ``acc`` output (not a loss term) and the good iterations do not count."""
    from mmsgformer.engine.reliability import DivergenceError
    from mmsgformer.utils.safe_loading import check_finite_checkpoint

    runner = _toy_runner(tmp_path, poison={3: LOSS}, checkpoint=dict(interval=3))
    with pytest.raises(DivergenceError) as err:
        runner.train()
    msg = str(err.value)
    assert runner.iter == 5  # the 6th iteration (0-based 5) raised
    assert 'at iteration 6 (epoch 1)' in msg
    terms = re.search(
        r'3 consecutive iterations had a NaN/Inf loss or gradient norm '
        r'\(iterations 4-6; non-finite: '
        r'(.*)\)\.\n',
        msg,
    ).group(1)
    assert terms == 'loss=nan, loss_main=nan, grad_norm=nan'  # not the NaN acc output
    good = str(tmp_path / 'w' / 'iter_3.pth')
    assert f'the last checkpoint, {good}, has finite weights' in msg
    assert 'lower learning rate' in msg and 'clip_grad' in msg and 'bfloat16' in msg
    check_finite_checkpoint(good)


def test_checkpoint_hook_refuses_nonfinite_weights(tmp_path):
    """Weights NaN from iteration 3 on; the checkpoint due at iteration 4 (interval 2,
    max_keep_ckpts=1) is refused before anything is written, renamed or rotated out."""
    from mmsgformer.engine.reliability import DivergenceError
    from mmsgformer.utils.safe_loading import check_finite_checkpoint

    work = tmp_path / 'w'
    runner = _toy_runner(
        tmp_path, poison={2: LOSS}, patience=10, checkpoint=dict(interval=2, max_keep_ckpts=1)
    )
    with pytest.raises(
        DivergenceError,
        match=r"the model's weights contain NaN/Inf \(2 of 2 "
        r'tensors, keys fc.weight, fc.bias\) when iter_4.pth was due',
    ):
        runner.train()
    assert [p.name for p in work.glob('*.pth')] == ['iter_2.pth']
    assert not list(work.glob('*.tmp')) and not list(work.glob('.*.tmp'))
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_2.pth')
    check_finite_checkpoint(str(work / 'iter_2.pth'))


def test_guard_protects_checkpoints_of_mmengine_checkpoint_hook(tmp_path):
    """With MMEngine's own CheckpointHook (a config that names it), the guard checks the
    weights before the file is written: no checkpoint with NaN weights appears."""
    from mmsgformer.engine.reliability import DivergenceError

    work = tmp_path / 'w'
    runner = _toy_runner(
        tmp_path,
        poison={2: LOSS},
        patience=10,
        checkpoint_type='CheckpointHook',
        checkpoint=dict(interval=2),
    )
    with pytest.raises(DivergenceError, match='before a checkpoint was written'):
        runner.train()
    assert (work / 'iter_2.pth').is_file() and not (work / 'iter_4.pth').exists()


@pytest.mark.parametrize(
    'poison, stops',
    [
        ({1: LOSS, 3: LOSS, 5: LOSS}, False),  # isolated: patience (3) of them, never in a row
        ({1: GRAD, 2: GRAD, 3: GRAD, 4: GRAD}, False),  # gradient overflows: the scaler's business
        ({2: LOSS, 3: LOSS, 4: LOSS}, True),
    ],
)
def test_loss_scaler_transient_overflow_is_not_stopped(tmp_path, poison, stops):
    """Dynamic loss scaling skips the steps of non-finite gradients and lowers the scale
    (weights stay finite): isolated non-finite losses and any run of gradient overflows under a
    finite loss do not stop training; ``patience`` (3) non-finite losses in a row do."""
    from mmsgformer.engine.reliability import DivergenceError

    runner = _toy_runner(tmp_path, poison=poison, amp=True, checkpoint=dict(interval=4))
    if stops:
        with pytest.raises(DivergenceError, match='3 consecutive iterations had a NaN/Inf loss'):
            runner.train()
    else:
        runner.train()
        assert runner.iter == 8
        assert (tmp_path / 'w' / 'iter_8.pth').is_file()
    assert _weights_finite(runner)  # the scaler skipped every poisoned step
    assert runner.optim_wrapper.loss_scaler.get_scale() < 2.0**8  # and lowered the scale


def test_plain_optimizer_nonfinite_gradient_counts(tmp_path):
    """Without a loss scaler, a step with non-finite gradients (finite loss) is applied and
    ruins the weights: it counts, and names the gradient norm."""
    from mmsgformer.engine.reliability import DivergenceError

    runner = _toy_runner(tmp_path, poison={3: GRAD}, patience=1)
    with pytest.raises(
        DivergenceError, match=r'at iteration 4 .*non-finite: grad_norm=(inf|nan)\)'
    ):
        runner.train()


def test_guard_reads_host_values_not_device_tensors(tmp_path):
    """No host-device sync: the guard takes the loss values that MMEngine's RuntimeInfoHook has
    already copied to the message hub, and never reads the output tensors (here objects that
    fail when read)."""
    from types import SimpleNamespace

    from mmengine.logging import MessageHub, MMLogger

    from mmsgformer.engine import DivergenceGuardHook
    from mmsgformer.engine.reliability import DivergenceError

    class Unreadable:
        def __float__(self):
            raise AssertionError('the guard read an output tensor (a device sync on CUDA)')

    name = f'divergence_{tmp_path.name}'
    runner = SimpleNamespace(
        message_hub=MessageHub.get_instance(name),
        iter=0,
        epoch=0,
        optim_wrapper=SimpleNamespace(),
        train_loop=None,
        logger=MMLogger.get_instance(name),
        work_dir=str(tmp_path),
    )
    outputs = dict(loss=Unreadable(), loss_cls=Unreadable())
    runner.message_hub.update_scalars({'train/loss': float('nan'), 'train/loss_cls': 1.0})
    with pytest.raises(DivergenceError, match=r'at iteration 1, .*non-finite: loss=nan\)'):
        DivergenceGuardHook(patience=1).after_train_iter(runner, 0, None, outputs)


def test_check_finite_checkpoint(tmp_path):
    from mmsgformer.utils.safe_loading import NonFiniteCheckpointError, check_finite_checkpoint

    weights = {f'layer{i}.weight': torch.ones(2) for i in range(8)}
    weights['step'] = torch.tensor(3)  # not a floating-point tensor: ignored
    check_finite_checkpoint(dict(state_dict=weights, meta={}))
    for i in range(7):
        weights[f'layer{i}.weight'][1] = float('nan') if i % 2 else float('inf')
    path = tmp_path / 'epoch_3.pth'
    torch.save(dict(state_dict=weights, meta=dict(epoch=3)), path)
    with pytest.raises(
        NonFiniteCheckpointError,
        match=r"the checkpoint's weights contain NaN/Inf \(7 of 8 tensors, keys "
        r'layer0.weight, layer1.weight, layer2.weight, layer3.weight, '
        r'layer4.weight and 2 more\).*epoch_3.pth',
    ):
        check_finite_checkpoint(str(path))
    with pytest.raises(NonFiniteCheckpointError):
        check_finite_checkpoint(weights)  # a plain state dict


def test_reliability_hooks_added_to_any_config():
    """A config that replaced the base's custom_hooks gets the guard back from tools/train.py;
    one that has it keeps its settings; MMEngine's CheckpointHook becomes the atomic one."""
    from mmengine.config import Config

    from mmsgformer.engine.reliability import use_reliability_hooks

    cfg = Config(
        dict(
            default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
            custom_hooks=[dict(type='EMAHook')],
        )
    )
    use_reliability_hooks(cfg)
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    assert [h['type'] for h in cfg.custom_hooks] == ['EMAHook', 'mmsgformer.DivergenceGuardHook']
    cfg = Config(dict(custom_hooks=[dict(type='DivergenceGuardHook', patience=2)]))
    use_reliability_hooks(cfg)
    assert cfg.custom_hooks == [dict(type='DivergenceGuardHook', patience=2)]


def test_demo_config_runner_has_guard_before_checkpoint_hook():
    """What every tool gets from our config: the guard, then the atomic checkpoint hook."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    from mmsgformer.engine import AtomicCheckpointHook, DivergenceGuardHook

    cfg = Config.fromfile(
        osp.join(REPO, 'configs', 'demo', 'mask-rcnn_sgformer-tiny_fpn_shapes.py')
    )
    cfg.work_dir = '/tmp/unused'
    runner = Runner.from_cfg(cfg)
    kinds = [type(h) for h in runner.hooks]
    assert kinds.index(DivergenceGuardHook) < kinds.index(AtomicCheckpointHook)


# ---- a real diverging run of the demo config ---------------------------------------------------


def _env():
    env = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')
    env['PYTHONPATH'] = os.pathsep.join([REPO, env.get('PYTHONPATH', '')])
    return env


def _train(cfg, work, *args):
    proc = subprocess.run(
        [sys.executable, TRAIN, str(cfg), '--work-dir', str(work), *args],
        cwd=str(work.parent),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc.returncode, proc.stdout, proc.stderr


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_diverging_demo_run_stops_and_keeps_good_checkpoint(tmp_path):
    """Epoch 1 (4 iterations) trains normally: epoch_1.pth. A new run in the same folder from its
    weights with lr=50, no clipping and no warm-up (the demo's warm-up keeps the loss finite, if
    huge, for the few iterations a test can afford) diverges: it stops with the
    message and exit status 1 before any checkpoint is written, so epoch_1.pth and
    last_checkpoint are untouched (its first checkpoint, epoch_2.pth, would rotate epoch_1.pth out:
    max_keep_ckpts=1); ``--resume`` then continues from epoch_1.pth and finishes epoch 2."""
    from mmsgformer.synthetic_data import generate_coco_shapes
    from mmsgformer.utils.safe_loading import check_finite_checkpoint

    generate_coco_shapes(str(tmp_path / 'shapes'), num_train=8, num_val=2, seed=1)
    cfg = tmp_path / 'tiny.py'
    cfg.write_text(
        tiny_detection_config(
            tmp_path / 'shapes',
            extra='train_cfg = dict(max_epochs=2, val_interval=10)\n'
            'default_hooks = dict(logger=dict(interval=1),\n'
            '                     checkpoint=dict(interval=1, max_keep_ckpts=1))\n'
            'randomness = dict(seed=0)\n',
        )
    )
    work = tmp_path / 'work'
    rc, out, err = _train(cfg, work, '--cfg-options', 'train_cfg.max_epochs=1')
    assert rc == 0, err[-5000:]
    good = work / 'epoch_1.pth'
    digest = _digest(good)

    rc, out, err = _train(
        cfg,
        work,
        '--cfg-options',
        f'load_from={good}',
        'optim_wrapper.optimizer.lr=50.0',
        'optim_wrapper.clip_grad=None',
        'param_scheduler=[]',
        'default_hooks.checkpoint.interval=2',
    )
    assert rc == 1, out[-3000:] + err[-3000:]
    assert 'Traceback' not in err, err[-5000:]
    # the message is the last output: the logger's error, three lines
    first, restart, advice = out.strip().splitlines()[-3:]
    # stopped by the loss count or (here: the epoch ends first) the weights check at epoch end
    stopped = re.search(r'ERROR - .* - Training diverged: .*?iteration (\d+)', first)
    assert stopped, out[-5000:]
    assert int(stopped.group(1)) <= 8, first  # within 2 epochs of 4 iterations
    assert 'non-finite: loss=nan' in first
    assert f'the last checkpoint, {good}, has finite weights' in restart
    assert advice.startswith('What to try: a lower learning rate')
    assert _digest(good) == digest
    assert (work / 'last_checkpoint').read_text().strip() == str(good)
    assert sorted(p.name for p in work.glob('*.pth')) == ['epoch_1.pth']

    rc, out, err = _train(cfg, work, '--resume')
    assert rc == 0, err[-5000:]
    assert 'resumed epoch: 1, iter: 4' in out + err
    check_finite_checkpoint(str(work / 'epoch_2.pth'))
    assert (work / 'last_checkpoint').read_text().strip() == str(work / 'epoch_2.pth')
