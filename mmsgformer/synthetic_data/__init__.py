"""Generators of the demos' datasets: small, deterministic coloured shapes in COCO and ADE20K
format (no download; the tests use them too). See :mod:`~mmsgformer.synthetic_data.shapes`."""

from .shapes import (
    ADE_SHAPES_CLASSES,
    ADE_SHAPES_PALETTE,
    COCO_SHAPES_CLASSES,
    generate_ade_shapes,
    generate_coco_shapes,
)

__all__ = [
    'generate_coco_shapes',
    'generate_ade_shapes',
    'COCO_SHAPES_CLASSES',
    'ADE_SHAPES_CLASSES',
    'ADE_SHAPES_PALETTE',
]
