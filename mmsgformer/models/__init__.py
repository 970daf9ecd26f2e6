"""Models of mmsgformer."""

from .attention import (
    GlobalAttention,
    HybridScaleAttention,
    SignificanceGuidedAttention,
    TokenReallocation,
)
from .official_keys import convert_official_state_dict
from .pretrained import CheckpointMismatchError, load_pretrained, load_weights
from .sgformer import SGFormer

__all__ = [
    'SGFormer',
    'HybridScaleAttention',
    'SignificanceGuidedAttention',
    'GlobalAttention',
    'TokenReallocation',
    'convert_official_state_dict',
    'load_pretrained',
    'load_weights',
    'CheckpointMismatchError',
]
