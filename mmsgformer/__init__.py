"""mmsgformer: SG-Former (Self-guided Transformer, ICCV 2023) for OpenMMLab.

Importing the package registers every class that a config of ours names (the policy is in
:mod:`mmsgformer.registry`): the backbone (:mod:`mmsgformer.models`) and the hooks and model
wrapper (:mod:`mmsgformer.engine`). It imports neither mmdet, mmseg nor mmpretrain.
"""
from . import engine  # noqa: F401  (registers the hooks and the CPU model wrapper)
from .models import SGFormer  # noqa: F401  (registers the backbone)

__version__ = '0.1.0'
__all__ = ['SGFormer', '__version__']
