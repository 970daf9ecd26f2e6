"""One place for the torch APIs that are newer than the oldest torch we support (2.1).

mmsgformer runs on torch 2.1 (the newest torch with prebuilt mmcv 2.1.0 wheels, what GPU users
install) through 2.14. Code elsewhere in the package calls these helpers instead of the newer
APIs, so that each fallback is written once and tested under both ends of the range
(``make test-torch21``).
"""

from __future__ import annotations

from typing import Any, List, Optional

import torch

__all__ = [
    'TORCH_VERSION',
    'is_compiling',
    'is_tracing',
    'is_autocast_enabled',
    'has_safe_globals',
    'add_safe_globals',
    'unsafe_globals_in_checkpoint',
]


def _version_tuple(version: str) -> tuple:
    """``'2.1.2+cu121'`` -> ``(2, 1)``."""
    major, minor = version.split('+')[0].split('.')[:2]
    return int(major), int(''.join(c for c in minor if c.isdigit()) or 0)


TORCH_VERSION = _version_tuple(torch.__version__)
"""(major, minor) of the installed torch."""


def is_compiling() -> bool:
    """Whether the caller is being traced by ``torch.compile`` (dynamo).

    ``torch.compiler.is_compiling`` exists since torch 2.3; torch 2.1/2.2 have
    ``torch._dynamo.is_compiling``.
    """
    compiler = getattr(torch, 'compiler', None)
    if compiler is not None and hasattr(compiler, 'is_compiling'):
        return compiler.is_compiling()
    import torch._dynamo as dynamo  # (a plain `import torch._dynamo` would make torch local)

    return dynamo.is_compiling()


def is_tracing() -> bool:
    """Whether the caller is being recorded into a graph rather than run eagerly: by
    ``torch.compile``, ``torch.export`` (and the ONNX exporter built on it), ``torch.jit.trace``
    or the TorchScript ONNX exporter.

    Code that branches on a size or a value, or that replaces modules by its own autograd
    functions, takes the general path then. ``torch.compiler.is_exporting`` exists since
    torch 2.7; older torch reports ``torch.export`` through :func:`is_compiling`.
    """
    if is_compiling() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return True
    is_exporting = getattr(getattr(torch, 'compiler', None), 'is_exporting', None)
    return is_exporting is not None and is_exporting()


def is_autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (``'cpu'``, ``'cuda'``, ...).

    ``torch.is_autocast_enabled(device_type)`` exists since torch 2.4; older torch has
    ``torch.is_autocast_cpu_enabled()`` and the CUDA-only ``torch.is_autocast_enabled()``.
    """
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:
        if device_type == 'cpu':
            return torch.is_autocast_cpu_enabled()
        return device_type == 'cuda' and torch.is_autocast_enabled()


def has_safe_globals() -> bool:
    """Whether ``torch.load(weights_only=True)`` takes a user allow-list (torch >= 2.4).

    Older torch has no such list: :func:`mmsgformer.utils.safe_loading.load_checkpoint_file` then
    uses its own restricted unpickler.
    """
    return hasattr(torch.serialization, 'add_safe_globals')


def add_safe_globals(objects: List[Any]) -> bool:
    """Adds ``objects`` to torch's global ``weights_only`` allow-list where there is one.

    Returns:
        ``True`` if they were added, ``False`` on torch < 2.4 (nothing to add them to).
    """
    if not has_safe_globals():
        return False
    torch.serialization.add_safe_globals(objects)
    return True


def unsafe_globals_in_checkpoint(filename: str) -> Optional[List[str]]:
    """The globals of a checkpoint that the ``weights_only`` unpickler would refuse.

    Only for error messages: ``None`` where torch cannot tell (torch < 2.5) or the file cannot
    be scanned.
    """
    scan = getattr(torch.serialization, 'get_unsafe_globals_in_checkpoint', None)
    if scan is None:
        return None
    try:
        return scan(filename)
    except Exception:  # noqa: BLE001 - a message helper must not hide the original error
        return None
