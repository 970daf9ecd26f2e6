"""ONNX deployment: one file per model, with dynamic batch, height and width.

* :mod:`~mmsgformer.deployment.export` - :func:`export_onnx`, what
  ``tools/deployment/export_onnx.py`` does;
* :mod:`~mmsgformer.deployment.preprocess` - :class:`Preprocess`, the data preprocessor's
  normalisation, channel swap and padding inside the graph;
* :mod:`~mmsgformer.deployment.wrappers` - the classification and segmentation export modules;
  :mod:`~mmsgformer.deployment.detection` - the detection one;
* :mod:`~mmsgformer.deployment.runtime` - :class:`OnnxRuntimeModel`, an exported file run by
  ONNX Runtime in MMEngine's test loop (``tools/test.py CONFIG FILE.onnx``) and the demos.

The file contract is in ``docs/deployment.md``.
"""

from .errors import ExportError
from .export import export_onnx
from .preprocess import Preprocess
from .runtime import OnnxRuntimeModel, init_onnx_model

__all__ = ['ExportError', 'Preprocess', 'export_onnx', 'OnnxRuntimeModel', 'init_onnx_model']
