"""Export modules of classification and segmentation: the file contract as ``forward``.

Each module takes the built model (weights loaded, eval mode) and maps the contract's
``input`` (``(N, 3, H, W)`` float32, 0-255, see :class:`~.preprocess.Preprocess`) to its
outputs through the model's own backbone, neck and head modules:

* :class:`ClassifierExport` - ``scores`` ``(N, num_classes)``, softmax probabilities;
* :class:`SegmentorExport` - ``seg_map`` ``(N, H, W)`` int64, UperNet whole-image inference.
"""

from __future__ import annotations

from typing import Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ExportError
from .preprocess import Preprocess


def adaptive_pool_matrix(length: int, bins: int, like: torch.Tensor) -> torch.Tensor:
    """``(bins, length)`` averaging weights of adaptive average pooling along one axis.

    Bin ``i`` averages positions ``floor(i * length / bins)`` to ``ceil((i + 1) * length /
    bins)`` (exclusive), as ``nn.AdaptiveAvgPool2d`` does; built from ``torch.arange`` so that
    ``length`` may be symbolic in an exported graph.

    Args:
        length: Size of the pooled axis.
        bins: Number of output bins.
        like: A tensor whose dtype and device the weights take.
    """
    index = torch.arange(bins, device=like.device).unsqueeze(1)
    position = torch.arange(length, device=like.device).unsqueeze(0)
    start = torch.div(index * length, bins, rounding_mode='floor')
    end = torch.div((index + 1) * length + bins - 1, bins, rounding_mode='floor')
    inside = (position >= start) & (position < end)
    return inside.to(like.dtype) / (end - start).to(like.dtype)


class MatrixAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` as two products with pooling matrices (exports at any size).

    Args:
        output_size: The ``(height, width)`` or side of the output, as the replaced module's.
    """

    def __init__(self, output_size: Union[int, Tuple[int, int]]) -> None:
        super().__init__()
        sizes = (output_size, output_size) if isinstance(output_size, int) else output_size
        if any(size is None for size in sizes):
            raise ExportError(
                f'adaptive pooling to {output_size} (None keeps the input size) '
                f'is not supported for export; give both output sides'
            )
        self.output_size = tuple(int(size) for size in sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pools ``(N, C, H, W)`` to ``(N, C, *output_size)``."""
        rows = adaptive_pool_matrix(x.shape[-2], self.output_size[0], x)
        cols = adaptive_pool_matrix(x.shape[-1], self.output_size[1], x)
        return torch.einsum('ih,nchw,jw->ncij', rows, x, cols)


def replace_adaptive_pooling(module: nn.Module) -> int:
    """Replaces every ``nn.AdaptiveAvgPool2d`` below ``module`` by
    :class:`MatrixAdaptiveAvgPool2d` (in place, same results).

    Returns:
        The number of modules replaced.
    """
    targets = [
        (name, child)
        for name, child in module.named_modules()
        if isinstance(child, nn.AdaptiveAvgPool2d)
    ]
    for name, child in targets:
        parent_name, _, attribute = name.rpartition('.')
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attribute, MatrixAdaptiveAvgPool2d(child.output_size))
    return len(targets)


class ClassifierExport(nn.Module):
    """An mmpretrain ``ImageClassifier`` as ``input -> scores`` (softmax probabilities).

    Args:
        classifier: The classifier (backbone, optional neck, ``head``).
    """

    output_names = ('scores',)

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.preprocess = Preprocess(classifier.data_preprocessor)
        self.classifier = classifier

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - the contract's name
        """``(N, 3, H, W)`` images to ``(N, num_classes)`` probabilities."""
        x, _ = self.preprocess(input)
        logits = self.classifier.head(self.classifier.extract_feat(x))
        return F.softmax(logits, dim=1)


class SegmentorExport(nn.Module):
    """An mmseg ``EncoderDecoder`` as ``input -> seg_map`` (whole-image inference).

    The decode head's logits are resized (bilinear, the head's ``align_corners``) to the
    padded input, cropped to the input and turned into classes (argmax; a one-channel head
    thresholds its sigmoid), as mmseg's ``predict`` does at the input size. The model's
    adaptive average pooling (UperNet's pyramid pooling) is replaced in place by
    :class:`MatrixAdaptiveAvgPool2d`.

    Args:
        segmentor: The segmentor (backbone, optional neck, ``decode_head``).
    """

    output_names = ('seg_map',)

    def __init__(self, segmentor: nn.Module) -> None:
        super().__init__()
        mode = (getattr(segmentor, 'test_cfg', None) or {}).get('mode', 'whole')
        if mode != 'whole':
            raise ExportError(
                f'the segmentor tests in {mode!r} mode; an exported model does '
                f'whole-image inference: set model.test_cfg.mode=whole'
            )
        replace_adaptive_pooling(segmentor)
        self.preprocess = Preprocess(segmentor.data_preprocessor)
        self.segmentor = segmentor

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - the contract's name
        """``(N, 3, H, W)`` images to ``(N, H, W)`` int64 classes."""
        from mmseg.models.utils import resize

        x, (height, width) = self.preprocess(input)
        head = self.segmentor.decode_head
        logits = head(self.segmentor.extract_feat(x))
        logits = resize(
            logits, size=x.shape[-2:], mode='bilinear', align_corners=head.align_corners
        )[..., :height, :width]
        if logits.shape[1] == 1:
            return (logits[:, 0].sigmoid() > head.threshold).long()
        return logits.argmax(dim=1)
