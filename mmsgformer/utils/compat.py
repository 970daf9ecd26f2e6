"""One place for what differs between the versions mmsgformer supports.

* torch: mmsgformer runs on torch 2.1 (the newest torch with prebuilt mmcv 2.1.0 wheels, what
  GPU users install) through 2.14. Code elsewhere in the package calls these helpers instead of
  the newer APIs, so that each fallback is written once and tested under both ends of the range
  (``make test-torch21``).
* OpenMMLab: two lines install the same import names (``mmcv``, ``mmengine``, ``mmdet``,
  ``mmseg``, ``mmpretrain``, ``mim``): the upstream OpenMMLab releases and the maintained OneDL
  fork (``requirements/upstream.txt``, ``requirements/onedl.txt``). One environment must hold
  one line: :func:`check_openmmlab_installation` (run by ``import mmsgformer``) names a mixed
  one, and :func:`check_mmcv_ops` an mmcv whose compiled ops are missing or do not load.
  Where the lines differ in what we rely on, the difference is handled here:
  :func:`look_up_config_packages_by_module` (``mmseg::`` config paths under OneDL) and
  :func:`refuse_unpickling_fallback_in_mmengine` (OneDL's checkpoint loader retrying refused
  checkpoints with full unpickling).
"""

from __future__ import annotations

import importlib
import importlib.util
from importlib.metadata import PackageNotFoundError, distribution
from typing import Any, Dict, List, Optional

import torch

__all__ = [
    'TORCH_VERSION',
    'OPENMMLAB_LINES',
    'OpenMMLabInstallError',
    'installed_openmmlab_lines',
    'check_openmmlab_installation',
    'check_mmcv_ops',
    'look_up_config_packages_by_module',
    'refuse_unpickling_fallback_in_mmengine',
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


OPENMMLAB_LINES: Dict[str, Dict[str, List[str]]] = {
    'upstream': {
        'mmcv': ['mmcv', 'mmcv-full', 'mmcv-lite'],
        'mmengine': ['mmengine', 'mmengine-lite'],
        'mmdet': ['mmdet'],
        'mmseg': ['mmsegmentation'],
        'mmpretrain': ['mmpretrain'],
        'mim': ['openmim'],
    },
    'onedl': {
        'mmcv': ['onedl-mmcv'],
        'mmengine': ['onedl-mmengine'],
        'mmdet': ['onedl-mmdetection'],
        'mmseg': ['onedl-mmsegmentation'],
        'mmpretrain': ['onedl-mmpretrain'],
        'mim': ['onedl-mim'],
    },
}
"""For each OpenMMLab line, the distributions that install each import name."""

_INSTALL_HINT = (
    'In a clone of mmsgformer, `bash tools/setup_env.sh` sets up an environment with one line '
    '(MMSGFORMER_STACK=onedl, the default, or upstream); otherwise see docs/install.md '
    '"Two OpenMMLab lines".'
)


class OpenMMLabInstallError(ImportError):
    """The installed OpenMMLab packages cannot work together (or with this torch)."""


def _is_installed(name: str) -> bool:
    try:
        distribution(name)
    except PackageNotFoundError:
        return False
    return True


def installed_openmmlab_lines() -> Dict[str, List[str]]:
    """The installed distributions of each OpenMMLab line (lines with none are left out)."""
    found = {}
    for line, packages in OPENMMLAB_LINES.items():
        names = [name for names in packages.values() for name in names if _is_installed(name)]
        if names:
            found[line] = names
    return found


def check_openmmlab_installation() -> str:
    """Checks that the installed OpenMMLab packages come from one line.

    Packages of both lines in one environment overwrite each other's files under the same
    import names, which shows up much later as an undefined symbol or a missing attribute deep
    inside mmcv; this names the packages instead.

    Returns:
        The installed line (``'upstream'`` or ``'onedl'``), ``''`` where no OpenMMLab package
        is installed as a distribution (e.g. a source checkout on ``PYTHONPATH``).

    Raises:
        OpenMMLabInstallError: Packages of both lines are installed, or none provides mmengine.
    """
    found = installed_openmmlab_lines()
    if len(found) > 1:
        listing = '; '.join(f'{line}: {", ".join(names)}' for line, names in found.items())
        everything = ' '.join(name for names in found.values() for name in names)
        raise OpenMMLabInstallError(
            'the installed OpenMMLab packages mix two lines that install the same import names '
            f'({listing}). Remove them all with `pip uninstall -y {everything}` and install one '
            f'line again. {_INSTALL_HINT}'
        )
    if importlib.util.find_spec('mmengine') is None:
        raise OpenMMLabInstallError(
            f'mmsgformer needs mmengine, which is not installed. {_INSTALL_HINT}'
        )
    return next(iter(found), '')


def _installed_mmcv() -> str:
    """The installed mmcv as a pin of the distribution with ops (``'onedl-mmcv==2.3.6'``)."""
    for packages in OPENMMLAB_LINES.values():
        for name in packages['mmcv']:
            if _is_installed(name):
                with_ops = name.replace('-lite', '').replace('-full', '')
                return f'{with_ops}=={distribution(name).version}'
    return 'mmcv'


def check_mmcv_ops() -> None:
    """Checks that mmcv's compiled ops (``mmcv._ext``, e.g. ``RoIAlign`` and ``nms`` of Mask
    R-CNN) load with the installed torch.

    Raises:
        OpenMMLabInstallError: mmcv is not installed, was installed without its ops (e.g.
            ``mmcv-lite``, or built while torch was not importable), or its ops were compiled
            against another torch (an undefined symbol).
    """
    if importlib.util.find_spec('mmcv') is None:
        raise OpenMMLabInstallError(f'mmcv is not installed. {_INSTALL_HINT}')
    rebuild = (
        f'Build {_installed_mmcv()} with its ops against torch {torch.__version__}: '
        '`bash tools/setup_env.sh` in a clone of mmsgformer (it caches the wheel), or the steps '
        'of docs/install.md "Building mmcv".'
    )
    if importlib.util.find_spec('mmcv._ext') is None:
        raise OpenMMLabInstallError(
            f'the installed mmcv has no compiled ops (mmcv._ext), which Mask R-CNN needs. {rebuild}'
        )
    try:
        importlib.import_module('mmcv._ext')
    except ImportError as err:  # an undefined symbol: built against another torch
        raise OpenMMLabInstallError(
            f"mmcv's compiled ops do not load with torch {torch.__version__} ({err}); they were "
            f'built against another torch. {rebuild}'
        ) from None


def look_up_config_packages_by_module(module2package: Dict[str, str]) -> None:
    """Lets ``<module>::<path>`` config paths resolve where the module's distribution has another
    name than MMEngine's table expects (``module2package`` is changed in place).

    MMEngine resolves ``mmseg::_base_/...`` through its ``MODULE2PACKAGE`` table to the
    distribution ``mmsegmentation``; OneDL installs ``mmseg`` as ``onedl-mmsegmentation``, and
    its mmengine 0.10.12 keeps the upstream table, so the lookup fails with "mmsegmentation is
    not installed". Where the expected distribution is missing but the module imports, the
    module is looked up by its own name (MMEngine then finds it by its import path).

    Args:
        module2package: MMEngine's ``mmengine.config.utils.MODULE2PACKAGE``.
    """
    for module, package in list(module2package.items()):
        if (
            module != package
            and not _is_installed(package)
            and importlib.util.find_spec(module) is not None
        ):
            module2package[module] = module


def refuse_unpickling_fallback_in_mmengine() -> bool:
    """Keeps MMEngine's checkpoint loading (``load_checkpoint``, ``load_from``, ``--resume``,
    ``init_cfg`` Pretrained) refusing checkpoints that would run code, on both lines.

    Upstream mmengine 0.10.7 calls ``torch.load`` with torch's default, ``weights_only=True``
    since torch 2.6, and the allow-list of :func:`mmsgformer.utils.register_safe_globals`. OneDL's
    mmengine 0.10.12 loads through ``_safe_torch_load``, which retries a refused checkpoint with
    ``weights_only=False``, i.e. runs whatever the pickle calls. Where that loader exists, it is
    replaced by one that keeps its allow-list and drops the retry; explicit ``weights_only``
    arguments and torch < 2.6 go to it unchanged.

    Returns:
        Whether the loader was replaced (``False`` on the upstream line, or if already done).
    """
    from mmengine.runner import checkpoint

    loader = getattr(checkpoint, '_safe_torch_load', None)
    if loader is None or getattr(loader, 'refuses_unpickling', False):
        return False

    def load_weights_only(file, map_location=None, weights_only=None):
        if weights_only is None and TORCH_VERSION >= (2, 6):
            with torch.serialization.safe_globals(checkpoint.get_torch_safe_globals()):
                return torch.load(file, map_location=map_location, weights_only=True)
        return loader(file, map_location=map_location, weights_only=weights_only)

    load_weights_only.refuses_unpickling = True
    checkpoint._safe_torch_load = load_weights_only
    return True
