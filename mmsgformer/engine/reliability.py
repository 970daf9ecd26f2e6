"""Crash-safe checkpoints and exactly resumable training (issue 7), MMEngine 0.10.x unpatched.

:class:`AtomicCheckpointHook` replaces MMEngine's ``CheckpointHook`` (``tools/train.py`` swaps
the type in ``default_hooks.checkpoint``; every other setting is kept):

* **Atomic files.** A checkpoint is written to ``.<name>.tmp`` in the same folder, flushed to
  disk (``fsync``) and renamed into place with ``os.replace``; ``last_checkpoint`` is written the
  same way and only *after* its checkpoint is complete. A run killed at any moment therefore
  leaves either the old or the new checkpoint, never a half-written one under a real name, and
  ``last_checkpoint`` always names a complete file. Stale ``*.tmp`` files of a killed run are
  removed when training starts.
* **Keep before delete.** MMEngine deletes the oldest checkpoint (``max_keep_ckpts``) *before*
  writing the new one; a kill in between can leave nothing to resume. Here old checkpoints are
  deleted only after the new one and ``last_checkpoint`` are in place.
* **Random state.** MMEngine saves the seed but not the state of the random generators, and on
  resume re-seeds from scratch. The hook stores the states of python ``random``, numpy, torch
  (and CUDA) under ``checkpoint['rng_state']`` and restores them on ``--resume`` just before
  training continues (``before_train``, after MMEngine's own re-seeding), so dropout, random
  flips, and the dataloader's worker seeds continue as if the run had never stopped.
* **Validation leaves the random state alone.** Creating the validation dataloader iterator
  draws from torch's generator; the hook saves the states before validation and restores them
  after, so a run that validates between epochs and a resumed one (which does not re-run that
  validation) stay identical.
"""
import glob
import os
import os.path as osp
import random

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook

from ..registry import HOOKS, register_in_root

RNG_KEY = 'rng_state'


def get_rng_state() -> dict:
    """States of python ``random``, numpy, torch and (if present) CUDA generators."""
    state = dict(python=random.getstate(), numpy=np.random.get_state(),
                 torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of :func:`get_rng_state`."""
    if 'python' in state:
        py = state['python']
        # a version-3 state is (3, tuple_of_ints, gauss_next); lists come back after loading
        random.setstate((py[0], tuple(py[1]), py[2]))
    if 'numpy' in state:
        np.random.set_state(tuple(state['numpy']))
    if 'torch' in state:
        torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    try:
        _fsync(path)
    except OSError:  # not supported on every file system / OS
        pass


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and a rename."""
    tmp = osp.join(osp.dirname(path), f'.{osp.basename(path)}.tmp')
    with open(tmp, 'w') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(osp.dirname(path) or '.')


def remove_stale_tmp(folder: str) -> list:
    """Delete ``*.tmp`` files (half-written checkpoints of a killed run) in ``folder``."""
    removed = []
    for path in glob.glob(osp.join(folder, '.*.tmp')) + glob.glob(osp.join(folder, '*.tmp')):
        if osp.isfile(path):
            os.remove(path)
            removed.append(path)
    return removed


@register_in_root(HOOKS)
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with atomic writes, keep-before-delete and saved random state.

    Accepts every argument of ``mmengine.hooks.CheckpointHook``. Atomic renames are done for
    local output folders; for other back ends (e.g. ``out_dir='s3://...'``) MMEngine's
    behaviour is kept and a warning is logged.
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
                        f'Removed an incomplete checkpoint file of an interrupted run: {path}')
        if self._pending_rng is not None:
            set_rng_state(self._pending_rng)
            self._pending_rng = None
            runner.logger.info('Resumed the random state (python, numpy, torch) from the '
                               'checkpoint.')

    def before_val(self, runner) -> None:
        self._val_rng = get_rng_state()

    def after_val(self, runner) -> None:
        if self._val_rng is not None:
            set_rng_state(self._val_rng)
            self._val_rng = None

    # -- atomic save -----------------------------------------------------------------------
    def _is_local(self) -> bool:
        return '://' not in str(self.out_dir)

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not self._is_local():
            runner.logger.warning('AtomicCheckpointHook: non-local out_dir, using MMEngine\'s '
                                  'non-atomic saving.')
            return super()._save_checkpoint_with_step(runner, step, meta)

        to_remove = []
        if self.max_keep_ckpts > 0:
            if not (len(self.keep_ckpt_ids) > 0 and self.keep_ckpt_ids[-1] == step):
                if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                    to_remove.append(self.keep_ckpt_ids.popleft())
                self.keep_ckpt_ids.append(step)
                runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)

        tmp_filename = f'.{ckpt_filename}.tmp'
        runner.save_checkpoint(  # master_only: other ranks return at once
            self.out_dir, tmp_filename, self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta, by_epoch=self.by_epoch, backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return

        tmp_path = osp.join(self.out_dir, tmp_filename)
        _fsync(tmp_path)
        os.replace(tmp_path, self.last_ckpt)
        _fsync_dir(self.out_dir)
        atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)

        for old in to_remove:  # only now that the new checkpoint is complete
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):
                self.file_backend.rmtree(path)


def use_atomic_checkpoints(cfg) -> None:
    """Switch ``cfg.default_hooks.checkpoint`` to :class:`AtomicCheckpointHook` (in place)."""
    hooks = cfg.get('default_hooks')
    if hooks is None:
        return
    ckpt = hooks.get('checkpoint')
    if ckpt is None:
        return
    if str(ckpt.get('type', 'CheckpointHook')).split('.')[-1] in ('CheckpointHook',):
        ckpt['type'] = 'AtomicCheckpointHook'


def _is_complete_checkpoint(path: str) -> bool:
    """A cheap completeness check: a torch zip file whose central directory reads."""
    import zipfile
    if not osp.isfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return bool(zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def find_resume_checkpoint(work_dir: str):
    """The checkpoint ``--resume`` (auto) continues from, or None.

    ``last_checkpoint`` if it names a complete file; otherwise (runs written without the atomic
    hook, a deleted or damaged file) the newest complete ``epoch_*.pth`` / ``iter_*.pth`` in
    ``work_dir``. ``*.tmp`` files are never considered.
    """
    last = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last):
        with open(last) as f:
            named = f.read().strip()
        if named and _is_complete_checkpoint(named):
            return named
    candidates = []
    for path in glob.glob(osp.join(work_dir, '*.pth')):
        name = osp.basename(path)
        for prefix in ('epoch_', 'iter_'):
            num = name[len(prefix):-len('.pth')]
            if name.startswith(prefix) and num.isdigit():
                candidates.append((osp.getmtime(path), int(num), path))
    for *_, path in sorted(candidates, reverse=True):
        if _is_complete_checkpoint(path):
            return path
    return None
