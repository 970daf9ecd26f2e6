"""Utilities of mmsgformer: safe checkpoint loading (:mod:`.checkpoint`) and torch-version
fallbacks (:mod:`.compat`)."""
from .checkpoint import (CheckpointDownloadError, CheckpointError, CorruptCheckpointError,
                         UnsafeCheckpointError, download_checkpoint, extract_state_dict, load_checkpoint_file,
                         register_safe_globals, safe_globals)

__all__ = ['load_checkpoint_file', 'download_checkpoint', 'extract_state_dict',
           'register_safe_globals', 'safe_globals', 'UnsafeCheckpointError',
           'CorruptCheckpointError', 'CheckpointDownloadError', 'CheckpointError']
