"""Models of mmsgformer."""
from .attention import (GlobalAttention, HybridScaleAttention, SignificanceGuidedAttention,
                        TokenReallocation)
from .checkpoint import convert_official_state_dict, load_pretrained
from .sgformer import SGFormer

__all__ = ['SGFormer', 'HybridScaleAttention', 'SignificanceGuidedAttention', 'GlobalAttention',
           'TokenReallocation', 'convert_official_state_dict', 'load_pretrained']
