"""ONNX deployment: export (:mod:`.export`), the graph's preprocessing (:mod:`.preprocess`)
and models run by ONNX Runtime (:mod:`.runtime`).

See ``docs/deployment.md`` for the file contract.
"""
from .errors import ExportError
from .preprocess import Preprocess

__all__ = ['ExportError', 'Preprocess']
