"""Training and testing machinery.

* :mod:`~mmsgformer.engine.runner` - what ``tools/train.py`` and ``tools/test.py`` do:
  :func:`~mmsgformer.engine.runner.train`, :func:`~mmsgformer.engine.runner.test` with their
  options, on MMEngine's Runner;
* :mod:`~mmsgformer.engine.preflight` - dataset paths checked before anything is built, concise
  build errors;
* :mod:`~mmsgformer.engine.hooks` and :mod:`~mmsgformer.engine.reliability` - crash-safe
  checkpoints, exact resume, the divergence guard;
* :mod:`~mmsgformer.engine.dist` - distributed training and testing without CUDA.

``import mmsgformer`` imports this package (not the runner), which registers (see
:mod:`mmsgformer.registry`):

* :class:`~mmsgformer.engine.hooks.AtomicCheckpointHook` (``mmsgformer.AtomicCheckpointHook``) and
  :class:`~mmsgformer.engine.hooks.DivergenceGuardHook` (``mmsgformer.DivergenceGuardHook``);
* :class:`~mmsgformer.engine.dist.CPUDistributedDataParallel`, the model wrapper for distributed
  training and testing on machines without CUDA (gloo), with MMEngine 0.10.x.
"""

from .dist import (
    CPUDistributedDataParallel,
    destroy_cpu_dist,
    init_cpu_dist,
    prepare_cfg_for_cpu_dist,
    setup_distributed,
)
from .hooks import AtomicCheckpointHook, DivergenceGuardHook

__all__ = [
    'AtomicCheckpointHook',
    'CPUDistributedDataParallel',
    'DivergenceGuardHook',
    'destroy_cpu_dist',
    'init_cpu_dist',
    'prepare_cfg_for_cpu_dist',
    'setup_distributed',
]
