"""Registries of mmsgformer.

Design: ``MODELS`` is a child of MMEngine's root model registry, with the scope ``mmsgformer``
(as mmpretrain does). Configs of any OpenMMLab task can therefore name our modules with the
scoped type ``'mmsgformer.SGFormer'``, which is unambiguous whatever the config's
``default_scope`` (mmdet, mmseg or mmpretrain). The backbone is also registered in MMEngine's
root registry, which every task registry has as its parent, so the plain ``type='SGFormer'``
resolves from any scope too (unless that scope registers its own ``SGFormer`` one day, which is
why our configs use the scoped name).
"""
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmsgformer',
                  locations=['mmsgformer.models'])

__all__ = ['MODELS', 'MMENGINE_MODELS']
