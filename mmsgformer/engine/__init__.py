"""Training-time machinery: hooks and the CPU model wrapper that configs name.

``import mmsgformer`` imports this package, which registers (see :mod:`mmsgformer.registry`):

* :class:`~mmsgformer.engine.hooks.AtomicCheckpointHook` (``mmsgformer.AtomicCheckpointHook``) and
  :class:`~mmsgformer.engine.hooks.DivergenceGuardHook` (``mmsgformer.DivergenceGuardHook``);
* :class:`~mmsgformer.engine.dist.CPUDistributedDataParallel`, the model wrapper for distributed
  training and testing on machines without CUDA (gloo), with MMEngine 0.10.x.
"""
from .dist import (CPUDistributedDataParallel, destroy_cpu_dist, init_cpu_dist,
                   prepare_cfg_for_cpu_dist, setup_distributed)
from .hooks import AtomicCheckpointHook, DivergenceGuardHook

__all__ = [
    'AtomicCheckpointHook', 'CPUDistributedDataParallel', 'DivergenceGuardHook',
    'destroy_cpu_dist', 'init_cpu_dist', 'prepare_cfg_for_cpu_dist', 'setup_distributed'
]
