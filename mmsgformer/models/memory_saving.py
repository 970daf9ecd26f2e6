"""Training-memory savers: autograd functions that keep less for the backward pass.

A plain autograd graph keeps the input of every operation that needs it for backward. The
functions here compute the same forward and the same gradients (from PyTorch's own backward
kernels) but keep only their input and recompute the cheap intermediate tensors (a
normalisation, an activation, a depth-wise convolution, a gather) in backward; no matrix
product is recomputed.

The modules of :mod:`mmsgformer.models.sgformer` compute their forward as plain PyTorch; where
memory saving applies (:func:`norm_gelu_conv_applies`, :func:`conv_mlp_applies`), one early
branch hands the whole module to its memory-saving forward here instead:

* :func:`conv_stem`, :func:`patch_merging` - the stem and the patch merging layers, with
  ``conv2(gelu(group_norm(conv1(x))))`` through :class:`NormGeluConv`;
* :func:`conv_mlp` - the MLP: ``fc1(norm2(x))`` through :class:`LayerNormLinear` and
  ``fc2(gelu(h + dwconv(h)))`` through :class:`ConvGeluLinear` (each where it applies: the
  first needs float32/float64 without autocast, the second no dropout).

The attentions use two dispatchers that fall back to the plain computation themselves:

* :func:`gather_merge` - token reallocation's gather and merge (:class:`GatherMerge`);
* :func:`split_linear` - one linear layer's output in parts, each its own product.

Every hand-written backward is tested against autograd of the plain forward
(``tests/test_memory_saving.py``).

What they save is measured by ``tools/analysis_tools/benchmark.py`` (see docs/benchmark.md).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..utils.compat import is_autocast_enabled
from .layers import (
    ConvNorm,
    group_tokens,
    map_to_tokens,
    merge_groups,
    pointwise_conv,
    tokens_to_map,
)
from .sizes import Size, known_zero, runs_eagerly

FLOAT_TYPES = (torch.float32, torch.float64)


def memory_saving_applies(
    x: torch.Tensor, *params: torch.Tensor, any_precision: bool = False
) -> bool:
    """Whether the functions of this module replace the plain modules for input ``x``.

    They do when autograd records (``x`` or one of ``params`` requires a gradient) in eager
    execution (a compiler or exporter plans its own memory), and - unless the function handles
    every precision (``any_precision``) - in float32 or float64 without autocast.

    Args:
        x: The input tensor.
        params: The parameters the function uses.
        any_precision: The function also runs in low precision and under autocast.
    """
    if not torch.is_grad_enabled() or not runs_eagerly():
        return False
    if not (x.requires_grad or any(p.requires_grad for p in params)):
        return False
    return any_precision or (x.dtype in FLOAT_TYPES and not is_autocast_enabled(x.device.type))


def _exact_gelu(act: nn.Module) -> bool:
    """Whether ``act`` is the exact GELU that the hand-written backwards differentiate."""
    return type(act) is nn.GELU and act.approximate == 'none'


# ---------------------------------------------------------------- stem, merging
def norm_gelu_conv_applies(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether :func:`conv_stem` or :func:`patch_merging` replaces the plain forward of
    ``module`` (the stem or a patch merging layer) for input ``x``."""
    return (
        memory_saving_applies(x, *module.parameters())
        and module.conv1.norm.uses_native_kernel(x)
        and _exact_gelu(module.act)
    )


def conv_stem(stem: nn.Module, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[Size, Size]]:
    """:class:`~mmsgformer.models.sgformer.ConvStem`'s forward with :class:`NormGeluConv` from
    ``conv1``'s convolution to ``conv2``'s and from ``conv2``'s norm to ``conv3``'s convolution
    (channels-last ``x``)."""
    x = _norm_gelu_conv(x, stem.conv1, stem.conv1.norm, stem.conv2)
    x = stem.conv3.norm(_norm_gelu_conv(x, None, stem.conv2.norm, stem.conv3))
    return stem.norm(map_to_tokens(x)), tuple(x.shape[-2:])


def patch_merging(merging: nn.Module, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[Size, Size]]:
    """:class:`~mmsgformer.models.sgformer.PatchMerging`'s forward with :class:`NormGeluConv`
    from ``conv1``'s convolution to ``conv2``'s."""
    x = _norm_gelu_conv(x, merging.conv1, merging.conv1.norm, merging.conv2)
    x = merging.conv3(merging.act(merging.conv2.norm(x)))
    return map_to_tokens(x), tuple(x.shape[-2:])


def _norm_gelu_conv(
    x: torch.Tensor, first: Optional[ConvNorm], norm: nn.GroupNorm, second: ConvNorm
) -> torch.Tensor:
    """``second``'s convolution of ``gelu(norm(first's convolution of x))`` (without ``first``:
    of ``gelu(norm(x))``) by :class:`NormGeluConv` (bias-free convolutions; ``first`` pointwise
    or ungrouped)."""
    first_weight = first_args = None
    if first is not None:
        first_weight = first.conv.weight
        if not first.is_pointwise():
            first_args = (list(first.conv.stride), list(first.conv.padding))
    c = second.conv
    return NormGeluConv.apply(
        x,
        first_weight,
        first_args,
        norm.weight,
        norm.bias,
        norm.eps,
        c.weight,
        list(c.stride),
        list(c.padding),
        c.groups,
    )


def _first_conv(
    x: torch.Tensor, weight: Optional[torch.Tensor], args: Optional[Tuple[List[int], List[int]]]
) -> torch.Tensor:
    """:class:`NormGeluConv`'s first convolution: none (``weight`` None), pointwise (``args``
    None) or with ``(stride, padding)``."""
    if weight is None:
        return x
    if args is None:
        return pointwise_conv(x, weight)
    return F.conv2d(x, weight, None, args[0], args[1])


def _norm_gelu(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``GroupNorm(1)`` by PyTorch's kernel and GELU: normed, activated, mean, rstd."""
    batch, channels = x.shape[:2]
    normed, mean, rstd = torch.ops.aten.native_group_norm(
        x, weight, bias, batch, channels, x[0, 0].numel(), 1, eps
    )
    return normed, F.gelu(normed), mean, rstd


class NormGeluConv(torch.autograd.Function):
    """``conv2(gelu(group_norm(conv1(x), 1)))`` (bias-free convolutions; ``conv1`` optional)
    keeping only ``x`` and the norm's per-sample statistics for the backward pass.

    The plain graph keeps the inputs of both convolutions, the norm's and the GELU's; the stem
    and the downsampling layers would keep three of them for nothing but a small first
    convolution, a normalisation and an activation, which are recomputed here instead.

    Args (of :meth:`apply`):
        x: The input (NCHW, any memory format).
        first_weight: Kernel of the first convolution (ungrouped), or None for none.
        first_args: Its ``(stride, padding)``, or None for a pointwise one (a matrix product,
            see :func:`~mmsgformer.models.layers.pointwise_conv`).
        norm_weight, norm_bias: The norm's affine parameters.
        eps: The norm's epsilon.
        weight: Kernel of the second convolution.
        stride, padding: Its stride and padding (pairs).
        groups: Its groups.
    """

    @staticmethod
    def forward(
        ctx,
        x: torch.Tensor,
        first_weight: torch.Tensor,
        first_args: Optional[Tuple[List[int], List[int]]],
        norm_weight: torch.Tensor,
        norm_bias: torch.Tensor,
        eps: float,
        weight: torch.Tensor,
        stride: List[int],
        padding: List[int],
        groups: int,
    ) -> torch.Tensor:
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
            grad_out,
            activated,
            weight,
            None,
            stride,
            padding,
            [1, 1],
            False,
            [0, 0],
            groups,
            [need_h, need[6], False],
        )
        del activated  # each map-sized temporary is dropped once used: backward's peak memory
        grad_x = grad_first = grad_norm_weight = grad_norm_bias = None
        if need_h:
            grad_normed = torch.ops.aten.gelu_backward(grad_activated, normed)
            del grad_activated, normed
            grad_h, grad_norm_weight, grad_norm_bias = torch.ops.aten.native_group_norm_backward(
                grad_normed,
                h,
                mean,
                rstd,
                norm_weight,
                h.shape[0],
                h.shape[1],
                h[0, 0].numel(),
                1,
                [need[0] or need[1], need[3], need[4]],
            )
            del grad_normed, h
            if first_weight is None:
                grad_x = grad_h
            elif first_args is None and (need[0] or need[1]):
                tokens_grad = grad_h.permute(0, 2, 3, 1)
                if need[0]:
                    grad_x = (tokens_grad @ first_weight.flatten(1)).permute(0, 3, 1, 2)
                if need[1]:
                    grad_first = (
                        tokens_grad.reshape(-1, tokens_grad.shape[-1]).t()
                        @ x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
                    ).view_as(first_weight)
            elif first_args is not None and (need[0] or need[1]):
                grad_x, grad_first, _ = torch.ops.aten.convolution_backward(
                    grad_h,
                    x,
                    first_weight,
                    None,
                    first_args[0],
                    first_args[1],
                    [1, 1],
                    False,
                    [0, 0],
                    1,
                    [need[0], need[1], False],
                )
        return (
            grad_x,
            grad_first,
            None,
            grad_norm_weight,
            grad_norm_bias,
            None,
            grad_weight,
            None,
            None,
            None,
        )


# ---------------------------------------------------------------- MLP
def conv_mlp_applies(mlp: nn.Module, x: torch.Tensor, norm: Optional[nn.LayerNorm]) -> bool:
    """Whether :func:`conv_mlp` replaces the plain forward of ``mlp`` for ``x`` (normed by
    ``norm``): where :class:`LayerNormLinear` or :class:`ConvGeluLinear` applies."""
    if _layer_norm_linear_applies(x, norm, mlp):
        return True
    norm_params = [] if norm is None else list(norm.parameters())
    hidden_requires_grad = memory_saving_applies(
        x, *norm_params, *mlp.fc1.parameters(), any_precision=True
    )
    return hidden_requires_grad and _conv_gelu_linear_fits(mlp)


def conv_mlp(
    mlp: nn.Module, x: torch.Tensor, hw_shape: Tuple[Size, Size], norm: Optional[nn.LayerNorm]
) -> torch.Tensor:
    """:class:`~mmsgformer.models.sgformer.ConvMlp`'s forward of ``norm(x)`` with
    :class:`LayerNormLinear` for ``fc1(norm(x))`` where it applies (float32/float64 without
    autocast) and :class:`ConvGeluLinear` for the rest where it applies (no dropout); either
    part runs as the plain modules otherwise."""
    if _layer_norm_linear_applies(x, norm, mlp):
        fc1 = mlp.fc1
        h = LayerNormLinear.apply(x, norm.weight, norm.bias, norm.eps, fc1.weight, fc1.bias)
    else:
        h = mlp.fc1(x if norm is None else norm(x))
    h_map = tokens_to_map(h, hw_shape)
    if not (memory_saving_applies(h_map, any_precision=True) and _conv_gelu_linear_fits(mlp)):
        return mlp.mix(h_map)
    return ConvGeluLinear.apply(
        h_map, mlp.mixing_kernel(), mlp.dwconv.bias, mlp.fc2.weight, mlp.fc2.bias
    )


def _layer_norm_linear_applies(
    x: torch.Tensor, norm: Optional[nn.LayerNorm], mlp: nn.Module
) -> bool:
    """Whether :class:`LayerNormLinear` computes ``mlp.fc1(norm(x))``."""
    return (
        norm is not None
        and memory_saving_applies(x, mlp.fc1.weight)
        and type(norm) is nn.LayerNorm
        and norm.elementwise_affine
        and norm.bias is not None
        and mlp.fc1.bias is not None
    )


def _conv_gelu_linear_fits(mlp: nn.Module) -> bool:
    """Whether :class:`ConvGeluLinear` computes ``mlp``'s part after ``fc1`` (an exact GELU, no
    dropout)."""
    return isinstance(mlp.drop, nn.Identity) and _exact_gelu(mlp.act)


class LayerNormLinear(torch.autograd.Function):
    """``linear(layer_norm(x))`` keeping only ``x`` and the norm's statistics for backward.

    The plain graph keeps ``x`` (for the norm) and the normed tensor (for the linear layer's
    weight gradient); here the normed tensor is recomputed in backward by the same kernel.

    Args (of :meth:`apply`):
        x: Tokens ``(..., C)``.
        norm_weight, norm_bias: The LayerNorm's affine parameters ``(C,)``.
        eps: Its epsilon.
        weight, bias: The linear layer's parameters.
    """

    @staticmethod
    def forward(
        ctx,
        x: torch.Tensor,
        norm_weight: torch.Tensor,
        norm_bias: torch.Tensor,
        eps: float,
        weight: torch.Tensor,
        bias: torch.Tensor,
    ) -> torch.Tensor:
        normed, mean, rstd = torch.ops.aten.native_layer_norm(
            x, [x.shape[-1]], norm_weight, norm_bias, eps
        )
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
            normed = torch.ops.aten.native_layer_norm(
                x, [x.shape[-1]], norm_weight, norm_bias, ctx.eps
            )[0]
            grad_weight = flat_grad.t() @ normed.flatten(0, -2)
        if need[5]:
            grad_bias = flat_grad.sum(0)
        if need[0] or need[1] or need[2]:
            grad_x, grad_norm_weight, grad_norm_bias = torch.ops.aten.native_layer_norm_backward(
                grad_out @ weight,
                x,
                [x.shape[-1]],
                mean,
                rstd,
                norm_weight,
                norm_bias,
                [need[0], need[1], need[2]],
            )
        return grad_x, grad_norm_weight, grad_norm_bias, None, grad_weight, grad_bias


def _conv_gelu(
    h_map: torch.Tensor, conv_weight: torch.Tensor, conv_bias: Optional[torch.Tensor]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Depth-wise 3x3 convolution of a map, as tokens, and its GELU."""
    d = map_to_tokens(
        F.conv2d(h_map, conv_weight, conv_bias, padding=1, groups=conv_weight.shape[0])
    )
    return d, F.gelu(d)


class ConvGeluLinear(torch.autograd.Function):
    """``linear(gelu(dwconv(h)))`` that keeps only ``h`` for the backward pass.

    The plain graph keeps three hidden-size activations per MLP: the convolution's input, the
    GELU's input and ``fc2``'s input. Here the convolution output and the GELU are recomputed in
    backward, so two of the three are not kept.

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
    def forward(
        ctx,
        h_map: torch.Tensor,
        conv_weight: torch.Tensor,
        conv_bias: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
    ) -> torch.Tensor:
        dtype = h_map.dtype
        conv_weight, conv_bias, weight, bias = (
            t.to(dtype) for t in (conv_weight, conv_bias, weight, bias)
        )
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
                tokens_to_map(grad_d, tuple(h_map.shape[-2:])),
                h_map,
                conv_weight,
                [conv_weight.shape[0]],
                [1, 1],
                [1, 1],
                [1, 1],
                False,
                [0, 0],
                conv_weight.shape[0],
                list(ctx.needs_input_grad[:3]),
            )
        return grad_h, grad_conv_weight, grad_conv_bias, grad_weight, grad_bias


# ---------------------------------------------------------------- attention
def split_linear(
    x: torch.Tensor, linear: nn.Linear, sizes: Sequence[int]
) -> Tuple[torch.Tensor, ...]:
    """``linear(x).split(sizes, -1)``; where autograd records, as one product per part with
    slices of the weight (the same math), so that a part that is used once and copied (e.g.
    into windows) is not kept alive for backward by the others."""
    if not memory_saving_applies(x, linear.weight, any_precision=True):
        return linear(x).split(list(sizes), -1)
    return tuple(
        F.linear(x, weight, bias)
        for weight, bias in zip(linear.weight.split(list(sizes)), linear.bias.split(list(sizes)))
    )


def gather_merge(
    x: torch.Tensor, order: torch.Tensor, group_sizes: Sequence[Size], merges: nn.ModuleList
) -> torch.Tensor:
    """Token reallocation's keys: ``x`` gathered in ``order``, then
    :func:`~mmsgformer.models.layers.merge_groups` with the ``merges`` linear layers; through
    :class:`GatherMerge` where it applies."""
    params = [p for merge in merges for p in (merge.weight, merge.bias)]
    if memory_saving_applies(x, *params):
        return GatherMerge.apply(x, order, group_sizes, *params)
    return merge_groups(
        x.gather(1, order.unsqueeze(-1).expand_as(x)), group_sizes, params[0::2], params[1::2]
    )


class GatherMerge(torch.autograd.Function):
    """Gather by significance order, then :func:`~mmsgformer.models.layers.merge_groups`,
    keeping only the tokens (kept anyway by the input projection), the order and the merge
    weights for backward.

    The plain graph keeps the gathered copy of the tokens (and a transposed copy of it for the
    merge products); here the gather is recomputed in backward.

    Args (of :meth:`apply`):
        x: Tokens ``(B, N, C)``.
        order: ``(B, N)`` token indices in ascending significance.
        group_sizes: Tokens per group.
        *params: Weight ``(1, size)`` and bias ``(1,)`` of every group, alternating.
    """

    @staticmethod
    def forward(
        ctx, x: torch.Tensor, order: torch.Tensor, group_sizes: Sequence[int], *params: torch.Tensor
    ) -> torch.Tensor:
        weights = params[0::2]
        ctx.save_for_backward(x, order, *weights)
        ctx.group_sizes = list(group_sizes)
        return merge_groups(
            x.gather(1, order.unsqueeze(-1).expand_as(x)), group_sizes, weights, params[1::2]
        )

    @staticmethod
    def backward(ctx, grad_keys: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        x, order, *weights = ctx.saved_tensors
        index = order.unsqueeze(-1).expand_as(x)
        ordered = x.gather(1, index)
        grad_groups, grad_params, start = [], [], 0
        for tokens, weight in zip(ordered.split(ctx.group_sizes, dim=1), weights):
            num_tokens = tokens.shape[1]
            if known_zero(num_tokens):
                grad_params += [torch.zeros_like(weight), weight.new_zeros(1)]
                continue
            tokens = group_tokens(tokens, weight.shape[1])
            grad = grad_keys[:, start : start + tokens.shape[1]]  # (B, M_g, C)
            start += tokens.shape[1]
            grad_params += [torch.einsum('bmc,bmsc->s', grad, tokens)[None], grad.sum().reshape(1)]
            grad_tokens = (weight[0, :, None] * grad[:, :, None, :]).flatten(1, 2)
            grad_groups.append(grad_tokens[:, grad_tokens.shape[1] - num_tokens :])
        grad_x = torch.zeros_like(x).scatter_add_(1, index, torch.cat(grad_groups, dim=1))
        return (grad_x, None, None, *grad_params)
