"""mmsgformer: SG-Former (Self-guided Transformer, ICCV 2023) for OpenMMLab.

Importing the package registers the backbone with MMEngine (see :mod:`mmsgformer.registry`).
"""
from .models import SGFormer  # noqa: F401  (registers the backbone)

__version__ = '0.1.0'
__all__ = ['SGFormer', '__version__']
