"""Utilities of mmsgformer.

* :mod:`~mmsgformer.utils.safe_loading` - checkpoints read without running pickled code,
  downloads, the weights of a checkpoint and their finite-values check;
* :mod:`~mmsgformer.utils.config` - configs read with ``--cfg-options``, their task and scope,
  pretrained loading switched off;
* :mod:`~mmsgformer.utils.compat` - fallbacks for the torch versions we support.
"""

from .safe_loading import (
    CheckpointDownloadError,
    CheckpointError,
    CorruptCheckpointError,
    NonFiniteCheckpointError,
    UnsafeCheckpointError,
    check_finite_checkpoint,
    download_checkpoint,
    extract_state_dict,
    load_checkpoint_file,
    read_checkpoint,
    register_safe_globals,
    safe_globals,
)

__all__ = [
    'load_checkpoint_file',
    'read_checkpoint',
    'download_checkpoint',
    'extract_state_dict',
    'check_finite_checkpoint',
    'register_safe_globals',
    'safe_globals',
    'CheckpointError',
    'UnsafeCheckpointError',
    'CorruptCheckpointError',
    'CheckpointDownloadError',
    'NonFiniteCheckpointError',
]
