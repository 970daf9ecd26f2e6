"""Each released config in both forms: the text config in ``configs/`` and its pure-Python twin
in ``mmsgformer/configs/`` (:data:`mmsgformer.configs.TEXT_CONFIGS`) give the same config, so
no value can change in one form and not in the other."""

import os
import os.path as osp

import pytest
from conftest import HELPER_VARIABLES, REPO, flatten_config
from mmengine.config import Config

from mmsgformer.configs import TEXT_CONFIGS


def _plain(value, scope: str):
    """The config value with tuples as lists (the two forms write sequences differently) and
    without the ``_scope_`` that inheriting ``mmdet::`` (or ``mmseg::``, ...) files adds where it
    is the config's ``default_scope`` (it then picks the registry that scope picks anyway)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v, scope) for v in value]
    if isinstance(value, dict):
        return {
            k: _plain(v, scope) for k, v in value.items() if not (k == '_scope_' and v == scope)
        }
    return value


def _read(path: str) -> dict:
    cfg = Config.fromfile(path).to_dict()
    return _plain(cfg, cfg.get('default_scope'))


@pytest.mark.parametrize('name', sorted(TEXT_CONFIGS))
def test_text_and_pure_python_forms_agree(name):
    text = _read(osp.join(REPO, 'configs', TEXT_CONFIGS[name]))
    pure = _read(osp.join(REPO, 'mmsgformer', 'configs', *name.split('.')) + '.py')
    assert set(text) - HELPER_VARIABLES == set(pure) - HELPER_VARIABLES
    flat_text, flat_pure = flatten_config(text), flatten_config(pure)
    differing = {
        key: (flat_text.get(key), flat_pure.get(key))
        for key in set(flat_text) | set(flat_pure)
        if key.split('.')[0].split('[')[0] not in HELPER_VARIABLES
        and flat_text.get(key, KeyError) != flat_pure.get(key, KeyError)
    }
    assert not differing, f'{name}: (text, pure-Python) differ at {differing}'


def test_every_config_has_both_forms():
    """Every leaf text config is a twin in :data:`TEXT_CONFIGS`, and every pure-Python leaf
    config has one."""
    text_root = osp.join(REPO, 'configs')
    leaves = {
        osp.relpath(osp.join(folder, f), text_root)
        for folder, _, files in os.walk(text_root)
        if '_base_' not in folder
        for f in files
        if f.endswith('.py')
    }
    assert leaves == set(TEXT_CONFIGS.values())
    pure_root = osp.join(REPO, 'mmsgformer', 'configs')
    pure = {
        osp.relpath(osp.join(folder, f), pure_root)[: -len('.py')].replace(os.sep, '.')
        for folder, _, files in os.walk(pure_root)
        if '_base_' not in folder
        for f in files
        if f.endswith('.py') and f != '__init__.py'
    }
    assert pure == set(TEXT_CONFIGS)
