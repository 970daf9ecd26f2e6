"""Registries of mmsgformer.

Policy (the same for models, hooks and model wrappers): each kind has a child registry of
MMEngine's root registry with the scope ``mmsgformer`` (as mmpretrain does), and every class of
ours is registered there *and* in MMEngine's root registry (:func:`register_in_root`).

* The scoped name (``type='mmsgformer.SGFormer'``, ``'mmsgformer.AtomicCheckpointHook'``) is
  unambiguous whatever the config's ``default_scope`` (mmdet, mmseg or mmpretrain); our configs
  use it.
* The plain name (``type='SGFormer'``) resolves from any scope too, because every task registry
  has the root as its parent (unless that scope registers a class of the same name one day).

Importing :mod:`mmsgformer` (what ``custom_imports=dict(imports=['mmsgformer'])`` does) registers
every class that a config of ours names.
"""

from typing import TypeVar

from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry(
    'model', parent=MMENGINE_MODELS, scope='mmsgformer', locations=['mmsgformer.models']
)
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmsgformer', locations=['mmsgformer.engine'])
MODEL_WRAPPERS = Registry(
    'model_wrapper',
    parent=MMENGINE_MODEL_WRAPPERS,
    scope='mmsgformer',
    locations=['mmsgformer.engine'],
)

_ROOTS = {
    id(MODELS): MMENGINE_MODELS,
    id(HOOKS): MMENGINE_HOOKS,
    id(MODEL_WRAPPERS): MMENGINE_MODEL_WRAPPERS,
}

T = TypeVar('T', bound=type)


def register_in_root(registry: Registry):
    """Class decorator: registers the class in ``registry`` (one of ours) and in its MMEngine root.

    Args:
        registry: :data:`MODELS`, :data:`HOOKS` or :data:`MODEL_WRAPPERS`.
    """
    if id(registry) not in _ROOTS:
        raise ValueError(f"{registry!r} is not one of mmsgformer's registries")

    def register(cls: T) -> T:
        registry.register_module(module=cls)
        _ROOTS[id(registry)].register_module(module=cls)
        return cls

    return register


__all__ = ['MODELS', 'HOOKS', 'MODEL_WRAPPERS', 'register_in_root']
