"""Checks the tools run before building the Runner, and short messages for build errors.

* :func:`check_dataset_paths` - a missing data root, annotation file or image folder is
  reported with the path, the config key that names it and the ``--cfg-options`` to change it,
  instead of a stack trace from deep inside a dataset class (or, worse, after the model has
  been built and the process group set up).
* :func:`concise_build_error` - MMEngine's registry re-raises every error of a nested build
  with a ``class `X` in module.py:`` prefix per level; this strips them so the user sees the
  one message of the component that failed (e.g. ``SGFormer arch 'xl' does not exist;
  choose one of [...]``).
"""

import os.path as osp
import re
from typing import List, Optional


class ConfigPathError(FileNotFoundError):
    """A path named by the config does not exist."""


_REMOTE = ('://',)


def _is_remote(path: str) -> bool:
    return any(tag in str(path) for tag in _REMOTE)


def _iter_datasets(ds, key: str):
    """Yield (dataset cfg, config key) for ``ds`` and the datasets it wraps."""
    if not isinstance(ds, dict):
        return
    if 'dataset' in ds:  # RepeatDataset, ClassBalancedDataset, MultiImageMixDataset, ...
        yield from _iter_datasets(ds['dataset'], f'{key}.dataset')
    if 'datasets' in ds:  # ConcatDataset
        for i, sub in enumerate(ds['datasets'] or []):
            yield from _iter_datasets(sub, f'{key}.datasets.{i}')
    if 'dataset' not in ds and 'datasets' not in ds:
        yield ds, key


def _join(root: Optional[str], path: str) -> str:
    if root and not osp.isabs(path) and not _is_remote(root):
        return osp.join(root, path)
    return path


def _missing_path(key: str, field: str, kind: str, path: str, root: str, where: str) -> str:
    """The message for the missing ``kind`` (``'folder'``, ...) ``path`` that ``key.field``
    names relative to the data root ``root``."""
    placeholder = 'FOLDER' if kind == 'folder' else 'FILE'
    return (
        f'{key}.{field}: the {kind} {path!r} does not exist{where}. Fix the path: '
        f'--cfg-options {key}.{field}={placeholder} (relative to {key}.data_root={root!r})'
    )


def dataset_path_problems(cfg, loaders=('train_dataloader',)) -> List[str]:
    """One message per missing path of the datasets of ``loaders`` (empty if all exist)."""
    problems = []
    where = f' (config {cfg.filename})' if getattr(cfg, 'filename', None) else ''
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if not loader_cfg or 'dataset' not in loader_cfg:
            continue
        for ds, key in _iter_datasets(loader_cfg['dataset'], f'{loader}.dataset'):
            root = ds.get('data_root')
            if root and not _is_remote(root) and not osp.isdir(root):
                problems.append(
                    f'{key}.data_root: the data root {root!r} does not exist{where}. '
                    'Prepare the dataset there, or point the config at it: '
                    f'--cfg-options {key}.data_root=/path/to/data/'
                )
                continue  # every path below it is missing too
            ann = ds.get('ann_file')
            if isinstance(ann, str) and ann and not _is_remote(ann):
                ann_path = _join(root, ann)
                if not osp.isfile(ann_path):
                    problems.append(
                        _missing_path(key, 'ann_file', 'annotation file', ann_path, root, where)
                    )
            split = ds.get('split')
            if (
                isinstance(split, str)
                and split
                and not ann
                and not ds.get('data_prefix')
                and root
                and not _is_remote(root)
            ):
                # mmpretrain ImageNet-style: <root>/meta/<split>.txt or a <root>/<split>/ folder
                if not (
                    osp.isfile(osp.join(root, 'meta', f'{split}.txt'))
                    or osp.isdir(osp.join(root, split))
                ):
                    problems.append(
                        f'{key}.split: the {split!r} data does not exist: neither the folder '
                        f'{osp.join(root, split)!r} nor the list '
                        f'{osp.join(root, "meta", split + ".txt")!r} is there{where}. Prepare '
                        f'the {split!r} split under {key}.data_root={root!r}, or change it: '
                        f'--cfg-options {key}.data_root=/path/to/data/'
                    )
            prefix = ds.get('data_prefix')
            if isinstance(prefix, dict):
                for name, sub in prefix.items():
                    if not isinstance(sub, str) or not sub or _is_remote(sub):
                        continue
                    sub_path = _join(root, sub)
                    if not osp.isdir(sub_path):
                        problems.append(
                            _missing_path(
                                key, f'data_prefix.{name}', 'folder', sub_path, root, where
                            )
                        )
    return problems


def check_dataset_paths(cfg, loaders=('train_dataloader',)) -> None:
    """Raise :class:`ConfigPathError` listing every missing dataset path of ``loaders``."""
    problems = dataset_path_problems(cfg, loaders)
    if problems:
        raise ConfigPathError('\n'.join(problems))


_PREFIX = re.compile(r'class `[^`]+` in [\w./\\-]+(?:\.py)?: ')


def concise_build_error(exc: BaseException) -> str:
    """``ExcType: message`` without the registry's nested ``class `X` in y.py:`` prefixes."""
    msg = exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], str) else str(exc)
    msg = _PREFIX.sub('', msg)
    return f'{type(exc).__name__}: {msg}'
