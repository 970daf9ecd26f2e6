"""Hooks that our configs name: crash-safe checkpoints and a guard against divergence.

Both are registered in mmsgformer's scope and MMEngine's root (:mod:`mmsgformer.registry`), so
every task base config of ours names them and every tool that builds an MMEngine ``Runner``
from such a config (``tools/train.py``, mmdet/mmseg/mmpretrain's ``train.py``, ``mim train``)
uses them::

    default_hooks = dict(checkpoint=dict(type='mmsgformer.AtomicCheckpointHook', ...))
    custom_hooks = [dict(type='mmsgformer.DivergenceGuardHook')]

:class:`AtomicCheckpointHook` (replaces MMEngine's ``CheckpointHook``, every option kept):

* **Atomic files.** A checkpoint is written to ``.<name>.tmp`` in the same folder, flushed to
  disk (``fsync``) and renamed into place with ``os.replace``; ``last_checkpoint`` is written the
  same way and only *after* its checkpoint is complete. A run killed at any moment therefore
  leaves either the old or the new checkpoint, never a half-written one under a real name, and
  ``last_checkpoint`` always names a complete file. Stale ``*.tmp`` files of a killed run are
  removed when training starts.
* **Keep before delete.** MMEngine deletes the oldest checkpoint (``max_keep_ckpts``) *before*
  writing the new one; a kill in between can leave nothing to resume. Here old checkpoints are
  deleted only after the new one and ``last_checkpoint`` are in place.
* **Finite weights only.** Before anything is written, renamed or deleted, the model's weights
  are checked; NaN/Inf in them stops the run with :class:`DivergenceError` instead, so a diverged
  run never writes over, or rotates out, a good checkpoint, and ``last_checkpoint`` always names
  a checkpoint with finite weights.
* **Random state.** MMEngine saves the seed but not the state of the random generators, and on
  resume re-seeds from scratch. The hook stores the states of python ``random``, numpy, torch
  (and CUDA) under ``checkpoint['rng_state']`` and restores them on ``--resume`` just before
  training continues (``before_train``, after MMEngine's own re-seeding), so dropout, random
  flips, and the dataloader's worker seeds continue as if the run had never stopped.
* **Validation leaves the random state alone.** Creating the validation dataloader iterator
  draws from torch's generator; the hook saves the states before validation and restores them
  after, so a run that validates between epochs and a resumed one (which does not re-run that
  validation) stay identical.

:class:`DivergenceGuardHook` stops a run whose loss stays NaN/Inf; see its docstring.
"""

import math
import os
import os.path as osp
from typing import Dict, NoReturn, Optional

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import EpochBasedTrainLoop

from ..registry import HOOKS, register_in_root
from ..utils.safe_loading import describe_nonfinite
from .reliability import (
    RNG_KEY,
    DivergenceError,
    atomic_write_text,
    divergence_message,
    fsync_dir,
    fsync_file,
    get_rng_state,
    remove_stale_tmp,
    set_rng_state,
)


def stop_training(runner, problem: str) -> NoReturn:
    """Logs :func:`~mmsgformer.engine.reliability.divergence_message` as an error (console and
    log file) and raises :class:`DivergenceError` with it.

    Every tool then exits non-zero; ``tools/train.py`` exits with status 1 without a traceback,
    so the message is the last thing printed.

    Args:
        runner: The MMEngine runner (its ``work_dir`` holds ``last_checkpoint``).
        problem: What was found and when.
    """
    message = divergence_message(problem, runner.work_dir)
    runner.logger.error(message)
    raise DivergenceError(message)


def stop_if_weights_nonfinite(runner, state_dict: Dict[str, torch.Tensor], when: str) -> None:
    """:func:`stop_training` if the weights hold NaN/Inf.

    Args:
        runner: The MMEngine runner.
        state_dict: The weights to check (the model's, or a checkpoint's ``state_dict``).
        when: What was about to happen, e.g. ``'when epoch_2.pth was due (not written)'``.
    """
    problem = describe_nonfinite(state_dict)
    if problem:
        stop_training(runner, f"the model's weights contain NaN/Inf ({problem}) {when}")


def _epoch_of(runner) -> str:
    """``' (epoch 2)'`` during epoch-based training, ``''`` otherwise."""
    loop = runner.train_loop
    return f' (epoch {runner.epoch + 1})' if isinstance(loop, EpochBasedTrainLoop) else ''


def _model_weights(runner) -> Dict[str, torch.Tensor]:
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    return model.state_dict()


@register_in_root(HOOKS)
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with atomic writes, keep-before-delete, finite weights only and saved
    random state (see the module docstring).

    Accepts every argument of ``mmengine.hooks.CheckpointHook``. Atomic renames are done for
    local output folders; for other back ends (e.g. ``out_dir='s3://...'``) MMEngine's
    behaviour is kept and a warning is logged (the weights are still checked first).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pending_rng = None
        self._val_rng = None

    # -- random state ----------------------------------------------------------------------
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[RNG_KEY] = get_rng_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Only a resumed run continues the random sequence; ``load_from`` (fine-tuning) does
        # not. Applied in before_train: Runner.resume may re-seed after this hook.
        if getattr(runner, '_resume', False) and RNG_KEY in checkpoint:
            self._pending_rng = checkpoint[RNG_KEY]

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if is_main_process() and self._is_local():
            for folder in {self.out_dir, runner.work_dir}:
                for path in remove_stale_tmp(folder):
                    runner.logger.warning(
                        f'Removed an incomplete checkpoint file of an interrupted run: {path}'
                    )
        if self._pending_rng is not None:
            set_rng_state(self._pending_rng)
            self._pending_rng = None
            runner.logger.info(
                'Resumed the random state (python, numpy, torch) from the checkpoint.'
            )

    def before_val(self, runner) -> None:
        self._val_rng = get_rng_state()

    def after_val(self, runner) -> None:
        if self._val_rng is not None:
            set_rng_state(self._val_rng)
            self._val_rng = None

    # -- finite weights --------------------------------------------------------------------
    def _save_best_checkpoint(self, runner, metrics) -> None:
        # MMEngine deletes the previous best checkpoint before it writes the new one
        if self.save_best is not None:
            stop_if_weights_nonfinite(
                runner, _model_weights(runner), 'before saving a best checkpoint (not saved)'
            )
        super()._save_best_checkpoint(runner, metrics)

    # -- atomic save -----------------------------------------------------------------------
    def _is_local(self) -> bool:
        return '://' not in str(self.out_dir)

    def _save_checkpoint_with_step(self, runner, step, meta):
        ckpt_filename = self.filename_tmpl.format(step)
        # before any bookkeeping, rotation or file operation
        stop_if_weights_nonfinite(
            runner, _model_weights(runner), f'when {ckpt_filename} was due (not written)'
        )
        if not self._is_local():
            runner.logger.warning(
                "AtomicCheckpointHook: non-local out_dir, using MMEngine's non-atomic saving."
            )
            return super()._save_checkpoint_with_step(runner, step, meta)

        to_remove = []
        if self.max_keep_ckpts > 0:
            if not (len(self.keep_ckpt_ids) > 0 and self.keep_ckpt_ids[-1] == step):
                if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                    to_remove.append(self.keep_ckpt_ids.popleft())
                self.keep_ckpt_ids.append(step)
                runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)

        tmp_filename = f'.{ckpt_filename}.tmp'
        runner.save_checkpoint(  # master_only: other ranks return at once
            self.out_dir,
            tmp_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args,
        )
        if not is_main_process():
            return

        tmp_path = osp.join(self.out_dir, tmp_filename)
        fsync_file(tmp_path)
        os.replace(tmp_path, self.last_ckpt)
        fsync_dir(self.out_dir)
        atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)

        for old in to_remove:  # only now that the new checkpoint is complete
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):
                self.file_backend.rmtree(path)


def _skips_nonfinite_steps(optim_wrapper) -> bool:
    """Whether the optimizer wrapper skips steps with non-finite gradients (a loss scaler:
    ``AmpOptimWrapper``), for one wrapper or an ``OptimWrapperDict``."""
    wrappers = getattr(optim_wrapper, 'optim_wrappers', None)
    if wrappers is not None:
        return any(_skips_nonfinite_steps(w) for w in wrappers.values())
    return getattr(optim_wrapper, 'loss_scaler', None) is not None


@register_in_root(HOOKS)
class DivergenceGuardHook(Hook):
    """Stops training with one clear message when the loss stays NaN/Inf.

    After every training iteration it looks at the loss terms (every output whose name
    contains ``'loss'``, the terms MMEngine sums into the loss) and, when gradient clipping is
    on, the gradient norm. An iteration is *bad* when a loss term is NaN/Inf, or when the
    gradient norm is and the optimizer wrapper applies such steps (a plain ``OptimWrapper``:
    the weights are NaN from then on). ``patience`` consecutive bad iterations stop the run with
    :class:`DivergenceError`: the iteration, the non-finite terms, the last checkpoint (whose
    weights are finite) and what to try. One good iteration resets the count, so an isolated
    overflow under fp16 dynamic loss scaling (``AmpOptimWrapper``, which skips that step and
    lowers the scale) does not stop the run; its non-finite gradient norm is not counted.

    No host-device synchronisation is added: the values are read from the message hub, where
    MMEngine's ``RuntimeInfoHook`` (priority ``VERY_HIGH``, before this hook) has already
    copied every output to the host for logging; an output missing there is read from its
    tensor.

    Checkpoints: at the end of an epoch that ended with bad iterations, and before every save
    when the checkpoint hook is not an :class:`AtomicCheckpointHook` (which checks by itself),
    the weights are checked and NaN/Inf stops the run before a checkpoint is written. This hook
    runs before the checkpoint hook (priority ``ABOVE_NORMAL`` < ``VERY_LOW``) and before other
    ``NORMAL`` hooks (e.g. an EMA update).

    Args:
        patience: Consecutive bad iterations that stop the run (at least 1). Defaults to 5.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, patience: int = 5) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(
                f'DivergenceGuardHook: patience must be an integer >= 1 (the '
                f'number of consecutive NaN/Inf iterations that stop training), '
                f'got {patience!r}'
            )
        self.patience = patience
        self._streak = 0
        self._first_bad: Optional[int] = None
        self._terms = ''
        self._checks_saves = True

    def before_train(self, runner) -> None:
        self._streak = 0
        self._first_bad = None
        self._checks_saves = not any(isinstance(h, AtomicCheckpointHook) for h in runner.hooks)

    def after_train_iter(
        self, runner, batch_idx: int, data_batch=None, outputs: Optional[dict] = None
    ) -> None:
        bad = self._nonfinite_terms(runner, outputs or {})
        if not bad:
            self._streak = 0
            return
        iteration = runner.iter + 1  # as in the logs: 1-based, counted over the whole run
        self._streak += 1
        if self._streak == 1:
            self._first_bad = iteration
        self._terms = ', '.join(f'{k}={v}' for k, v in bad.items())
        if self._streak < self.patience:
            runner.logger.warning(
                f'Iteration {iteration}: non-finite {self._terms} ({self._streak} of '
                f'{self.patience} consecutive iterations stop training)'
            )
            return
        stop_training(
            runner,
            f'at iteration {iteration}{_epoch_of(runner)}, {self._streak} '
            f'consecutive iterations had a NaN/Inf loss or gradient norm '
            f'({self._since(iteration)}; non-finite: {self._terms})',
        )

    def after_train_epoch(self, runner) -> None:
        # before validation and before the checkpoint hook (lower priority)
        if self._streak:
            stop_if_weights_nonfinite(
                runner,
                _model_weights(runner),
                f'at the end of epoch {runner.epoch + 1} (iteration {runner.iter}), whose last '
                f'{self._streak} iterations had a NaN/Inf loss or gradient norm '
                f'({self._since(runner.iter)}; non-finite: {self._terms})',
            )

    def _since(self, iteration: int) -> str:
        if self._first_bad == iteration:
            return f'iteration {iteration}'
        return f'iterations {self._first_bad}-{iteration}'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._checks_saves:
            stop_if_weights_nonfinite(
                runner, checkpoint['state_dict'], 'before a checkpoint was written (not written)'
            )

    @staticmethod
    def _nonfinite_terms(runner, outputs: dict) -> Dict[str, float]:
        """The non-finite loss terms (and gradient norm, where it counts) of this iteration."""
        values = {}
        for key, value in outputs.items():
            if 'loss' not in key:
                continue
            buffer = runner.message_hub.log_scalars.get(f'train/{key}')
            values[key] = buffer.current() if buffer is not None else float(value)
        grad_norm = runner.message_hub.log_scalars.get('train/grad_norm')
        if grad_norm is not None and not _skips_nonfinite_steps(runner.optim_wrapper):
            values['grad_norm'] = grad_norm.current()
        return {k: v for k, v in values.items() if not math.isfinite(v)}
