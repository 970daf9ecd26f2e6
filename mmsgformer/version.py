"""The version of mmsgformer, in one place: ``pyproject.toml`` reads it when the package is
built and ``mmsgformer.__version__`` re-exports it."""

__version__ = '0.1.0'
