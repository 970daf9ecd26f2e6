"""Small layers and helpers shared by the SG-Former modules (sizes may be symbolic; what
depends on a size is in :mod:`mmsgformer.models.sizes`)."""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .sizes import Size, known_at_most, known_zero, pad_tokens_front


def dropout(rate: float) -> nn.Module:
    """``nn.Dropout(rate)``, or ``nn.Identity`` for rate 0 (one call less per use in eval)."""
    return nn.Dropout(rate) if rate > 0 else nn.Identity()


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch of a sample with probability ``rate``.

    Args:
        rate: Drop probability during training.
    """

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0:
            return x
        keep = 1 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


def residual_add(x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """``x + branch``; without autograd computed in place into ``branch`` (a block's fresh
    output) when that keeps the result's dtype, which saves allocating a token-sized tensor."""
    if torch.is_grad_enabled() or branch.dtype != torch.result_type(x, branch):
        return x + branch
    return branch.add_(x)


def tokens_to_map(x: torch.Tensor, hw_shape: Tuple[Size, Size]) -> torch.Tensor:
    """``(B, H*W, C)`` tokens as an NCHW map (a channels-last view, no copy)."""
    return x.unflatten(1, hw_shape).permute(0, 3, 1, 2)


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """NCHW map as ``(B, H*W, C)`` tokens (free for channels-last maps)."""
    return x.permute(0, 2, 3, 1).flatten(1, 2)


def group_tokens(tokens: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, n, C)`` tokens as ``(B, ceil(n / size), size, C)``, zero-padded at the front."""
    return pad_tokens_front(tokens, size).unflatten(1, (-1, size))


def merge_groups(
    ordered: torch.Tensor,
    group_sizes: Sequence[Size],
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
) -> torch.Tensor:
    """Merges consecutive tokens into keys, group by group.

    Group ``g`` (the next ``group_sizes[g]`` tokens of ``ordered``) is zero-padded at its front
    to a multiple of ``size = weights[g].shape[1]`` and every ``size`` tokens become one key
    ``weights[g] @ tokens + biases[g]`` (see
    :class:`~mmsgformer.models.attention.TokenReallocation`).

    Args:
        ordered: Tokens ``(B, N, C)`` in group order.
        group_sizes: Tokens per group, summing to ``N``.
        weights: ``(1, size)`` merge weights per group.
        biases: ``(1,)`` merge biases per group.

    Returns:
        The keys ``(B, M, C)`` of all groups, in order.
    """
    keys = []
    for tokens, weight, bias in zip(ordered.split(list(group_sizes), dim=1), weights, biases):
        if known_zero(tokens.shape[1]):
            continue
        grouped = group_tokens(tokens, weight.shape[1])  # (B, M_g, size, C)
        merged = torch.matmul(weight.to(tokens.dtype), grouped).squeeze(2)
        keys.append(merged + bias.to(tokens.dtype))
    return torch.cat(keys, dim=1)


def group_norm_by_reduction(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float
) -> torch.Tensor:
    """``F.group_norm(x, 1, weight, bias, eps)`` from a general reduction, in float32.

    The statistics over ``(C, H, W)`` of each sample do not depend on the memory layout, so
    channels-last maps need no copy. Returns ``x``'s dtype.
    """
    x32 = x.float()
    var, mean = torch.var_mean(x32, dim=(1, 2, 3), keepdim=True, correction=0)
    scale = weight.float().view(1, -1, 1, 1) * torch.rsqrt(var + eps)
    shift = bias.float().view(1, -1, 1, 1) - mean * scale
    return torch.addcmul(shift, x32, scale).to(x.dtype)


class SingleGroupNorm(nn.GroupNorm):
    """``GroupNorm(1, C)``: normalises each sample over channels and space.

    PyTorch's CUDA kernel reduces a (sample, group) row with one thread block, which is slow for
    one group and a small batch of large maps; there the statistics come from a general
    reduction (:func:`group_norm_by_reduction`, the same math). The native kernel serves larger
    batches and the CPU (see docs/benchmark.md).

    Args:
        num_channels: Channels.
    """

    REDUCTION_MAX_BATCH = 4

    def __init__(self, num_channels: int) -> None:
        super().__init__(1, num_channels)

    def uses_native_kernel(self, x: torch.Tensor) -> bool:
        """Whether ``x`` goes through PyTorch's kernel (else :func:`group_norm_by_reduction`)."""
        return x.device.type != 'cuda' or not known_at_most(x.shape[0], self.REDUCTION_MAX_BATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.uses_native_kernel(x):
            return super().forward(x)
        return group_norm_by_reduction(x, self.weight, self.bias, self.eps)


class ConvNorm(nn.Module):
    """Bias-free convolution followed by ``GroupNorm(1, C)`` (the official ``Conv2d_BN``).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Kernel size; padding keeps the size for stride 1.
        stride: Stride.
        groups: Convolution groups.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            kernel_size // 2,
            groups=groups,
            bias=False,
        )
        self.norm = SingleGroupNorm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.project(x))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution alone."""
        if self.is_pointwise():
            return pointwise_conv(x, self.conv.weight)
        return self.conv(x)

    def is_pointwise(self) -> bool:
        return self.conv.kernel_size == (1, 1) and self.conv.groups == 1


def pointwise_conv(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A bias-free 1x1 convolution of an NCHW map as one matrix product over channels (on our
    channels-last maps without the layout conversion a convolution kernel would make)."""
    return F.linear(x.permute(0, 2, 3, 1), weight.flatten(1)).permute(0, 3, 1, 2)


def sincos_pos_embed(dims: int, grid: int) -> torch.Tensor:
    """Fixed 2D sine-cosine position embedding ``(grid * grid, dims)`` (MAE's, the official init).

    Half of the channels encode the column, half the row; each half is [sin | cos] of the
    position times ``1 / 10000^(2i / (dims / 2))``.
    """
    if dims % 4:
        raise ValueError(f'sin-cos position embedding needs dims divisible by 4, got {dims}')
    freqs = 1.0 / 10000 ** (np.arange(dims // 4, dtype=np.float64) / (dims / 4.0))
    rows, cols = np.meshgrid(
        np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64), indexing='ij'
    )
    parts = []
    for coord in (cols, rows):
        angles = np.outer(coord.reshape(-1), freqs)
        parts += [np.sin(angles), np.cos(angles)]
    return torch.from_numpy(np.concatenate(parts, axis=1)).float()
