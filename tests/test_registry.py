"""SGFormer builds from configs of every OpenMMLab task scope, scoped or plain type, and
``import mmsgformer`` registers every class a config names."""
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope

from conftest import TINY_ARCH


def build_in_scope(scope, type_name):
    cfg = Config(dict(
        default_scope=scope,
        custom_imports=dict(imports=['mmsgformer'], allow_failed_imports=False),
        backbone=dict(type=type_name, arch=TINY_ARCH, out_indices=(1, 3))))
    with DefaultScope.overwrite_default_scope(scope):
        init_default_scope(scope)
        registry = {
            'mmdet': 'mmdet.registry', 'mmseg': 'mmseg.registry',
            'mmpretrain': 'mmpretrain.registry'}[scope]
        models = __import__(registry, fromlist=['MODELS']).MODELS
        return models.build(cfg.backbone)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmpretrain'])
@pytest.mark.parametrize('type_name', ['mmsgformer.SGFormer', 'SGFormer'])
def test_build_from_task_scopes(scope, type_name):
    from mmsgformer.models import SGFormer
    backbone = build_in_scope(scope, type_name)
    assert isinstance(backbone, SGFormer)
    with torch.no_grad():
        outs = backbone.eval()(torch.randn(1, 3, 64, 96))
    assert [o.shape[1] for o in outs] == [64, 256]


def test_child_registry_scope():
    from mmsgformer.registry import MODELS
    assert MODELS.scope == 'mmsgformer'
    assert MODELS.get('SGFormer') is not None


def test_import_registers_every_configured_class_in_our_scope_and_root():
    """A fresh ``import mmsgformer`` (what ``custom_imports`` does) registers every class a
    config names, under the scoped and the plain name, without importing a task library."""
    code = (
        'import sys\n'
        'import mmengine.registry as root\n'
        'import mmsgformer\n'
        'from mmsgformer import registry as ours\n'
        'names = (("HOOKS", "AtomicCheckpointHook"), ("HOOKS", "DivergenceGuardHook"),\n'
        '         ("MODELS", "SGFormer"),\n'
        '         ("MODEL_WRAPPERS", "CPUDistributedDataParallel"))\n'
        # plain names first: a scoped lookup would import the registry's locations lazily
        'plain = {name: getattr(root, kind).get(name) for kind, name in names}\n'
        'for kind, name in names:\n'
        '    cls = plain[name]\n'
        '    assert cls is not None and cls.__name__ == name, (kind, name, cls)\n'
        '    assert getattr(ours, kind).get(name) is cls, (kind, name)\n'
        '    assert getattr(root, kind).get("mmsgformer." + name) is cls, (kind, name)\n'
        'heavy = [m for m in ("mmdet", "mmseg", "mmpretrain") if m in sys.modules]\n'
        'assert not heavy, heavy\n')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
