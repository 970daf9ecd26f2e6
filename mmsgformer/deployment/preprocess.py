"""The data preprocessor's work inside an exported graph.

Every exported model receives the image as the config's data preprocessor does (``float32``,
0-255, ``(N, 3, H, W)`` in the pipeline's channel order) and does the rest itself with
:class:`Preprocess`: the channel swap, the normalisation and the padding to a size divisor.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ExportError


def _channel_swap(preprocessor: nn.Module) -> bool:
    """Whether the preprocessor swaps BGR and RGB (the flag is spelled per library)."""
    return any(
        bool(getattr(preprocessor, flag, False))
        for flag in ('_channel_conversion', 'channel_conversion', 'to_rgb')
    )


def _size_divisor(preprocessor: nn.Module) -> int:
    """The size divisor the preprocessor pads test images to (1: no padding).

    mmseg pads test images only through ``test_cfg``; a fixed test ``size`` is not supported.
    """
    test_cfg = getattr(preprocessor, 'test_cfg', None) or {}
    if test_cfg.get('size') is not None:
        raise ExportError(
            f'the data preprocessor pads test images to a fixed size '
            f'{test_cfg["size"]}; an exported model takes any size: set '
            f'test_cfg=dict(size_divisor=...) in the data preprocessor instead'
        )
    divisor = test_cfg.get('size_divisor') or getattr(preprocessor, 'pad_size_divisor', 1)
    return int(divisor or 1)


def _pad_value(preprocessor: nn.Module) -> float:
    """The value padded pixels take after normalisation."""
    return float(getattr(preprocessor, 'pad_value', getattr(preprocessor, 'pad_val', 0)))


class Preprocess(nn.Module):
    """Channel swap, normalisation and size-divisor padding of a model's data preprocessor.

    The order is the preprocessor's: swap, ``(x - mean) / std``, then padding at the bottom and
    right with ``pad_value`` (a normalised value).

    Args:
        preprocessor: The model's ``data_preprocessor`` (MMEngine ``ImgDataPreprocessor``,
            mmdet ``DetDataPreprocessor``, mmseg ``SegDataPreProcessor`` or mmpretrain
            ``ClsDataPreprocessor``).
    """

    def __init__(self, preprocessor: nn.Module) -> None:
        super().__init__()
        self.swap = _channel_swap(preprocessor)
        self.size_divisor = _size_divisor(preprocessor)
        self.pad_value = _pad_value(preprocessor)
        normalize = getattr(preprocessor, '_enable_normalize', False)
        mean = preprocessor.mean.detach().float() if normalize else torch.zeros(3, 1, 1)
        std = preprocessor.std.detach().float() if normalize else torch.ones(3, 1, 1)
        self.register_buffer('mean', mean.reshape(1, -1, 1, 1).clone())
        self.register_buffer('std', std.reshape(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """Normalises and pads a batch.

        Args:
            x: ``(N, 3, H, W)`` float images, 0-255, in the pipeline's channel order.

        Returns:
            The normalised batch, padded to a multiple of the size divisor, and the ``(H, W)``
            of ``x`` (to crop outputs back to).
        """
        height, width = x.shape[-2], x.shape[-1]
        if self.swap:
            x = x.flip(1)
        x = (x - self.mean) / self.std
        if self.size_divisor > 1:
            pad_h = (self.size_divisor - height % self.size_divisor) % self.size_divisor
            pad_w = (self.size_divisor - width % self.size_divisor) % self.size_divisor
            x = F.pad(x, (0, pad_w, 0, pad_h), value=self.pad_value)
        return x, (height, width)

    def raw_pad_values(self) -> List[float]:
        """Per input channel, the 0-255 value that normalises to ``pad_value``.

        Images of a batch padded to a common size with these values (before the graph) give
        the batch the preprocessor pads after normalising.
        """
        raw = self.mean.flatten() + self.pad_value * self.std.flatten()
        return (raw.flip(0) if self.swap else raw).tolist()
