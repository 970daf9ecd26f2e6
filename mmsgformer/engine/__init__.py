"""Runtime helpers used by ``tools/train.py`` and ``tools/test.py``.

Not imported by ``mmsgformer/__init__.py`` on purpose: the tools import it explicitly, and
model code never needs it. See :mod:`mmsgformer.engine.dist` for why it exists (distributed
training and testing on machines without CUDA, with MMEngine 0.10.x).
"""
from .dist import (CPUDistributedDataParallel, destroy_cpu_dist, init_cpu_dist,
                   prepare_cfg_for_cpu_dist, setup_distributed)

__all__ = [
    'CPUDistributedDataParallel', 'destroy_cpu_dist', 'init_cpu_dist', 'prepare_cfg_for_cpu_dist',
    'setup_distributed'
]
