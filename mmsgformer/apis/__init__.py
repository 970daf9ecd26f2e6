"""What the command lines in ``tools/`` do, as functions (the tools only parse arguments).

* :mod:`~mmsgformer.apis.config` - :func:`load_config` (with ``--cfg-options``),
  :func:`task_of`, :func:`disable_pretrained`, :func:`task_registries`;
* :mod:`~mmsgformer.apis.inference` - :func:`build_model`, :func:`init_model` (config +
  checkpoint), :func:`load_weights`;
* :mod:`~mmsgformer.apis.runner` - training and testing with MMEngine's Runner
  (``tools/train.py``, ``tools/test.py``);
* :mod:`~mmsgformer.apis.preflight` - dataset paths checked before anything is built, concise
  build errors;
* :mod:`~mmsgformer.apis.convert` - official SG-Former releases to checkpoints of our configs
  (``tools/model_converters/sgformer2mm.py``).
"""
from .config import TASK_SCOPES, disable_pretrained, load_config, task_of, task_registries
from .inference import build_model, init_model, load_weights
from .preflight import ConfigPathError, check_dataset_paths

__all__ = ['TASK_SCOPES', 'load_config', 'task_of', 'disable_pretrained', 'task_registries',
           'build_model', 'init_model', 'load_weights', 'ConfigPathError',
           'check_dataset_paths']
