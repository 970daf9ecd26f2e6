"""Safe reading of checkpoint files.

``torch.load`` unpickles: an untrusted file could run arbitrary code. Every checkpoint is
therefore read with ``weights_only=True`` plus an explicit allow-list of the few plain types that
the files we support contain:

* ``argparse.Namespace`` - timm training checkpoints (the official SG-Former releases) store
  their command-line arguments under ``args``;
* numpy arrays, dtypes and scalars, and MMEngine's ``HistoryBuffer`` - MMEngine checkpoints
  (our training runs) keep the message hub's logs with them; a ``HistoryBuffer`` pickles its
  statistics methods as bound methods, which needs ``builtins.getattr``. The unpickler only calls
  allow-listed functions, so what ``getattr`` returns (attributes of allow-listed objects) cannot
  be called.

A file that needs anything else is refused with :class:`UnsafeCheckpointError`, which names the
types; a user who trusts the file can pass ``allow_unsafe=True`` (or set the environment variable
``MMSGFORMER_ALLOW_UNSAFE_CHECKPOINTS=1``) to load it with full unpickling.
"""
from __future__ import annotations

import argparse
import os
import pickle
import zipfile
from typing import Any, Dict, List, Mapping

import numpy as np
import torch

ALLOW_UNSAFE_ENV = 'MMSGFORMER_ALLOW_UNSAFE_CHECKPOINTS'


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint needs types outside the allow-list to be unpickled."""


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file is truncated or not a PyTorch checkpoint."""


def _numpy_globals() -> List[Any]:
    types: List[Any] = [np.ndarray, np.dtype]
    for name in ('_core', 'core'):  # numpy >= 2 moved numpy.core to numpy._core
        try:
            multiarray = __import__(f'numpy.{name}.multiarray', fromlist=['_reconstruct'])
        except ImportError:
            continue
        types += [multiarray._reconstruct, multiarray.scalar]
    # Scalar types (np.float64, ...) and their dtype classes (numpy.dtypes.Float64DType, ...).
    scalar_types = {np.dtype(code).type for code in '?bhilqBHILQefdgFDG'}
    types += sorted(scalar_types, key=lambda t: t.__name__)
    types += [type(np.dtype(t)) for t in sorted(scalar_types, key=lambda t: t.__name__)]
    return types


def safe_globals() -> List[Any]:
    """The allow-list of types that :func:`load_checkpoint_file` may unpickle."""
    types = [argparse.Namespace, getattr] + _numpy_globals()
    try:
        from mmengine.logging.history_buffer import HistoryBuffer
        types.append(HistoryBuffer)
    except ImportError:  # pragma: no cover - mmengine is a requirement
        pass
    return types


def register_safe_globals() -> None:
    """Adds :func:`safe_globals` to torch's global allow-list.

    MMEngine's own checkpoint loading (``load_checkpoint``, ``Runner.resume``) calls
    ``torch.load`` with torch's default ``weights_only=True`` since torch 2.6; our tools call this
    so that those calls accept MMEngine checkpoints while still refusing arbitrary code.
    """
    torch.serialization.add_safe_globals(safe_globals())


def _allow_unsafe_from_env() -> bool:
    return os.environ.get(ALLOW_UNSAFE_ENV, '').lower() in ('1', 'true', 'yes')


def load_checkpoint_file(filename: str, map_location: Any = 'cpu',
                         allow_unsafe: bool = False) -> Any:
    """Loads a checkpoint without executing pickled code.

    Args:
        filename: Path of the file.
        map_location: Passed to ``torch.load``.
        allow_unsafe: Load with full unpickling (only for files you trust). Also enabled by the
            environment variable ``MMSGFORMER_ALLOW_UNSAFE_CHECKPOINTS=1``.

    Raises:
        FileNotFoundError: The file does not exist.
        UnsafeCheckpointError: The file needs types outside :func:`safe_globals`.
        CorruptCheckpointError: The file is truncated or not a checkpoint.
    """
    filename = os.fspath(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(
            f'checkpoint {filename!r} does not exist. Download or convert it first (see README, '
            f'"Checkpoints"), or set the path in the config (e.g. --cfg-options '
            f'model.backbone.init_cfg.checkpoint=PATH); nothing is downloaded automatically.')
    if allow_unsafe or _allow_unsafe_from_env():
        return torch.load(filename, map_location=map_location, weights_only=False)
    # The context manager removes its types on exit: give it only those that are not registered
    # globally already (register_safe_globals), or it would unregister them.
    registered = torch.serialization.get_safe_globals()
    missing = [t for t in safe_globals() if t not in registered]
    try:
        with torch.serialization.safe_globals(missing):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if 'Weights only load failed' not in str(err):
            raise CorruptCheckpointError(
                f'checkpoint {filename!r} could not be read ({err}); it may be truncated or not '
                f'a PyTorch checkpoint') from err
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(filename)
        except Exception:  # noqa: BLE001 - only used to improve the message
            names = []
        listed = ', '.join(names) if names else 'see the error below'
        raise UnsafeCheckpointError(
            f'checkpoint {filename!r} contains pickled objects of types outside the allow-list '
            f'({listed}); loading it could run arbitrary code. If you trust the file, load it '
            f'with allow_unsafe=True or set {ALLOW_UNSAFE_ENV}=1; better, re-save its tensors '
            f'as a plain state dict.\nOriginal error: {err}') from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as err:
        raise CorruptCheckpointError(
            f'checkpoint {filename!r} could not be read ({type(err).__name__}: {err}); it is '
            f'truncated or not a PyTorch checkpoint. Re-download or re-convert it.') from err


STATE_DICT_KEYS = ('state_dict', 'model', 'module', 'state_dict_ema', 'model_ema')
"""Where state dicts are found in checkpoint dicts, in order of preference."""


def extract_state_dict(checkpoint: Any, filename: str = '<checkpoint>') -> Dict[str, torch.Tensor]:
    """The model weights of a loaded checkpoint, without ``module.`` prefixes.

    Accepts a plain state dict or a dict holding one under ``state_dict`` (timm and MMEngine),
    ``model``, ``module``, ``state_dict_ema`` or ``model_ema`` (first found wins; the raw weights
    are preferred to EMA weights when both are present).
    """
    if not isinstance(checkpoint, Mapping):
        raise CorruptCheckpointError(f'{filename!r} holds a {type(checkpoint).__name__}, not a '
                                     f'dict of weights')
    state_dict: Any = checkpoint
    for key in STATE_DICT_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            state_dict = checkpoint[key]
            break
    tensors = {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CorruptCheckpointError(
            f'{filename!r} holds no weights: expected a state dict or a dict with one of '
            f'{list(STATE_DICT_KEYS)}, found keys {sorted(map(str, checkpoint))[:10]}')
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in tensors.items()}
