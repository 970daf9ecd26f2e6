"""Datasets of mmsgformer: small synthetic ones for the demos and tests (no download)."""
from .synthetic import (ADE_SHAPES_CLASSES, ADE_SHAPES_PALETTE, COCO_SHAPES_CLASSES,
                        generate_ade_shapes, generate_coco_shapes)

__all__ = ['generate_coco_shapes', 'generate_ade_shapes', 'COCO_SHAPES_CLASSES',
           'ADE_SHAPES_CLASSES', 'ADE_SHAPES_PALETTE']
