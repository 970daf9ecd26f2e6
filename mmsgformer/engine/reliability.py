"""Functions behind crash-safe, divergence-safe training, for MMEngine 0.10.x.

The hooks that use them are in :mod:`mmsgformer.engine.hooks`
(:class:`~mmsgformer.engine.hooks.AtomicCheckpointHook`,
:class:`~mmsgformer.engine.hooks.DivergenceGuardHook`). Here:

* random states of python, numpy, torch and CUDA (:func:`get_rng_state`, :func:`set_rng_state`),
  which a checkpoint carries so that a resumed run continues exactly;
* atomic files (:func:`atomic_write_text`, :func:`fsync_file`, :func:`remove_stale_tmp`) and the
  checkpoint ``--resume`` takes (:func:`find_resume_checkpoint`);
* :func:`divergence_message`, the one message a diverged run stops with
  (:class:`DivergenceError`); which weights are not finite is found by
  :func:`mmsgformer.utils.safe_loading.describe_nonfinite`, beside the check that refuses such a
  checkpoint when it is loaded;
* :func:`use_reliability_hooks`, which puts both hooks into a config (``tools/train.py``).
"""

import glob
import os
import os.path as osp
import random
from typing import Mapping, Optional

import numpy as np
import torch

RNG_KEY = 'rng_state'


def get_rng_state() -> dict:
    """States of python ``random``, numpy, torch and (if present) CUDA generators."""
    state = dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state())
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


def fsync_file(path: str) -> None:
    """Flush ``path`` (a file or a folder) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    """Flush a folder's entries (renames) to disk where the file system supports it."""
    try:
        fsync_file(path)
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
    fsync_dir(osp.dirname(path) or '.')


def remove_stale_tmp(folder: str) -> list:
    """Delete ``*.tmp`` files (half-written checkpoints of a killed run) in ``folder``."""
    removed = []
    for path in glob.glob(osp.join(folder, '.*.tmp')) + glob.glob(osp.join(folder, '*.tmp')):
        if osp.isfile(path):
            os.remove(path)
            removed.append(path)
    return removed


def _hook_name(hook) -> str:
    """Class name of a hook config, a hook class or a hook, without a scope (``'mmsgformer.X'``
    gives ``'X'``); ``''`` for a config without a type."""
    hook_type = hook.get('type', '') if isinstance(hook, Mapping) else hook
    if not isinstance(hook_type, (str, type)):
        hook_type = type(hook_type)
    name = hook_type.__name__ if isinstance(hook_type, type) else hook_type
    return name.split('.')[-1]


def use_atomic_checkpoints(cfg) -> None:
    """Switch ``cfg.default_hooks.checkpoint`` to ``AtomicCheckpointHook`` (in place).

    A checkpoint hook of another class than MMEngine's ``CheckpointHook`` is kept.
    """
    hooks = cfg.get('default_hooks')
    if hooks is None:
        return
    ckpt = hooks.get('checkpoint')
    if ckpt is None:
        return
    if _hook_name(ckpt) in ('', 'CheckpointHook'):
        ckpt['type'] = 'AtomicCheckpointHook'


def use_reliability_hooks(cfg) -> None:
    """Atomic, finite-only checkpoints and a divergence guard for any training config (in place).

    Switches the checkpoint hook to ``AtomicCheckpointHook`` (:func:`use_atomic_checkpoints`)
    and appends ``DivergenceGuardHook`` to ``cfg.custom_hooks`` unless one is there: a config
    that replaces our base's ``custom_hooks`` list (``custom_hooks = [dict(type='EMAHook')]``)
    drops the guard that the base put there.
    """
    use_atomic_checkpoints(cfg)
    custom = list(cfg.get('custom_hooks') or [])
    if not any(_hook_name(h) == 'DivergenceGuardHook' for h in custom):
        custom.append(dict(type='mmsgformer.DivergenceGuardHook'))
        cfg['custom_hooks'] = custom


# -- divergence ---------------------------------------------------------------------------------


class DivergenceError(RuntimeError):
    """Training diverged: the loss or the weights became NaN/Inf and stayed so."""


def divergence_message(problem: str, work_dir: str) -> str:
    """The message a diverged run stops with: what happened, where to restart, what to try.

    Args:
        problem: What was found and when, e.g. ``'the loss has been NaN/Inf for 5 consecutive
            iterations (...)'``.
        work_dir: The run's work directory (its ``last_checkpoint`` names the checkpoint
            ``--resume`` takes).
    """
    last = find_resume_checkpoint(work_dir)
    if last is None:
        restart = (
            'No checkpoint of this run was written before; start again after changing '
            'the settings below.'
        )
    else:
        restart = (
            f'No checkpoint with non-finite weights was written: the last checkpoint, '
            f'{last}, has finite weights. `--resume` continues from it with the saved '
            f'optimizer and learning-rate schedule; to change them, start a new run from '
            f'its weights: --cfg-options load_from={last} (and the new settings).'
        )
    return (
        f'Training diverged: {problem}.\n{restart}\nWhat to try: a lower learning rate '
        f'(optim_wrapper.optimizer.lr), gradient clipping (optim_wrapper.clip_grad='
        f'dict(max_norm=10.0)), and with --amp (float16) training without it or in bfloat16 '
        f'(optim_wrapper.type=AmpOptimWrapper optim_wrapper.dtype=bfloat16).'
    )


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


def find_resume_checkpoint(work_dir: str) -> Optional[str]:
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
            num = name[len(prefix) : -len('.pth')]
            if name.startswith(prefix) and num.isdigit():
                candidates.append((osp.getmtime(path), int(num), path))
    for *_, path in sorted(candidates, reverse=True):
        if _is_complete_checkpoint(path):
            return path
    return None
