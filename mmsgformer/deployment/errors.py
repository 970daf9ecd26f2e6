"""The error of ONNX export and of running an exported model."""


class ExportError(RuntimeError):
    """An ONNX model cannot be exported or run as asked; the message says how to fix it."""
