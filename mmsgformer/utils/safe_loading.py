"""Safe reading of checkpoint files, local or at an ``http(s)://`` URL, and their weights' check.

* :func:`load_checkpoint_file` reads a file without running pickled code (below);
  :func:`download_checkpoint` fetches a URL once into torch's hub cache;
* :func:`extract_state_dict` finds the weights in whatever dict a checkpoint holds;
* :func:`check_finite_checkpoint` refuses weights with NaN/Inf (a checkpoint of a diverged run)
  with :class:`NonFiniteCheckpointError`; :func:`nonfinite_keys` and :func:`describe_nonfinite`
  name the tensors (the training hooks use them too);
* :func:`read_checkpoint` does all three for the tools and :mod:`mmsgformer.apis`: one read of
  the file, its weights checked, the loaded dict handed on.

``torch.load`` unpickles: an untrusted file could run arbitrary code. Every checkpoint is
therefore read with an explicit allow-list of the few plain types that the files we support
contain, on top of what torch's ``weights_only`` loading allows (tensors, storages, dtypes,
containers):

* ``argparse.Namespace`` - timm training checkpoints (the official SG-Former releases) store
  their command-line arguments under ``args``;
* numpy arrays, dtypes and scalars, and MMEngine's ``HistoryBuffer`` - MMEngine checkpoints
  (ours and those of mmdet, mmseg, mmpretrain runs) keep the message hub's logs with them. A
  ``HistoryBuffer`` pickles its statistics methods as ``getattr(HistoryBuffer, 'mean')``; the
  allow-list's ``getattr`` is :func:`history_buffer_method`, which returns exactly those four
  methods and refuses everything else.

Nothing on the list runs code of the file's choosing: the unpickler only calls allow-listed
functions, and builds (sets the state of) only instances of allow-listed types.

``import mmsgformer`` adds the list to torch's global ``weights_only`` allow-list
(:func:`register_safe_globals`), so MMEngine's own loading - ``load_checkpoint``, ``--resume``,
``init_detector``, the Inferencers, the stock ``tools/test.py`` of mmdet, mmseg and mmpretrain -
reads MMEngine checkpoints on torch >= 2.6 (where ``weights_only=True`` is the default) and still
refuses anything else. Torch 2.1-2.3 have no such list; there :func:`load_checkpoint_file` uses
its own restricted unpickler with the same list, while MMEngine's loading keeps torch's default
of those versions (full unpickling: load only files you trust).

A file that needs anything else is refused with :class:`UnsafeCheckpointError`, which names the
types; a user who trusts the file can pass ``allow_unsafe=True`` (or set the environment variable
``MMSGFORMER_ALLOW_UNSAFE_CHECKPOINTS=1``) to load it with full unpickling.
"""

from __future__ import annotations

import _compat_pickle
import argparse
import codecs
import collections
import functools
import os
import pickle
import shutil
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from typing import Any, Dict, List, Mapping, Optional, Union

import numpy as np
import torch

from .compat import add_safe_globals, has_safe_globals, unsafe_globals_in_checkpoint

ALLOW_UNSAFE_ENV = 'MMSGFORMER_ALLOW_UNSAFE_CHECKPOINTS'


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message names the file, the problem and the fix."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint needs types outside the allow-list to be unpickled."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file is truncated or not a PyTorch checkpoint."""


class CheckpointDownloadError(CheckpointError):
    """A checkpoint URL could not be downloaded."""


class RefusedGlobalError(pickle.UnpicklingError):
    """The restricted unpickler met something outside the allow-list."""


# ----------------------------------------------------------------------------- the allow-list
def _numpy_globals() -> List[Any]:
    types: List[Any] = [np.ndarray, np.dtype]
    for multiarray in _numpy_multiarray_modules().values():
        types += [multiarray._reconstruct, multiarray.scalar]
    # Scalar types (np.float64, ...) and their dtype classes (numpy.dtypes.Float64DType, ...).
    scalar_types = sorted(
        {np.dtype(code).type for code in '?bhilqBHILQefdgFDG'}, key=lambda t: t.__name__
    )
    types += scalar_types
    types += [type(np.dtype(t)) for t in scalar_types]
    return list({id(t): t for t in types}.values())


@functools.lru_cache(maxsize=1)
def _numpy_multiarray_modules() -> Dict[str, Any]:
    """``numpy.core.multiarray`` (numpy 1) and/or ``numpy._core.multiarray`` (numpy 2), by name:
    pickles name the one of the numpy that wrote them."""
    modules = {}
    for name in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        try:
            modules[name] = __import__(name, fromlist=['_reconstruct'])
        except ImportError:
            continue
    return modules


def _history_buffer():
    from mmengine.logging.history_buffer import HistoryBuffer

    return HistoryBuffer


HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')
"""The statistics methods that MMEngine's ``HistoryBuffer`` pickles by reference."""


def history_buffer_method(obj: Any, name: str) -> Any:
    """The allow-list's ``builtins.getattr``: only ``HistoryBuffer``'s statistics methods.

    MMEngine checkpoints pickle them as ``getattr(HistoryBuffer, 'mean')``; a general ``getattr``
    would let a file reach any attribute of an allow-listed object.

    Raises:
        RefusedGlobalError: Any other attribute is asked for.
    """
    if obj is _history_buffer() and name in HISTORY_BUFFER_METHODS:
        return getattr(obj, name)
    raise RefusedGlobalError(
        f'refused getattr({obj!r}, {name!r}): the checkpoint allow-list permits getattr only '
        f'for HistoryBuffer.{"/".join(HISTORY_BUFFER_METHODS)}'
    )


# torch keys its allow-list by the global's module and name: this one stands for
# `builtins.getattr`.
history_buffer_method.__module__ = 'builtins'
history_buffer_method.__qualname__ = history_buffer_method.__name__ = 'getattr'


def safe_globals() -> List[Any]:
    """The allow-list of types (and the restricted ``getattr``) that checkpoints may unpickle."""
    return [argparse.Namespace, history_buffer_method, _history_buffer()] + _numpy_globals()


def register_safe_globals() -> bool:
    """Adds :func:`safe_globals` to torch's global ``weights_only`` allow-list.

    ``import mmsgformer`` calls it. MMEngine's loading (``load_checkpoint``, ``Runner.resume``,
    the Inferencers, the stock tools) calls ``torch.load`` with torch's default, which is
    ``weights_only=True`` since torch 2.6: with the list registered, MMEngine checkpoints load and
    anything else is still refused.

    Returns:
        ``False`` on torch < 2.4, which has no such list (see the module's docstring).
    """
    return add_safe_globals(safe_globals())


# ------------------------------------------------- restricted unpickling for torch 2.1 - 2.3
@functools.lru_cache(maxsize=1)
def _allowed_by_name() -> Dict[str, Any]:
    """Pickle global name -> object: torch's weights-only list, all dtypes, ours."""
    from torch import _weights_only_unpickler

    allowed: Dict[str, Any] = dict(_weights_only_unpickler._get_allowed_globals())
    # What torch >= 2.4 adds to that list: every dtype, devices, and the builtins behind bytes
    # (protocol-2 pickles encode them with _codecs.encode), bytearray, set, complex, Counter.
    allowed.update({str(t): t for t in vars(torch).values() if isinstance(t, torch.dtype)})
    allowed.update(
        {
            'torch.device': torch.device,
            '_codecs.encode': codecs.encode,
            'builtins.bytearray': bytearray,
            'builtins.set': set,
            'builtins.complex': complex,
            'collections.Counter': collections.Counter,
        }
    )
    for obj in safe_globals():
        allowed[f'{obj.__module__}.{obj.__qualname__}'] = obj
    for module_name, module in _numpy_multiarray_modules().items():
        for name in ('_reconstruct', 'scalar'):
            allowed[f'{module_name}.{name}'] = getattr(module, name)
    return allowed


@functools.lru_cache(maxsize=1)
def _allowed_ids() -> frozenset:
    return frozenset(id(obj) for obj in _allowed_by_name().values())


class RestrictedUnpickler(pickle._Unpickler):  # the Python unpickler lets us check each call
    """An unpickler that resolves only allow-listed globals, calls only those, and builds only
    instances of allow-listed types: what torch >= 2.4's ``weights_only`` loading does with
    :func:`safe_globals` registered, for torch versions without that list.

    Used by :func:`load_checkpoint_file` through ``torch.load(pickle_module=...)``.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3 and self.fix_imports:  # Python 2 names, as pickle.Unpickler maps them
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        key = f'{module}.{name}'
        allowed = _allowed_by_name()
        if key not in allowed:
            raise RefusedGlobalError(f'Unsupported global: GLOBAL {key}')
        return allowed[key]

    @staticmethod
    def _check_callable(func: Any) -> None:
        if id(func) not in _allowed_ids():
            raise RefusedGlobalError(f'refused to call {func!r}: not on the allow-list')

    def _instantiate(self, klass: Any, args: tuple) -> None:  # INST, OBJ
        self._check_callable(klass)
        super()._instantiate(klass, args)

    def _load_reduce(self) -> None:
        self._check_callable(self.stack[-2])
        super().load_reduce()

    def _load_newobj(self) -> None:
        self._check_callable(self.stack[-2])
        super().load_newobj()

    def _load_newobj_ex(self) -> None:
        self._check_callable(self.stack[-3])
        super().load_newobj_ex()

    def _load_build(self) -> None:
        target = type(self.stack[-2])
        if id(target) not in _allowed_ids():
            raise RefusedGlobalError(
                f'refused to set the state of a {target!r}: not an allow-listed type'
            )
        super().load_build()

    dispatch[pickle.REDUCE[0]] = _load_reduce
    dispatch[pickle.NEWOBJ[0]] = _load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = _load_newobj_ex
    dispatch[pickle.BUILD[0]] = _load_build


class _RestrictedPickleModule:
    """What ``torch.load(pickle_module=...)`` needs of a pickle module."""

    __name__ = 'mmsgformer_restricted_pickle'
    Unpickler = RestrictedUnpickler
    UnpicklingError = pickle.UnpicklingError

    @staticmethod
    def load(file: Any, **kwargs: Any) -> Any:
        return RestrictedUnpickler(file, **kwargs).load()


def _torch_load_restricted(filename: str, map_location: Any) -> Any:
    """``torch.load`` allowing only the allow-list (torch's own list where it has one)."""
    if has_safe_globals():
        register_safe_globals()
        return torch.load(filename, map_location=map_location, weights_only=True)
    return torch.load(
        filename,
        map_location=map_location,
        pickle_module=_RestrictedPickleModule,
        weights_only=False,
    )  # the restriction is the pickle module's


# ----------------------------------------------------------------------------- URLs
def is_url(filename: Any) -> bool:
    """Whether ``filename`` is an ``http://`` or ``https://`` URL."""
    return isinstance(filename, str) and filename.startswith(('http://', 'https://'))


def checkpoint_cache_dir() -> str:
    """Where downloaded checkpoints are kept: torch's hub cache, ``torch.hub.get_dir()/checkpoints``
    (``$TORCH_HOME/hub/checkpoints``), shared with ``torch.hub`` and MMEngine's URL loading."""
    return os.path.join(torch.hub.get_dir(), 'checkpoints')


def download_checkpoint(url: str, timeout: float = 60.0) -> str:
    """The local copy of a checkpoint URL, downloaded on first use.

    The file is kept under :func:`checkpoint_cache_dir` by the last part of the URL's path (as
    ``torch.hub`` names it); later calls find it there and do not download again. A download is
    written to a temporary file first, so an interrupted one leaves nothing behind.

    Args:
        url: ``http(s)://.../name.pth``.
        timeout: Seconds without an answer before giving up.

    Raises:
        CheckpointDownloadError: The server answered with an error (e.g. 404) or could not be
            reached; the message names the URL and what to do.
    """
    name = os.path.basename(urllib.parse.urlparse(url).path)
    if not name:
        raise CheckpointDownloadError(
            f'checkpoint URL {url!r} names no file (its path must end '
            f'with the file name, e.g. .../sgformer_s.pth)'
        )
    target = os.path.join(checkpoint_cache_dir(), name)
    if os.path.isfile(target):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    partial = f'{target}.{os.getpid()}.part'
    advice = (
        f'Check the URL, or download the file yourself and set the checkpoint to its '
        f'path (or put it at {target}).'
    )
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, 'wb') as out:
            shutil.copyfileobj(response, out, length=1 << 20)
        os.replace(partial, target)
    except urllib.error.HTTPError as err:
        raise CheckpointDownloadError(
            f'could not download checkpoint {url!r}: the server answered HTTP {err.code} '
            f'{err.reason}. {advice}'
        ) from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, 'reason', err)
        raise CheckpointDownloadError(
            f'could not download checkpoint {url!r}: {reason}. Is the machine online and the '
            f'server reachable? {advice}'
        ) from err
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return target


# ----------------------------------------------------------------------------- loading
def _allow_unsafe_from_env() -> bool:
    return os.environ.get(ALLOW_UNSAFE_ENV, '').lower() in ('1', 'true', 'yes')


def _unsafe_error(filename: str, err: Exception) -> UnsafeCheckpointError:
    names = unsafe_globals_in_checkpoint(filename)
    listed = ', '.join(names) if names else 'named in the error below'
    return UnsafeCheckpointError(
        f'checkpoint {filename!r} contains pickled objects of types outside the allow-list '
        f'({listed}); loading it could run arbitrary code. If you trust the file, load it with '
        f'allow_unsafe=True or set {ALLOW_UNSAFE_ENV}=1; better, re-save its tensors as a plain '
        f'state dict.\nOriginal error: {err}'
    )


def load_checkpoint_file(
    filename: str, map_location: Any = 'cpu', allow_unsafe: bool = False
) -> Any:
    """Loads a checkpoint without executing pickled code.

    Args:
        filename: Path of the file, or an ``http(s)://`` URL (downloaded once, see
            :func:`download_checkpoint`).
        map_location: Passed to ``torch.load``.
        allow_unsafe: Load with full unpickling (only for files you trust). Also enabled by the
            environment variable ``MMSGFORMER_ALLOW_UNSAFE_CHECKPOINTS=1``.

    Raises:
        FileNotFoundError: The file does not exist.
        CheckpointDownloadError: The URL could not be downloaded.
        UnsafeCheckpointError: The file needs types outside :func:`safe_globals`.
        CorruptCheckpointError: The file is truncated or not a checkpoint.
    """
    filename = download_checkpoint(filename) if is_url(filename) else os.fspath(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(
            f'checkpoint {filename!r} does not exist. Download or convert it first (see README, '
            f'"Checkpoints"), or set the path in the config (e.g. --cfg-options '
            f'model.backbone.init_cfg.checkpoint=PATH); nothing is downloaded automatically '
            f'unless the checkpoint is an http(s) URL.'
        )
    if allow_unsafe or _allow_unsafe_from_env():
        return torch.load(filename, map_location=map_location, weights_only=False)
    try:
        return _torch_load_restricted(filename, map_location)
    except pickle.UnpicklingError as err:
        # 'Unsupported operand': torch's weights-only unpickler met bytes that are no pickle
        if isinstance(err, RefusedGlobalError) or (
            'Weights only load failed' in str(err) and 'Unsupported operand' not in str(err)
        ):
            raise _unsafe_error(filename, err) from err
        raise CorruptCheckpointError(
            f'checkpoint {filename!r} could not be read ({err}); it may be truncated or not '
            f'a PyTorch checkpoint'
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as err:
        raise CorruptCheckpointError(
            f'checkpoint {filename!r} could not be read ({type(err).__name__}: {err}); it is '
            f'truncated or not a PyTorch checkpoint. Re-download or re-convert it.'
        ) from err


STATE_DICT_KEYS = ('state_dict', 'model', 'module', 'state_dict_ema', 'model_ema')
"""Where state dicts are found in checkpoint dicts, in order of preference."""


def extract_state_dict(checkpoint: Any, filename: str = '<checkpoint>') -> Dict[str, torch.Tensor]:
    """The model weights of a loaded checkpoint, without ``module.`` prefixes.

    Accepts a plain state dict or a dict holding one under ``state_dict`` (timm and MMEngine),
    ``model``, ``module``, ``state_dict_ema`` or ``model_ema`` (first found wins; the raw weights
    are preferred to EMA weights when both are present).
    """
    if not isinstance(checkpoint, Mapping):
        raise CorruptCheckpointError(
            f'{filename!r} holds a {type(checkpoint).__name__}, not a dict of weights'
        )
    state_dict: Any = checkpoint
    for key in STATE_DICT_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            state_dict = checkpoint[key]
            break
    tensors = {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CorruptCheckpointError(
            f'{filename!r} holds no weights: expected a state dict or a dict with one of '
            f'{list(STATE_DICT_KEYS)}, found keys {sorted(map(str, checkpoint))[:10]}'
        )
    return {k[len('module.') :] if k.startswith('module.') else k: v for k, v in tensors.items()}


# ----------------------------------------------------------------------------- finite weights
class NonFiniteCheckpointError(CheckpointError, ValueError):
    """A checkpoint's weights contain NaN or Inf (it was saved from a diverged run)."""


_KEYS_SHOWN = 5
"""How many keys a message names before it says "and N more"."""


def _floating_keys(tensors: Mapping[str, torch.Tensor]) -> List[str]:
    return [
        k
        for k, v in tensors.items()
        if isinstance(v, torch.Tensor) and (v.is_floating_point() or v.is_complex())
    ]


def nonfinite_keys(tensors: Mapping[str, torch.Tensor]) -> List[str]:
    """Names of the floating-point tensors in ``tensors`` that hold a NaN or an Inf.

    One host read for all tensors (a stacked flag per tensor), wherever they live.

    Args:
        tensors: A state dict (name to tensor); entries that are not floating-point tensors
            (step counters, ``num_batches_tracked``) are ignored.
    """
    names = _floating_keys(tensors)
    if not names:
        return []
    finite = torch.stack([torch.isfinite(tensors[k]).all().cpu() for k in names]).tolist()
    return [k for k, ok in zip(names, finite) if not ok]


def describe_nonfinite(tensors: Mapping[str, torch.Tensor]) -> Optional[str]:
    """``'233 of 235 tensors, keys a, b, c, d, e and 228 more'`` for the floating-point tensors
    of ``tensors`` that hold NaN/Inf, or None when all are finite.

    Args:
        tensors: A state dict, as for :func:`nonfinite_keys`.
    """
    bad = nonfinite_keys(tensors)
    if not bad:
        return None
    shown = ', '.join(bad[:_KEYS_SHOWN])
    more = f' and {len(bad) - _KEYS_SHOWN} more' if len(bad) > _KEYS_SHOWN else ''
    return f'{len(bad)} of {len(_floating_keys(tensors))} tensors, keys {shown}{more}'


def check_finite_checkpoint(checkpoint: Union[str, Mapping], name: Optional[str] = None) -> None:
    """Raises :class:`NonFiniteCheckpointError` if a checkpoint's weights contain NaN/Inf.

    ``tools/test.py`` and :mod:`mmsgformer.apis` call it (through :func:`read_checkpoint`) before
    evaluating, so that a checkpoint of a diverged run is named as such instead of producing
    empty results.

    Args:
        checkpoint: A file (read safely, :func:`load_checkpoint_file`), a loaded checkpoint
            (MMEngine, timm, ...: its weights are found by :func:`extract_state_dict`) or a state
            dict.
        name: The checkpoint in messages (default: the file, or ``'<checkpoint>'``).
    """
    if isinstance(checkpoint, str):
        name = name or checkpoint
        checkpoint = load_checkpoint_file(checkpoint)
    name = name or '<checkpoint>'
    problem = describe_nonfinite(extract_state_dict(checkpoint, name))
    if problem:
        raise NonFiniteCheckpointError(
            f"the checkpoint's weights contain NaN/Inf ({problem})"
            f': {name} was saved from a diverged run. Use an earlier checkpoint of that run, or '
            f"train again with the settings that the run's divergence message suggests."
        )


def read_checkpoint(filename: str, map_location: Any = 'cpu') -> Any:
    """A checkpoint read once, safely, with finite weights: what evaluation and inference load.

    Args:
        filename: Path or ``http(s)://`` URL (see :func:`load_checkpoint_file`).
        map_location: Passed to ``torch.load``.

    Returns:
        The loaded checkpoint (a state dict or a dict holding one), to be handed on instead of
        reading the file again.

    Raises:
        FileNotFoundError, CheckpointDownloadError, UnsafeCheckpointError,
            CorruptCheckpointError: see :func:`load_checkpoint_file`.
        NonFiniteCheckpointError: Its weights contain NaN/Inf.
    """
    checkpoint = load_checkpoint_file(filename, map_location)
    check_finite_checkpoint(checkpoint, filename)
    return checkpoint
