"""Configs: loading with ``--cfg-options``, the task, disabling pretrained loading, the scope.

Every tool reads its config through :func:`load_config` and learns its task from
:func:`task_of`; every model built for inference or analysis goes through
:func:`disable_pretrained` and :func:`task_registries` (see :mod:`mmsgformer.apis.inference`).
"""

from __future__ import annotations

import importlib
import os
import os.path as osp
import re
from typing import Any, List, Optional, Tuple

from mmengine.config import Config, ConfigDict
from mmengine.config import utils as mmengine_config_utils

from .compat import look_up_config_packages_by_module

TASK_SCOPES = {'det': 'mmdet', 'seg': 'mmseg', 'cls': 'mmpretrain'}
"""Our task names and the OpenMMLab scope (``default_scope``) of each."""


PACKAGE = 'mmsgformer'
MIXED_FORMS = 'The configuration file type in the inheritance chain must match'
"""The start of MMEngine's message for a text config inheriting a pure-Python one (or the
reverse)."""


class ConfigError(ValueError):
    """A config that cannot be read as written; the message names the file and the fix."""


def register_config_package() -> None:
    """Lets ``_base_ = ['mmsgformer::<folder>/<file>']`` resolve (called on ``import
    mmsgformer``).

    MMEngine resolves ``<package>::`` only for the packages in its ``MODULE2PACKAGE`` table and
    then reads ``<package>/.mim/configs/<folder>/<file>``: the wheel ships the text configs
    there, and in the clone ``mmsgformer/.mim/configs`` links to ``configs/``. The table is
    also aligned with the installed OpenMMLab line
    (:func:`~mmsgformer.utils.compat.look_up_config_packages_by_module`).
    """
    mmengine_config_utils.MODULE2PACKAGE.setdefault(PACKAGE, PACKAGE)
    look_up_config_packages_by_module(mmengine_config_utils.MODULE2PACKAGE)


def text_config_root() -> str:
    """Where ``mmsgformer::`` paths are looked up: ``<installed package>/.mim/configs``."""
    return osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), '.mim', 'configs')


def _listing(folder: str) -> str:
    """The files and folders in ``folder`` (folders with a trailing ``/``), for messages."""
    if not osp.isdir(folder):
        return '(the folder does not exist)'
    names = sorted(
        n + '/' if osp.isdir(osp.join(folder, n)) else n
        for n in os.listdir(folder)
        if not n.startswith(('.', '__'))
    )
    return ', '.join(names) or '(nothing)'


def _missing_package_config(path: str, name: str) -> ConfigError:
    """The error for ``mmsgformer::<name>`` that names no config of ours."""
    root = text_config_root()
    looked = osp.join(root, name)
    folder = osp.dirname(looked)
    while not osp.isdir(folder) and len(folder) > len(root):
        folder = osp.dirname(folder)
    return ConfigError(
        f'{path}: `{PACKAGE}::{name}` names no config of {PACKAGE}: looked for {looked}; '
        f'{folder} holds: {_listing(folder)}'
    )


def _mixed_forms(path: str) -> ConfigError:
    """The error for a text config inheriting a pure-Python one, or the reverse."""
    from mmsgformer.configs import TEXT_CONFIGS

    with open(path, encoding='utf-8') as f:
        text = f.read()
    inherited = [
        (name, twin)
        for name, twin in TEXT_CONFIGS.items()
        if re.search(rf'(configs[/.]{re.escape(name).replace(chr(92) + ".", "[/.]")})\b', text)
    ]
    hint = ''.join(
        f'\n  instead of mmsgformer/configs/{name.replace(".", "/")}.py inherit '
        f'`{PACKAGE}::{twin}` (configs/{twin} in the clone)'
        for name, twin in inherited
    )
    return ConfigError(
        f'{path}: a text config (`_base_ = [...]`) cannot inherit a pure-Python config '
        '(`with read_base(): from ... import *`), nor the reverse; every file of one '
        'inheritance chain must have the same form. Text configs inherit ours as '
        f"`_base_ = ['{PACKAGE}::<folder>/<file>']` (the files of configs/), pure-Python "
        f'ones with `from {PACKAGE}.configs.<name> import *`.' + hint
    )


def read_config(path: str) -> Config:
    """``Config.fromfile(path)`` with a clear :class:`ConfigError` where MMEngine's message
    would not say what to change: mixed config forms, an ``mmsgformer::`` path that names no
    config of ours or lacks a folder.

    Args:
        path: Config file.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {path}')
    try:
        return Config.fromfile(path)
    except RuntimeError as e:
        if MIXED_FORMS in str(e):
            raise _mixed_forms(path) from None
        raise
    except (FileNotFoundError, ValueError, AssertionError) as e:
        root = text_config_root()
        missing = re.search(r'"([^"]+)" does not exist', str(e))
        if missing and missing.group(1).startswith(root + os.sep):
            raise _missing_package_config(path, osp.relpath(missing.group(1), root)) from None
        if isinstance(e, ValueError) and f'{PACKAGE}::' in open(path, encoding='utf-8').read():
            raise ConfigError(
                f'{path}: an `{PACKAGE}::` path needs a folder, as in '
                f'`{PACKAGE}::mask_rcnn/mask-rcnn_sgformer-s_fpn_1x_coco.py`; the folders '
                f'are: {_listing(root)}'
            ) from None
        raise


def _merge_option(cfg: Config, key: str, value: Any) -> None:
    """``cfg.merge_from_dict({key: value})``, also where ``key`` goes below a non-dict value.

    MMEngine cannot merge a dict over a non-dict (e.g. ``model.backbone.arch='s'`` replaced by
    a custom architecture): a dotted key below a non-dict value
    (``model.backbone.arch.depths=[...]``), or a dict value for it, first replaces that value
    by an empty dict.
    """
    parts = key.split('.')
    node = cfg._cfg_dict
    for i, part in enumerate(parts):
        if not isinstance(node, dict):
            break
        last = i == len(parts) - 1
        if (
            part in node
            and not isinstance(node[part], dict)
            and (not last or isinstance(value, dict))
        ):
            node[part] = ConfigDict()
        node = node.get(part)
    cfg.merge_from_dict({key: value})


def apply_cfg_options(cfg: Config, cfg_options: Optional[dict]) -> Config:
    """Applies ``--cfg-options`` to ``cfg`` (in place) and returns it.

    Args:
        cfg: The config.
        cfg_options: ``{dotted.key: value}`` overrides (``DictAction``'s result); a key below
            a non-dict value replaces that value (``model.backbone.arch.depths=[...]`` turns
            ``arch='s'`` into a custom architecture).
    """
    for key, value in (cfg_options or {}).items():
        _merge_option(cfg, key, value)
    return cfg


def load_config(
    path: str,
    cfg_options: Optional[dict] = None,
    work_dir: Optional[str] = None,
    launcher: Optional[str] = None,
) -> Config:
    """Reads a config file and applies ``--cfg-options``.

    Args:
        path: Config file.
        cfg_options: ``{dotted.key: value}`` overrides, see :func:`apply_cfg_options`.
        work_dir: If given (or ``launcher`` is given), settles ``cfg.work_dir``: ``work_dir`` >
            the file's ``work_dir`` > ``./work_dirs/<config name>``.
        launcher: Sets ``cfg.launcher`` (the training and testing tools).

    Returns:
        The config.
    """
    cfg = apply_cfg_options(read_config(path), cfg_options)
    if launcher is not None:
        cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif launcher is not None and cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


def task_of(cfg: Config) -> str:
    """``'det'``, ``'seg'`` or ``'cls'``: from ``default_scope``, else from the model type.

    Args:
        cfg: The config.
    """
    scope = cfg.get('default_scope', None)
    for task, task_scope in TASK_SCOPES.items():
        if scope == task_scope:
            return task
    model_type = str((cfg.get('model') or {}).get('type', ''))
    if 'Classifier' in model_type:
        return 'cls'
    if 'EncoderDecoder' in model_type:
        return 'seg'
    if 'RCNN' in model_type or 'Detector' in model_type or 'DETR' in model_type:
        return 'det'
    raise ValueError(
        f'cannot tell the task of the config (default_scope={scope!r}, model type '
        f'{model_type!r}): set default_scope to one of '
        f'{sorted(TASK_SCOPES.values())}'
    )


def scope_of(cfg: Config) -> str:
    """The config's ``default_scope``, else the scope of its task (:func:`task_of`)."""
    return cfg.get('default_scope', None) or TASK_SCOPES[task_of(cfg)]


def is_pretrained_init(init_cfg: Any) -> bool:
    """Whether an ``init_cfg`` (dict or list of dicts) loads weights from a file."""
    items = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    return any(
        isinstance(c, dict) and (c.get('type') == 'Pretrained' or 'checkpoint' in c) for c in items
    )


def disable_pretrained(model_cfg: dict, key: str = '') -> List[str]:
    """Sets every weight-loading ``init_cfg`` and ``pretrained`` in a model config to None.

    For models whose weights come from elsewhere (a checkpoint, or none: analysis), so that
    nothing is loaded twice and nothing is looked for on disk or the network.

    Args:
        model_cfg: ``cfg.model`` (changed in place, recursively).
        key: Config key of ``model_cfg`` in messages (for the recursion).

    Returns:
        The config keys changed.
    """
    changed: List[str] = []
    if isinstance(model_cfg, dict):
        for name, value in model_cfg.items():
            sub = f'{key}.{name}' if key else name
            if name == 'init_cfg' and is_pretrained_init(value):
                model_cfg[name] = None
                changed.append(sub)
            elif name == 'pretrained' and isinstance(value, str):
                model_cfg[name] = None
                changed.append(sub)
            else:
                changed += disable_pretrained(value, sub)
    elif isinstance(model_cfg, (list, tuple)):
        for i, value in enumerate(model_cfg):
            changed += disable_pretrained(value, f'{key}[{i}]')
    return changed


def task_registries(cfg: Config) -> Tuple[Any, Any]:
    """Sets up the config's scope and returns its ``(MODELS, TRANSFORMS)`` registries.

    Imports ``custom_imports``, registers the scope's modules and makes it the default scope.

    Args:
        cfg: The config.
    """
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings

    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg['custom_imports'])
    scope = scope_of(cfg)
    try:
        importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
        registry = importlib.import_module(f'{scope}.registry')
    except ImportError as err:
        raise ImportError(
            f'the config needs {scope} (default_scope={scope!r}); install it '
            f'(tools/setup_env.sh): {err}'
        ) from err
    init_default_scope(scope)
    return registry.MODELS, registry.TRANSFORMS
