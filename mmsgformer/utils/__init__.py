"""Utilities of mmsgformer."""
from .checkpoint import (CorruptCheckpointError, UnsafeCheckpointError, extract_state_dict,
                         load_checkpoint_file, register_safe_globals, safe_globals)

__all__ = ['load_checkpoint_file', 'extract_state_dict', 'register_safe_globals', 'safe_globals',
           'UnsafeCheckpointError', 'CorruptCheckpointError']
