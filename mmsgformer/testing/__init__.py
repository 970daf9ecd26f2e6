"""Checks of mmsgformer against the official SG-Former implementation (see :mod:`.reference`)."""

from .reference import (
    REFERENCE_ARCH,
    classify,
    load_reference,
    make_reference,
    measure_rounding,
    ours_from_official,
    run_ours,
)

__all__ = [
    'REFERENCE_ARCH',
    'classify',
    'load_reference',
    'make_reference',
    'measure_rounding',
    'ours_from_official',
    'run_ours',
]
