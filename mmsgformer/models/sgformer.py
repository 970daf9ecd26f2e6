"""SG-Former backbone (Ren et al., "SG-Former: Self-guided Transformer with Evolving Token
Reallocation", ICCV 2023) for OpenMMLab detection, segmentation and classification.

Layout: a convolutional stem (stride 4) and three convolutional patch-merging layers (stride 2)
start the four stages. In stages whose key-reduction ratio is above 1, blocks alternate between
hybrid-scale attention (even blocks; they compute a significance map) and significance-guided
attention (odd blocks; they reallocate keys by that map). The last stage uses global attention.
Every block is ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))`` with a depth-wise convolution in
the MLP; each stage ends with a LayerNorm whose output is the stage's feature map.

Any input size: the convolutions give stage sizes ``ceil(ceil(H / 2) / 2)`` then halve with ceil;
the position embedding (trained at ``pretrain_img_size / 4`` squared) is resized bicubically to
the stage-1 map; attention pads internally where windows and key reduction need it and crops
back (see :mod:`mmsgformer.models.attention`). At multiples of 224 the computation is exactly the
official one.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from ..registry import MODELS, register_in_root
from ..utils.compat import is_autocast_enabled, is_compiling
from .pretrained import load_pretrained, load_state_dict_pre_hook
from .attention import (REALLOCATION_SPECS, GlobalAttention, HybridScaleAttention,
                        SignificanceGuidedAttention, dropout, map_to_tokens, tokens_to_map)

MIN_INPUT_SIZE = 32


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


def group_norm_by_reduction(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                            eps: float) -> torch.Tensor:
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
    """``GroupNorm(1, C)`` (normalise each sample over channels and space), fast on CUDA.

    PyTorch's CUDA kernel reduces every (sample, group) row with one thread block, so with one
    group and a small batch a whole feature map is reduced by a couple of blocks. Measured on an
    H100 (float32): at 800x1333 with batch 2 the native kernel took 3.9 ms per call (46% of
    SG-Former-S's inference time), and computing the statistics with a general reduction
    (:func:`group_norm_by_reduction`, the same math) made the backbone 1.77x faster in inference
    and 1.16x in training; at 224x224 with batch 32 the native kernel was the faster one (the
    reduction path cost 20% in inference and 40% in training). So the reduction is used on CUDA
    for batches up to ``REDUCTION_MAX_BATCH`` (detection and segmentation sizes per GPU); the
    native kernel otherwise and always on the CPU, where it is faster.

    Args:
        num_channels: Channels.
    """

    REDUCTION_MAX_BATCH = 4

    def __init__(self, num_channels: int) -> None:
        super().__init__(1, num_channels)

    def uses_native_kernel(self, x: torch.Tensor) -> bool:
        """Whether ``x`` goes through PyTorch's kernel (else :func:`group_norm_by_reduction`)."""
        return x.device.type != 'cuda' or x.shape[0] > self.REDUCTION_MAX_BATCH

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.uses_native_kernel(x):
            return super().forward(x)
        return group_norm_by_reduction(x, self.weight, self.bias, self.eps)


class FiniteInputCheck:
    """Raises a clear error for images with NaN or infinite values, without stalling the GPU.

    Reading a CUDA result on the host waits for all queued GPU work. In training that wait, at
    the start of every forward, stops the host from launching the next step while the GPU still
    runs the previous backward; measured on an H200 (SG-Former-S, float32), removing the check
    raised the training throughput 1.2-1.4x at 224x224 batch 32 and at 512x1024 batch 1
    (nothing at 800x1333 batch 2). So in training on CUDA the result is copied to the host
    asynchronously and read at the next call, by when it is long computed: the error comes one
    step late and names the previous step (a NaN in the very last batch of a run is not
    reported). On the CPU and in eval mode the check is immediate.
    """

    DEFERRED_DEVICE_TYPES = ('cuda',)

    def __init__(self) -> None:
        self._pending: Optional[Tuple[torch.Tensor, Optional[torch.cuda.Event]]] = None

    def __call__(self, x: torch.Tensor, training: bool) -> None:
        if is_compiling():
            return
        self.resolve()
        if training and x.device.type in self.DEFERRED_DEVICE_TYPES:
            finite = torch.isfinite(x).all().to('cpu', non_blocking=True)
            event = None
            if x.device.type == 'cuda':
                event = torch.cuda.Event()
                event.record()
            self._pending = (finite, event)
        elif not torch.isfinite(x).all():
            raise ValueError('SGFormer input contains NaN or infinite values; check the data '
                             'pipeline and normalisation')

    def resolve(self) -> None:
        """Raises if the deferred check of the previous training step found a bad input."""
        if self._pending is None:
            return
        finite, event = self._pending
        self._pending = None
        if event is not None:
            event.synchronize()
        if not finite:
            raise ValueError('SGFormer input of the previous training step contained NaN or '
                             'infinite values (on CUDA this is checked one step late so as not '
                             'to stall the GPU); check the data pipeline and normalisation')

    def __deepcopy__(self, memo: dict) -> 'FiniteInputCheck':
        return FiniteInputCheck()  # copies (e.g. EMA models) start without a pending check

    def __getstate__(self) -> dict:
        return {'_pending': None}


class ConvNorm(nn.Module):
    """Bias-free convolution followed by ``GroupNorm(1, C)`` (the official ``Conv2d_BN``).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Kernel size; padding keeps the size for stride 1.
        stride: Stride.
        groups: Convolution groups.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1,
                 stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                              kernel_size // 2, groups=groups, bias=False)
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


def norm_gelu_conv(x: torch.Tensor, first: Optional[ConvNorm], norm: SingleGroupNorm,
                   act: nn.Module, second: ConvNorm) -> torch.Tensor:
    """``second.project(act(norm(first.project(x))))`` (without ``first``: of ``x``), through
    :class:`NormGeluConv` in training where it applies (it keeps only ``x`` for backward), else
    as plain modules."""
    convs = (second.conv,) if first is None else (first.conv, second.conv)
    if (torch.is_grad_enabled()
            and (x.requires_grad or any(p.requires_grad for c in convs for p in c.parameters())
                 or norm.weight.requires_grad)
            and x.dtype in (torch.float32, torch.float64)
            and not is_autocast_enabled(x.device.type) and not is_compiling()
            and norm.uses_native_kernel(x) and type(act) is nn.GELU
            and act.approximate == 'none' and not second.is_pointwise()
            and (first is None or first.is_pointwise() or first.conv.groups == 1)
            and all(c.bias is None and c.padding_mode == 'zeros' and c.dilation == (1, 1)
                    for c in convs)):
        first_weight = first_args = None
        if first is not None:
            first_weight = first.conv.weight
            if not first.is_pointwise():
                first_args = (list(first.conv.stride), list(first.conv.padding))
        c = second.conv
        return NormGeluConv.apply(x, first_weight, first_args, norm.weight, norm.bias, norm.eps,
                                  c.weight, list(c.stride), list(c.padding), c.groups)
    return second.project(act(norm(x if first is None else first.project(x))))


def _first_conv(x: torch.Tensor, weight: Optional[torch.Tensor],
                args: Optional[Tuple[List[int], List[int]]]) -> torch.Tensor:
    """:class:`NormGeluConv`'s first convolution: none (``weight`` None), pointwise (``args``
    None) or with ``(stride, padding)``."""
    if weight is None:
        return x
    if args is None:
        return pointwise_conv(x, weight)
    return F.conv2d(x, weight, None, args[0], args[1])


def _norm_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``GroupNorm(1)`` by PyTorch's kernel and GELU: normed, activated, mean, rstd."""
    batch, channels = x.shape[:2]
    normed, mean, rstd = torch.ops.aten.native_group_norm(
        x, weight, bias, batch, channels, x[0, 0].numel(), 1, eps)
    return normed, F.gelu(normed), mean, rstd


class NormGeluConv(torch.autograd.Function):
    """``conv2(gelu(group_norm(conv1(x), 1)))`` (bias-free convolutions; ``conv1`` optional)
    keeping only ``x`` and the norm's per-sample statistics for the backward pass.

    A plain autograd graph keeps four maps here: the inputs of both convolutions, the norm's
    and the GELU's. The stem (at half the input resolution) and the downsampling layers would
    keep three of them for nothing but the first convolution (3 input channels in the stem, a
    pointwise one in downsampling), a normalisation and an activation, which are recomputed in
    backward instead (the second, larger convolution is not); gradients come from the same
    backward kernels as in the plain graph. Used by :func:`norm_gelu_conv` for float32 /
    float64 training without autocast, with PyTorch's group-norm kernel.

    Args (of :meth:`apply`):
        x: The input (NCHW, any memory format).
        first_weight: Kernel of the first convolution (ungrouped), or None for none.
        first_args: Its ``(stride, padding)``, or None for a pointwise one (a matrix product,
            see :func:`pointwise_conv`).
        norm_weight, norm_bias: The norm's affine parameters.
        eps: The norm's epsilon.
        weight: Kernel of the second convolution.
        stride, padding: Its stride and padding (pairs).
        groups: Its groups.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, first_weight: torch.Tensor,
                first_args: Optional[Tuple[List[int], List[int]]], norm_weight: torch.Tensor,
                norm_bias: torch.Tensor, eps: float, weight: torch.Tensor, stride: List[int],
                padding: List[int], groups: int) -> torch.Tensor:
        h = _first_conv(x, first_weight, first_args)
        _, activated, mean, rstd = _norm_gelu(h, norm_weight, norm_bias, eps)
        ctx.save_for_backward(x, first_weight, norm_weight, norm_bias, mean, rstd, weight)
        ctx.args = (first_args, eps, stride, padding, groups)
        return F.conv2d(activated, weight, None, stride, padding, 1, groups)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        x, first_weight, norm_weight, norm_bias, mean, rstd, weight = ctx.saved_tensors
        first_args, eps, stride, padding, groups = ctx.args
        h = _first_conv(x, first_weight, first_args)
        normed, activated, _, _ = _norm_gelu(h, norm_weight, norm_bias, eps)
        need = ctx.needs_input_grad
        need_h = need[0] or need[1] or need[3] or need[4]
        grad_activated, grad_weight, _ = torch.ops.aten.convolution_backward(
            grad_out, activated, weight, None, stride, padding, [1, 1], False, [0, 0], groups,
            [need_h, need[6], False])
        del activated  # each map-sized temporary is dropped once used: backward's peak memory
        grad_x = grad_first = grad_norm_weight = grad_norm_bias = None
        if need_h:
            grad_normed = torch.ops.aten.gelu_backward(grad_activated, normed)
            del grad_activated, normed
            grad_h, grad_norm_weight, grad_norm_bias = torch.ops.aten.native_group_norm_backward(
                grad_normed, h, mean, rstd, norm_weight, h.shape[0], h.shape[1],
                h[0, 0].numel(), 1, [need[0] or need[1], need[3], need[4]])
            del grad_normed, h
            if first_weight is None:
                grad_x = grad_h
            elif first_args is None and (need[0] or need[1]):
                tokens_grad = grad_h.permute(0, 2, 3, 1)
                if need[0]:
                    grad_x = (tokens_grad @ first_weight.flatten(1)).permute(0, 3, 1, 2)
                if need[1]:
                    grad_first = (tokens_grad.reshape(-1, tokens_grad.shape[-1]).t()
                                  @ x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
                                  ).view_as(first_weight)
            elif first_args is not None and (need[0] or need[1]):
                grad_x, grad_first, _ = torch.ops.aten.convolution_backward(
                    grad_h, x, first_weight, None, first_args[0], first_args[1], [1, 1],
                    False, [0, 0], 1, [need[0], need[1], False])
        return (grad_x, grad_first, None, grad_norm_weight, grad_norm_bias, None, grad_weight,
                None, None, None)


class ConvStem(nn.Module):
    """Stride-4 stem: three 3x3 ConvNorms (strides 2, 1, 2) with GELUs, then a LayerNorm.

    Args:
        in_channels: Image channels.
        dims: Output channels.
    """

    def __init__(self, in_channels: int, dims: int) -> None:
        super().__init__()
        self.conv1 = ConvNorm(in_channels, dims, 3, stride=2)
        self.conv2 = ConvNorm(dims, dims, 3)
        self.conv3 = ConvNorm(dims, dims, 3, stride=2)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(dims)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        # Channels-last convolutions are faster here and give tokens without a copy.
        x = x.contiguous(memory_format=torch.channels_last)
        x = norm_gelu_conv(x, self.conv1, self.conv1.norm, self.act, self.conv2)
        x = self.conv3.norm(norm_gelu_conv(x, None, self.conv2.norm, self.act, self.conv3))
        return self.norm(map_to_tokens(x)), tuple(x.shape[-2:])


class PatchMerging(nn.Module):
    """Stride-2 downsampling: 1x1 ConvNorm, depth-wise 3x3 stride-2 ConvNorm, 1x1 ConvNorm.

    Args:
        in_channels: Input channels.
        dims: Output channels.
    """

    def __init__(self, in_channels: int, dims: int) -> None:
        super().__init__()
        self.conv1 = ConvNorm(in_channels, dims)
        self.conv2 = ConvNorm(dims, dims, 3, stride=2, groups=dims)
        self.conv3 = ConvNorm(dims, dims)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        x = norm_gelu_conv(x, self.conv1, self.conv1.norm, self.act, self.conv2)
        x = self.conv3(self.act(self.conv2.norm(x)))
        return map_to_tokens(x), tuple(x.shape[-2:])


def _conv_gelu(h_map: torch.Tensor, conv_weight: torch.Tensor,
               conv_bias: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Depth-wise 3x3 convolution of a map, as tokens, and its GELU."""
    d = map_to_tokens(F.conv2d(h_map, conv_weight, conv_bias, padding=1,
                               groups=conv_weight.shape[0]))
    return d, F.gelu(d)


class ConvGeluLinear(torch.autograd.Function):
    """``linear(gelu(dwconv(h)))`` that keeps only ``h`` for the backward pass.

    A plain autograd graph keeps three hidden-size activations per MLP: the convolution's input,
    the GELU's input and ``fc2``'s input. Here the convolution output and the GELU are recomputed
    in backward (a depth-wise convolution and an activation, cheap next to the matrix products;
    no matrix product is recomputed), so two of the three are not kept. Measured on the CPU at
    800x1333 (SG-Former-S, one training step, ``benchmark.py``): peak memory 4340 -> 3435 MiB.

    The computation runs in the dtype of ``h`` (under autocast that is what autocast would pick
    for the convolution and the linear layer) with autocast disabled, forward and backward alike;
    weight gradients are returned in that dtype and cast to the parameters' dtype by autograd.

    Args (of :meth:`apply`):
        h_map: ``fc1`` output as an NCHW (channels-last) map.
        conv_weight: Depth-wise kernel ``(C, 1, 3, 3)``.
        conv_bias: Its bias ``(C,)``.
        weight: ``fc2`` weight ``(C_out, C)``.
        bias: ``fc2`` bias ``(C_out,)``.
    """

    @staticmethod
    def forward(ctx, h_map: torch.Tensor, conv_weight: torch.Tensor, conv_bias: torch.Tensor,
                weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        dtype = h_map.dtype
        conv_weight, conv_bias, weight, bias = (t.to(dtype) for t in
                                                (conv_weight, conv_bias, weight, bias))
        with torch.autocast(h_map.device.type, enabled=False):
            _, g = _conv_gelu(h_map, conv_weight, conv_bias)
            out = F.linear(g, weight, bias)
        ctx.save_for_backward(h_map, conv_weight, conv_bias, weight)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        h_map, conv_weight, conv_bias, weight = ctx.saved_tensors
        with torch.autocast(h_map.device.type, enabled=False):
            grad_out = grad_out.to(h_map.dtype)
            d, g = _conv_gelu(h_map, conv_weight, conv_bias)
            flat_grad = grad_out.flatten(0, -2)
            grad_weight = flat_grad.t() @ g.flatten(0, -2)
            del g  # each hidden-size temporary is dropped once used: backward's peak memory
            grad_bias = flat_grad.sum(0)
            grad_d = grad_out @ weight  # GELU's backward in place: one temporary less
            torch.ops.aten.gelu_backward.grad_input(grad_d, d, grad_input=grad_d)
            del d
            grad_h, grad_conv_weight, grad_conv_bias = torch.ops.aten.convolution_backward(
                tokens_to_map(grad_d, tuple(h_map.shape[-2:])), h_map, conv_weight,
                [conv_weight.shape[0]], [1, 1], [1, 1], [1, 1], False, [0, 0],
                conv_weight.shape[0], list(ctx.needs_input_grad[:3]))
        return grad_h, grad_conv_weight, grad_conv_bias, grad_weight, grad_bias


class LayerNormLinear(torch.autograd.Function):
    """``linear(layer_norm(x))`` keeping only ``x`` and the norm's statistics for backward.

    The plain graph keeps ``x`` (for the norm) and the normed tensor (for the linear layer's
    weight gradient); here the normed tensor is recomputed in backward by the same kernel (a
    normalisation, no matrix product), which saves one tensor of ``x``'s size per use. Used by
    :func:`norm_linear` for float32 / float64 training without autocast.

    Args (of :meth:`apply`):
        x: Tokens ``(..., C)``.
        norm_weight, norm_bias: The LayerNorm's affine parameters ``(C,)``.
        eps: Its epsilon.
        weight, bias: The linear layer's parameters.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, norm_weight: torch.Tensor, norm_bias: torch.Tensor,
                eps: float, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        normed, mean, rstd = torch.ops.aten.native_layer_norm(x, [x.shape[-1]], norm_weight,
                                                              norm_bias, eps)
        ctx.save_for_backward(x, norm_weight, norm_bias, mean, rstd, weight)
        ctx.eps = eps
        return F.linear(normed, weight, bias)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        x, norm_weight, norm_bias, mean, rstd, weight = ctx.saved_tensors
        need = ctx.needs_input_grad
        flat_grad = grad_out.flatten(0, -2)
        grad_weight = grad_bias = grad_x = grad_norm_weight = grad_norm_bias = None
        if need[4]:
            normed = torch.ops.aten.native_layer_norm(x, [x.shape[-1]], norm_weight, norm_bias,
                                                      ctx.eps)[0]
            grad_weight = flat_grad.t() @ normed.flatten(0, -2)
        if need[5]:
            grad_bias = flat_grad.sum(0)
        if need[0] or need[1] or need[2]:
            grad_x, grad_norm_weight, grad_norm_bias = torch.ops.aten.native_layer_norm_backward(
                grad_out @ weight, x, [x.shape[-1]], mean, rstd, norm_weight, norm_bias,
                [need[0], need[1], need[2]])
        return grad_x, grad_norm_weight, grad_norm_bias, None, grad_weight, grad_bias


def norm_linear(x: torch.Tensor, norm: nn.LayerNorm, linear: nn.Linear) -> torch.Tensor:
    """``linear(norm(x))``: through :class:`LayerNormLinear` in training where it applies,
    else as plain modules."""
    if (torch.is_grad_enabled() and x.dtype in (torch.float32, torch.float64)
            and (x.requires_grad or linear.weight.requires_grad)
            and type(norm) is nn.LayerNorm and norm.elementwise_affine
            and norm.bias is not None and linear.bias is not None
            and not is_autocast_enabled(x.device.type) and not is_compiling()):
        return LayerNormLinear.apply(x, norm.weight, norm.bias, norm.eps, linear.weight,
                                     linear.bias)
    return linear(norm(x))


class ConvMlp(nn.Module):
    """MLP with a depth-wise 3x3 convolution: ``fc2(gelu(h + dwconv(h)))``, ``h = fc1(x)``.

    Args:
        dims: Input and output channels.
        hidden_dims: Hidden channels.
        drop: Dropout rate after the activation and after ``fc2``.
    """

    def __init__(self, dims: int, hidden_dims: int, drop: float = 0.) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dims, hidden_dims)
        self.dwconv = nn.Conv2d(hidden_dims, hidden_dims, 3, padding=1, groups=hidden_dims)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dims, dims)
        self.drop = dropout(drop)
        # x + dwconv(x) as one convolution: the identity is added to the kernel's centre tap,
        # which saves a pass over the largest activation of the block. (Not saved in state dicts.)
        identity = torch.zeros_like(self.dwconv.weight)
        identity[:, :, 1, 1] = 1
        self.register_buffer('identity_kernel', identity, persistent=False)

    def forward(self, x: torch.Tensor, hw_shape: Tuple[int, int],
                norm: Optional[nn.LayerNorm] = None) -> torch.Tensor:
        """The MLP of ``x``, or of ``norm(x)`` (then in training without keeping ``norm(x)``:
        see :func:`norm_linear`)."""
        h = self.fc1(x) if norm is None else norm_linear(x, norm, self.fc1)
        h_map = tokens_to_map(h, hw_shape)
        kernel = self.dwconv.weight + self.identity_kernel
        if self._recompute_hidden(h_map):
            return ConvGeluLinear.apply(h_map, kernel, self.dwconv.bias, self.fc2.weight,
                                        self.fc2.bias)
        x = F.conv2d(h_map, kernel, self.dwconv.bias, padding=1, groups=self.dwconv.groups)
        return self.drop(self.fc2(self.drop(self.act(map_to_tokens(x)))))

    def _recompute_hidden(self, h_map: torch.Tensor) -> bool:
        """Whether :class:`ConvGeluLinear` applies: training a plain GELU MLP without dropout,
        eagerly (a compiler plans its own recomputation)."""
        return (torch.is_grad_enabled() and h_map.requires_grad
                and isinstance(self.drop, nn.Identity) and type(self.act) is nn.GELU
                and self.act.approximate == 'none' and not is_compiling())


class SGFormerBlock(nn.Module):
    """Transformer block around one of SG-Former's attentions.

    Args:
        attn: The attention module (its forward takes and returns a significance map).
        dims: Channels.
        mlp_ratio: Hidden/input channel ratio of the MLP.
        drop_path: Stochastic depth rate.
        drop: Dropout rate in the MLP.
        norm_eps: LayerNorm epsilon.
    """

    def __init__(self, attn: nn.Module, dims: int, mlp_ratio: float, drop_path: float = 0.,
                 drop: float = 0., norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dims, eps=norm_eps)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dims, eps=norm_eps)
        self.mlp = ConvMlp(dims, int(dims * mlp_ratio), drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, hw_shape: Tuple[int, int],
                significance: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        y, significance = self.attn(self.norm1(x), hw_shape, significance)
        x = residual_add(x, self.drop_path(y))
        x = residual_add(x, self.drop_path(self.mlp(x, hw_shape, norm=self.norm2)))
        return x, significance


def residual_add(x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """``x + branch``; without autograd computed in place into ``branch`` (a block's fresh
    output) when that keeps the result's dtype: the same values without allocating a new
    token-sized tensor twice per block (measured on the CPU, S at 224x224, batch 8, one
    thread, interleaved, loaded machine: 1.05x-1.06x the forward's speed in two runs, outputs
    bit for bit equal)."""
    if torch.is_grad_enabled() or branch.dtype != torch.result_type(x, branch):
        return x + branch
    return branch.add_(x)


class SGFormerStage(nn.Module):
    """A downsampling layer, the stage's blocks and its output LayerNorm.

    Args:
        downsample: Stem or patch merging; returns tokens and their map size.
        blocks: The blocks in order.
        dims: Channels.
        norm_eps: Epsilon of the output LayerNorm.
    """

    def __init__(self, downsample: nn.Module, blocks: List[SGFormerBlock], dims: int,
                 norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(dims, eps=norm_eps)


def sincos_pos_embed(dims: int, grid: int) -> torch.Tensor:
    """Fixed 2D sine-cosine position embedding ``(grid * grid, dims)`` (MAE's, the official init).

    Half of the channels encode the column, half the row; each half is [sin | cos] of the
    position times ``1 / 10000^(2i / (dims / 2))``.
    """
    if dims % 4:
        raise ValueError(f'sin-cos position embedding needs dims divisible by 4, got {dims}')
    freqs = 1. / 10000 ** (np.arange(dims // 4, dtype=np.float64) / (dims / 4.))
    rows, cols = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64),
                             indexing='ij')
    parts = []
    for coord in (cols, rows):
        angles = np.outer(coord.reshape(-1), freqs)
        parts += [np.sin(angles), np.cos(angles)]
    return torch.from_numpy(np.concatenate(parts, axis=1)).float()


@register_in_root(MODELS)
class SGFormer(BaseModule):
    """SG-Former backbone.

    Args:
        arch: ``'s'``, ``'m'``, ``'b'`` (the released models) or a dict with ``embed_dims``,
            ``num_heads``, ``depths`` and ``mlp_ratios`` (four values each) and optionally
            ``sr_ratios`` (default ``[8, 4, 2, 1]``; values in {1, 2, 4, 8}; stages with a ratio
            above 1 need an even number of heads).
        in_channels: Image channels.
        out_indices: Stages whose normed feature maps are returned (0-3).
        drop_rate: Dropout rate in the MLPs and after attention projections.
        drop_path_rate: Stochastic depth rate, increasing linearly over all blocks.
        pretrain_img_size: Input size the position embedding was trained at (224: 56x56 grid).
        frozen_stages: ``-1`` freezes nothing; ``0`` freezes the stem and position embedding;
            ``k >= 1`` additionally freezes stages ``0..k-1`` (their downsampling, blocks and
            output norms), which are then kept in eval mode.
        norm_eval: Keep normalisation layers in eval mode during training. SG-Former has only
            LayerNorm and GroupNorm, which keep no running statistics, so this changes nothing
            numerically; it is accepted so that configs written for other backbones work.
        with_cp: Gradient checkpointing of every block (saves memory, costs a recomputation).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH_OR_URL)`` loads an official SG-Former
            release, a file of ``tools/model_converters/sgformer2mm.py`` or a checkpoint of one of
            our classifiers, detectors or segmentors (``prefix`` optional, ``strict`` default
            True, ``map_location`` default ``'cpu'``; an ``http(s)://`` URL is downloaded once
            into torch's hub cache; see :func:`mmsgformer.models.pretrained.load_pretrained`).
            Other init configs are passed to MMEngine; ``None`` gives the official
            initialisation.
    """

    arch_zoo: Dict[str, Dict[str, List[int]]] = {
        's': dict(embed_dims=[64, 128, 256, 512], num_heads=[2, 4, 8, 16],
                  depths=[2, 4, 16, 1], mlp_ratios=[4, 4, 4, 4], sr_ratios=[8, 4, 2, 1]),
        'm': dict(embed_dims=[64, 128, 256, 512], num_heads=[2, 4, 8, 16],
                  depths=[2, 6, 28, 2], mlp_ratios=[4, 4, 4, 4], sr_ratios=[8, 4, 2, 1]),
        'b': dict(embed_dims=[96, 192, 384, 768], num_heads=[4, 6, 12, 24],
                  depths=[4, 6, 24, 2], mlp_ratios=[4, 4, 4, 4], sr_ratios=[8, 4, 2, 1]),
    }
    num_stages = 4

    def __init__(self,
                 arch: Union[str, dict] = 's',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 pretrain_img_size: int = 224,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch = self._parse_arch(arch)
        self.embed_dims = list(self.arch['embed_dims'])
        self.in_channels = in_channels
        self.out_indices = self._parse_out_indices(out_indices)
        if not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(f'frozen_stages must be in [-1, {self.num_stages}], '
                             f'got {frozen_stages}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.pretrain_grid = pretrain_img_size // 4
        self._finite_check = FiniteInputCheck()

        depths = self.arch['depths']
        drop_path_rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.stages = nn.ModuleList()
        for i in range(self.num_stages):
            dims = self.embed_dims[i]
            downsample = (ConvStem(in_channels, dims) if i == 0
                          else PatchMerging(self.embed_dims[i - 1], dims))
            rates = drop_path_rates[sum(depths[:i]):sum(depths[:i + 1])]
            blocks = [SGFormerBlock(self._build_attention(i, j, drop_rate), dims,
                                    self.arch['mlp_ratios'][i], rate, drop_rate)
                      for j, rate in enumerate(rates)]
            self.stages.append(SGFormerStage(downsample, blocks, dims))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pretrain_grid ** 2, self.embed_dims[0]))
        self._init_from_scratch()
        self._freeze_stages()
        self._register_load_state_dict_pre_hook(load_state_dict_pre_hook, with_module=True)

    # ------------------------------------------------------------------ construction
    def _parse_arch(self, arch: Union[str, dict]) -> Dict[str, List[int]]:
        if isinstance(arch, str):
            key = arch.lower()
            if key not in self.arch_zoo:
                raise ValueError(f'SGFormer arch {arch!r} does not exist; choose one of '
                                 f'{sorted(self.arch_zoo)} or pass a dict with embed_dims, '
                                 f'num_heads, depths and mlp_ratios')
            return {k: list(v) for k, v in self.arch_zoo[key].items()}
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a name or a dict, got {type(arch).__name__}')
        required = {'embed_dims', 'num_heads', 'depths', 'mlp_ratios'}
        unknown = set(arch) - required - {'sr_ratios'}
        if not required <= set(arch) or unknown:
            raise ValueError(f'a custom SGFormer arch needs exactly the keys {sorted(required)} '
                             f'(and optionally sr_ratios); missing {sorted(required - set(arch))}, '
                             f'unknown {sorted(unknown)}')
        parsed = {k: list(v) for k, v in arch.items()}
        parsed.setdefault('sr_ratios', [8, 4, 2, 1])
        for key, values in parsed.items():
            if len(values) != self.num_stages:
                raise ValueError(f'arch[{key!r}] needs {self.num_stages} values, got {values}')
        for i, sr in enumerate(parsed['sr_ratios']):
            if sr != 1 and sr not in REALLOCATION_SPECS:
                raise ValueError(f'sr_ratios[{i}] = {sr}: SG-Former defines token reallocation '
                                 f'for ratios {sorted(REALLOCATION_SPECS)} (or 1 for global '
                                 f'attention)')
        return parsed

    def _parse_out_indices(self, out_indices: Union[int, Sequence[int]]) -> Tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        indices = tuple(i + self.num_stages if i < 0 else i for i in out_indices)
        if not indices or any(not 0 <= i < self.num_stages for i in indices):
            raise ValueError(f'out_indices must be stage indices in [0, {self.num_stages}), '
                             f'got {out_indices}')
        return indices

    def _build_attention(self, stage: int, block: int, drop: float) -> nn.Module:
        dims, heads = self.embed_dims[stage], self.arch['num_heads'][stage]
        sr = self.arch['sr_ratios'][stage]
        if sr == 1:
            return GlobalAttention(dims, heads, drop)
        if block % 2 == 0:
            return HybridScaleAttention(dims, heads, sr, drop)
        return SignificanceGuidedAttention(dims, heads, sr, drop)

    def _init_from_scratch(self) -> None:
        """The official initialisation: truncated-normal linears, He-normal (fan-out) convs."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.pos_embed.copy_(sincos_pos_embed(self.embed_dims[0], self.pretrain_grid)[None])

    def init_weights(self) -> None:
        """Loads ``init_cfg``'s checkpoint, or applies the official initialisation."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            known = ['type', 'checkpoint', 'prefix', 'strict', 'map_location']
            unknown = set(cfg) - set(known)
            if unknown:
                raise ValueError(f'unknown keys in SGFormer init_cfg: {sorted(unknown)}; '
                                 f'Pretrained takes {known}')
            if not cfg.get('checkpoint'):
                raise ValueError("init_cfg type='Pretrained' needs checkpoint=PATH or URL")
            load_pretrained(self, cfg['checkpoint'], prefix=cfg.get('prefix'),
                            strict=cfg.get('strict', True),
                            map_location=cfg.get('map_location', 'cpu'))
            self._is_init = True
        elif cfg is None:
            self._init_from_scratch()
        else:
            super().init_weights()
        self._freeze_stages()

    # ------------------------------------------------------------------ train/freeze
    def _frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        frozen: List[nn.Module] = [self.stages[0].downsample]
        frozen += list(self.stages[:self.frozen_stages])
        return frozen

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            self.pos_embed.requires_grad_(False)
        for module in self._frozen_modules():
            module.eval()
            module.requires_grad_(False)

    def train(self, mode: bool = True) -> 'SGFormer':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, (_BatchNorm, nn.LayerNorm, nn.GroupNorm)):
                    m.eval()
        return self

    # ------------------------------------------------------------------ forward
    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f'SGFormer expects a tensor of images (B, C, H, W), got '
                            f'{type(x).__name__}')
        if x.dim() != 4:
            raise ValueError(f'SGFormer expects images as a 4D tensor (B, C, H, W), got shape '
                             f'{tuple(x.shape)}; add a batch dimension with x[None]')
        if x.shape[0] == 0:
            raise ValueError('SGFormer got an empty batch (B = 0); pass at least one image')
        if x.shape[1] != self.in_channels:
            raise ValueError(f'SGFormer was built with in_channels={self.in_channels} but got '
                             f'{x.shape[1]} channels (shape {tuple(x.shape)}); convert the images '
                             f'or build the backbone with in_channels={x.shape[1]}')
        if not x.is_floating_point():
            raise TypeError(f'SGFormer expects floating-point images, got {x.dtype}; convert '
                            f'with x.float() and normalise (a data preprocessor does this)')
        if min(x.shape[-2:]) < MIN_INPUT_SIZE:
            raise ValueError(f'SGFormer needs inputs of at least {MIN_INPUT_SIZE}x'
                             f'{MIN_INPUT_SIZE} (its last stage has stride 32), got '
                             f'{x.shape[-2]}x{x.shape[-1]}; resize or pad the images')
        self._finite_check(x, self.training)

    def resized_pos_embed(self, hw_shape: Tuple[int, int]) -> torch.Tensor:
        """The position embedding ``(1, H*W, C)`` for a stage-1 map of ``hw_shape``."""
        grid = (self.pretrain_grid, self.pretrain_grid)
        if tuple(hw_shape) == grid:
            return self.pos_embed
        pos = self.pos_embed.reshape(1, *grid, -1).permute(0, 3, 1, 2)
        pos = F.interpolate(pos.float(), size=hw_shape, mode='bicubic', align_corners=False)
        return map_to_tokens(pos).to(self.pos_embed.dtype)

    def _run_block(self, block: SGFormerBlock, x: torch.Tensor, hw_shape: Tuple[int, int],
                   significance: Optional[torch.Tensor]
                   ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if self.with_cp and self.training and x.requires_grad:
            return cp.checkpoint(block, x, hw_shape, significance, use_reentrant=False)
        return block(x, hw_shape, significance)

    def _forward(self, x: torch.Tensor, records: Optional[list] = None
                 ) -> Tuple[torch.Tensor, ...]:
        self._check_input(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x, hw_shape = stage.downsample(x)
            if i == 0:
                x = x + self.resized_pos_embed(hw_shape)
            significance = None
            for j, block in enumerate(stage.blocks):
                if records is not None and significance is not None:
                    self._record(records, i, j - 1, block.attn, significance)
                x, significance = self._run_block(block, x, hw_shape, significance)
            if records is not None and significance is not None:
                self._record(records, i, len(stage.blocks) - 1, None, significance)
            x = tokens_to_map(stage.norm(x), hw_shape)
            if i in self.out_indices:
                outs.append(x.contiguous())
        return tuple(outs)

    @staticmethod
    def _record(records: list, stage: int, block: int, next_attn: Optional[nn.Module],
                significance: torch.Tensor) -> None:
        record = dict(stage=stage, block=block, significance=significance.detach())
        if isinstance(next_attn, SignificanceGuidedAttention):
            allocation = next_attn.reallocation.allocation(significance.flatten(1))
            record['allocation'] = allocation.view_as(significance)
        records.append(record)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Feature maps ``(B, C_i, H_i, W_i)`` of the stages in ``out_indices``."""
        return self._forward(x)

    def forward_with_significance(self, x: torch.Tensor
                                  ) -> Tuple[Tuple[torch.Tensor, ...], List[dict]]:
        """Like :meth:`forward`, also returning every hybrid-scale block's significance map.

        Returns:
            The feature maps and one dict per hybrid-scale block with ``stage``, ``block``,
            ``significance`` ``(B, H_i, W_i)`` (at the stage's resolution: the mean attention each
            token receives as a local key plus that of its reduced global key; per 7x7 window
            the local part sums to 1) and, when a significance-guided block follows,
            ``allocation`` ``(B, H_i, W_i)``: how many tokens were merged with each token into one
            key of that block.
        """
        records: List[dict] = []
        return self._forward(x, records), records

