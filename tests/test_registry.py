"""SGFormer builds from configs of every OpenMMLab task scope, scoped or plain type."""
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
