"""SGFormer builds from configs of every OpenMMLab task scope, scoped or plain type, and
``import mmsgformer`` registers every class a config names."""

import subprocess
import sys

import pytest
import torch
from conftest import TINY_ARCH
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope

TASK_REGISTRIES = {
    'mmdet': 'mmdet.registry',
    'mmseg': 'mmseg.registry',
    'mmpretrain': 'mmpretrain.registry',
}


def build_in_scope(scope, type_name):
    cfg = Config(
        dict(
            default_scope=scope,
            custom_imports=dict(imports=['mmsgformer'], allow_failed_imports=False),
            backbone=dict(type=type_name, arch=TINY_ARCH, out_indices=(1, 3)),
        )
    )
    with DefaultScope.overwrite_default_scope(scope):
        init_default_scope(scope)
        models = __import__(TASK_REGISTRIES[scope], fromlist=['MODELS']).MODELS
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


def test_registration_policy_reaches_every_task_scope():
    """What :mod:`mmsgformer.registry` promises: a class in our registry is found as
    ``mmsgformer.X`` from every task scope (our registries are children of MMEngine's root), one
    registered with ``register_in_root`` also by its plain name; only our registries are
    accepted."""
    from mmengine.registry import Registry

    from mmsgformer.registry import HOOKS, MODELS, register_in_root

    @MODELS.register_module()
    class ScopedOnlyProbe(torch.nn.Module):
        pass

    @register_in_root(HOOKS)
    class RootProbeHook:
        pass

    for scope, module in TASK_REGISTRIES.items():
        registry = __import__(module, fromlist=['MODELS'])
        with DefaultScope.overwrite_default_scope(scope):
            assert registry.MODELS.get('mmsgformer.ScopedOnlyProbe') is ScopedOnlyProbe, scope
            assert registry.MODELS.get('ScopedOnlyProbe') is None, scope
            assert registry.HOOKS.get('RootProbeHook') is RootProbeHook, scope
            assert registry.HOOKS.get('mmsgformer.RootProbeHook') is RootProbeHook, scope
    with pytest.raises(ValueError, match="not one of mmsgformer's registries"):
        register_in_root(Registry('model'))


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
        'assert not heavy, heavy\n'
    )
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
