"""Analysis of models: MAC counting, the backbones SG-Former is compared with, the benchmark.

* :mod:`~mmsgformer.analysis.complexity` - :func:`count_macs` (multiply-accumulates, the papers'
  "FLOPs");
* :mod:`~mmsgformer.analysis.baselines` - :func:`build_backbone` of named backbones (SG-Former,
  Swin, PVTv2), :data:`BASELINES`, :data:`DEFAULT_MODELS`, and whole models from configs;
* :mod:`~mmsgformer.analysis.flops` - parameters and MACs of configs and backbones;
* :mod:`~mmsgformer.analysis.benchmark` - throughput, peak memory and MAC rate side by side,
  and the summary table.

The command lines are ``tools/analysis_tools/get_flops.py`` and ``benchmark.py``.
"""

from .baselines import BASELINES, DEFAULT_MODELS, build_backbone
from .complexity import count_macs

__all__ = ['count_macs', 'BASELINES', 'DEFAULT_MODELS', 'build_backbone']
