"""The attention mechanisms of SG-Former, one small piece per idea of the paper.

* :class:`HybridScaleAttention` - half of the heads attend globally to keys reduced by a strided
  convolution, half attend locally inside 7x7 windows; the attention each key receives, averaged
  over heads and queries, is the block's *significance map*.
* :class:`TokenReallocation` - sorts tokens by significance and merges them into keys: few tokens
  per key where the image is significant, many where it is not.
* :class:`SignificanceGuidedAttention` - every head attends to the reallocated keys.
* :class:`GlobalAttention` - plain multi-head attention (last stage).

All four share the locally-enhanced positional encoding (LePE, a depth-wise 3x3 convolution of a
linear projection of the input) that is added to the attention output before ``proj``.

Tensors are ``(B, N, C)`` token sequences in row-major order of an ``(H, W)`` map. Inputs that
windows or key reduction do not divide are padded and cropped back by the helpers of
:mod:`mmsgformer.models.sizes`, which also hold every other rule that keeps the attentions
traceable at symbolic sizes (an export with dynamic height and width).

The module reads top-down: the reallocation specs, the shared parts, the four attentions, then
the attention function that computes the significance statistic.

Each module keeps the projections that read the same input fused into one ``in_proj`` linear
layer (the official implementation has up to four separate ones); ``convert_official_state_dict``
in :mod:`mmsgformer.models.official_keys` maps the official weights onto this layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..utils.compat import is_autocast_enabled
from .layers import dropout, map_to_tokens, tokens_to_map
from .memory_saving import gather_merge, split_linear
from .sizes import (
    Size,
    chunk_bounds,
    crop_map,
    pad_map,
    upsample_cells,
    window_grid,
    window_positions,
    window_validity,
)

LOCAL_WINDOW = 7
"""Side of the windows of the local half of hybrid-scale attention."""


@dataclass(frozen=True)
class ReallocationSpec:
    """How significance-guided attention turns ``N`` tokens into keys.

    The tokens sorted by ascending significance are cut into ``parts`` equal parts (``N // parts``
    tokens each, the last group taking the remainder); group ``g`` takes ``part_counts[g]`` parts
    and merges every ``merge_sizes[g]`` consecutive tokens into one key with a learned weighted
    sum.

    Args:
        parts: Number of equal parts the sorted sequence is cut into.
        part_counts: Parts per group, least significant group first.
        merge_sizes: Tokens merged into one key, per group.
    """

    parts: int
    part_counts: Tuple[int, ...]
    merge_sizes: Tuple[int, ...]

    def group_sizes(self, num_tokens: Size) -> Tuple[Size, ...]:
        """Number of tokens in each group for a sequence of ``num_tokens``."""
        part = num_tokens // self.parts
        sizes = [part * count for count in self.part_counts[:-1]]
        return tuple(sizes) + (num_tokens - sum(sizes),)


# The official architectures' reallocation, keyed by the stage's key-reduction ratio. At 224x224
# (stage maps 56, 28, 14) every group divides exactly: 4+28+28 keys in stage 1, 4+28+28 in stage 2
# and 49+98 in stage 3.
REALLOCATION_SPECS = {
    8: ReallocationSpec(parts=4, part_counts=(1, 2, 1), merge_sizes=(196, 56, 28)),
    4: ReallocationSpec(parts=4, part_counts=(1, 2, 1), merge_sizes=(49, 14, 7)),
    2: ReallocationSpec(parts=2, part_counts=(1, 1), merge_sizes=(2, 1)),
}


# ---------------------------------------------------------------- shared parts
class _AttentionBase(nn.Module):
    """Shared parts: the fused input projection, LePE and the output projection.

    Args:
        dims: Channels.
        num_heads: Attention heads.
        in_proj_dims: Output channels of the fused input projection, LePE's included.
        proj_drop: Dropout rate after ``proj``.
    """

    def __init__(
        self, dims: int, num_heads: int, in_proj_dims: int, proj_drop: float = 0.0
    ) -> None:
        super().__init__()
        if dims % num_heads:
            raise ValueError(f'embed_dims {dims} must be divisible by num_heads {num_heads}')
        self.dims = dims
        self.num_heads = num_heads
        self.head_dims = dims // num_heads
        self.scale = self.head_dims**-0.5
        self.in_proj = nn.Linear(dims, in_proj_dims)
        self.lepe = LocallyEnhancedPositionalEncoding(dims)
        self.proj = nn.Linear(dims, dims)
        self.proj_drop = dropout(proj_drop)

    def split_heads(self, x: torch.Tensor, num_heads: int) -> torch.Tensor:
        """``(B, L, heads * d)`` -> ``(B, heads, L, d)``."""
        return x.unflatten(-1, (num_heads, self.head_dims)).transpose(1, 2)

    def output(
        self, x: torch.Tensor, lepe_input: torch.Tensor, hw_shape: Tuple[Size, Size]
    ) -> torch.Tensor:
        """``proj(attention output + LePE)``."""
        return self.proj_drop(self.proj(x + self.lepe(lepe_input, hw_shape)))


class LocallyEnhancedPositionalEncoding(nn.Module):
    """LePE: a depth-wise 3x3 convolution over the map of already projected tokens.

    Args:
        dims: Channels.
    """

    def __init__(self, dims: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dims, dims, 3, padding=1, groups=dims)

    def forward(self, x: torch.Tensor, hw_shape: Tuple[Size, Size]) -> torch.Tensor:
        return map_to_tokens(self.conv(tokens_to_map(x, hw_shape)))


# ---------------------------------------------------------------- the attentions
class HybridScaleAttention(_AttentionBase):
    """Hybrid-scale attention: global heads on reduced keys, local heads in 7x7 windows.

    Also returns the significance map: for every token, the attention it receives as a local
    key (averaged over the heads and real queries of its window) plus the attention its reduced
    global key receives (averaged over heads and all queries).

    Any size: the global half zero-pads the map to a multiple of ``sr_ratio`` before the
    reduction (each reduced key covers at least one real token); the local half pads to multiples
    of 7 and masks the padded keys; its significance sums over real queries only, divided by 49
    as in a full window (see :func:`~mmsgformer.models.sizes.window_validity`). Padded positions
    are cropped away. At multiples of 224 no padding happens.

    Args:
        dims: Channels.
        num_heads: Heads; the first half is global, the second local. Must be even.
        sr_ratio: Key-reduction ratio (kernel and stride of the reduction convolution).
        proj_drop: Dropout rate after ``proj``.
    """

    def __init__(self, dims: int, num_heads: int, sr_ratio: int, proj_drop: float = 0.0) -> None:
        if num_heads % 2:
            raise ValueError(
                f'hybrid-scale attention splits heads in two halves; num_heads '
                f'must be even, got {num_heads}'
            )
        # in_proj: [global q | local q | local k | local v | LePE input]
        super().__init__(dims, num_heads, in_proj_dims=3 * dims, proj_drop=proj_drop)
        self.sr_ratio = sr_ratio
        self.sr = nn.Conv2d(dims, dims, sr_ratio, stride=sr_ratio)
        self.sr_norm = nn.LayerNorm(dims)
        self.sr_act = nn.GELU()
        self.global_kv = nn.Linear(dims, dims)

    def forward(
        self,
        x: torch.Tensor,
        hw_shape: Tuple[Size, Size],
        significance: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Returns the attended tokens ``(B, N, C)`` and a new significance map ``(B, H, W)``.

        An incoming ``significance`` (of an earlier block) is not used.
        """
        q_global, qkv_local, lepe_input = self._in_proj_parts(x)
        out_global, sig_global = self._global(x, q_global, hw_shape)
        out_local, sig_local = self._local(qkv_local, hw_shape)
        out = self.output(torch.cat([out_global, out_local], dim=-1), lepe_input, hw_shape)
        return out, sig_global + sig_local

    def _in_proj_parts(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """The global queries, the local queries, keys and values, and LePE's input.

        In training as three products (:func:`~mmsgformer.models.memory_saving.split_linear`):
        the local part, copied into windows, is then not kept alive by the other two.
        """
        return split_linear(x, self.in_proj, [self.dims // 2, 3 * self.dims // 2, self.dims])

    def _global(
        self, x: torch.Tensor, q: torch.Tensor, hw_shape: Tuple[Size, Size]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        heads = self.num_heads // 2
        reduced = self.sr(pad_map(x.unflatten(1, hw_shape), self.sr_ratio).permute(0, 3, 1, 2))
        reduced_hw = reduced.shape[-2:]
        kv = self.global_kv(self.sr_act(self.sr_norm(map_to_tokens(reduced))))
        k, v = self.split_heads(kv, 2 * heads).chunk(2, dim=1)
        out, significance = self.attend_with_significance(self.split_heads(q, heads), k, v)
        # every token gets the significance of the reduced key covering it
        significance = upsample_cells(
            significance.unflatten(1, reduced_hw), hw_shape, self.sr_ratio
        )
        return out.transpose(1, 2).flatten(2), significance

    def _local(
        self, qkv: torch.Tensor, hw_shape: Tuple[Size, Size]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        batch = qkv.shape[0]
        heads, w = self.num_heads // 2, LOCAL_WINDOW
        grid, rows, cols = window_grid(qkv.unflatten(1, hw_shape), w)
        # (B, rows, w, cols, w, 3, heads, d) -> (3, B * rows * cols, heads, w * w, d)
        windows = grid.unflatten(-1, (3, heads, self.head_dims))
        windows = windows.permute(5, 0, 1, 3, 6, 2, 4, 7).reshape(
            3, batch * rows * cols, heads, w * w, self.head_dims
        )
        key_mask, query_weights = window_validity(
            batch, rows, cols, hw_shape, w, qkv.device, significance_dtype(qkv.dtype)
        )
        out, significance = self.attend_with_significance(
            windows[0], windows[1], windows[2], key_mask, query_weights
        )
        # (B * rows * cols, heads, w * w, d) -> (B, rows * w, cols * w, heads * d)
        out = out.reshape(batch, rows, cols, heads, w, w, self.head_dims)
        out = out.permute(0, 1, 4, 2, 5, 3, 6).reshape(batch, rows * w, cols * w, -1)
        significance = significance.reshape(batch, rows * cols * w * w)
        significance = significance.index_select(1, window_positions(hw_shape, w, qkv.device))
        return crop_map(out, hw_shape).flatten(1, 2), significance.unflatten(1, hw_shape)

    def attend_with_significance(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_mask: Optional[torch.Tensor] = None,
        query_weights: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """:func:`attention` with each key's significance, at this module's scale (both
        halves call it).

        A tool that analyses the network may replace it on the instances it looks at, as the
        MAC counter does (:mod:`mmsgformer.analysis.complexity`); the forward consults nothing
        else on the tool's behalf.
        """
        return attention(q, k, v, self.scale, key_mask, query_weights, need_key_significance=True)


class SignificanceGuidedAttention(_AttentionBase):
    """Attention of every head to keys reallocated by the previous block's significance map.

    Args:
        dims: Channels.
        num_heads: Heads.
        sr_ratio: The stage's key-reduction ratio, which selects the reallocation.
        proj_drop: Dropout rate after ``proj``.
    """

    def __init__(self, dims: int, num_heads: int, sr_ratio: int, proj_drop: float = 0.0) -> None:
        if sr_ratio not in REALLOCATION_SPECS:
            raise ValueError(
                f'significance-guided attention is defined for sr_ratios '
                f'{sorted(REALLOCATION_SPECS)}, got {sr_ratio}'
            )
        # in_proj: [q | LePE input]
        super().__init__(dims, num_heads, in_proj_dims=2 * dims, proj_drop=proj_drop)
        self.reallocation = TokenReallocation(REALLOCATION_SPECS[sr_ratio])
        self.kv = nn.Linear(dims, 2 * dims)

    def forward(
        self,
        x: torch.Tensor,
        hw_shape: Tuple[Size, Size],
        significance: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, None]:
        """Attends to keys reallocated by ``significance`` ``(B, H, W)``; consumes the map."""
        if significance is None:
            raise ValueError(
                'significance-guided attention needs the significance map of a '
                'preceding hybrid-scale block'
            )
        q, lepe_input = self.in_proj(x).chunk(2, dim=-1)
        keys = self.reallocation(x, significance.flatten(1))
        k, v = self.split_heads(self.kv(keys), 2 * self.num_heads).chunk(2, dim=1)
        out, _ = attention(self.split_heads(q, self.num_heads), k, v, self.scale)
        return self.output(out.transpose(1, 2).flatten(2), lepe_input, hw_shape), None


class TokenReallocation(nn.Module):
    """Merges tokens into keys by significance (the paper's evolving token reallocation).

    Tokens are sorted by ascending significance and split into groups (see
    :class:`ReallocationSpec`); every ``k`` consecutive tokens of a group become one key through a
    learned weighted sum (``nn.Linear(k, 1)`` over the token axis, shared by all channels), so
    significant regions keep fine keys and the rest is summarised coarsely. When a group's size
    is not a multiple of ``k`` (inputs that are not multiples of 224) it is zero-padded at its
    least significant end.

    Args:
        spec: The grouping.
    """

    def __init__(self, spec: ReallocationSpec) -> None:
        super().__init__()
        self.spec = spec
        self.merges = nn.ModuleList(nn.Linear(size, 1) for size in spec.merge_sizes)

    def forward(self, x: torch.Tensor, significance: torch.Tensor) -> torch.Tensor:
        """Maps tokens ``(B, N, C)`` and significance ``(B, N)`` to keys ``(B, M, C)``."""
        order = torch.sort(significance, dim=1).indices  # the official call, ties included
        return gather_merge(x, order, self.spec.group_sizes(x.shape[1]), self.merges)

    def allocation(self, significance: torch.Tensor) -> torch.Tensor:
        """How many tokens share each token's key: ``(B, N)`` merge sizes (for visualisation)."""
        order = torch.sort(significance, dim=1).indices
        sizes = [
            torch.full((n,), merge.in_features, device=significance.device)
            for n, merge in zip(self.spec.group_sizes(significance.shape[1]), self.merges)
        ]
        allocation = torch.empty_like(order)
        return allocation.scatter_(1, order, torch.cat(sizes).expand_as(order))


class GlobalAttention(_AttentionBase):
    """Plain multi-head self-attention over all tokens (stages with ``sr_ratio == 1``).

    Args:
        dims: Channels.
        num_heads: Heads.
        proj_drop: Dropout rate after ``proj``.
    """

    def __init__(self, dims: int, num_heads: int, proj_drop: float = 0.0) -> None:
        # in_proj: [q | k | v | LePE input]
        super().__init__(dims, num_heads, in_proj_dims=4 * dims, proj_drop=proj_drop)

    def forward(
        self,
        x: torch.Tensor,
        hw_shape: Tuple[Size, Size],
        significance: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, None]:
        """Self-attention of all tokens; a ``significance`` map passing by is not used."""
        qkv, lepe_input = self.in_proj(x).split([3 * self.dims, self.dims], dim=-1)
        q, k, v = self.split_heads(qkv, 3 * self.num_heads).chunk(3, dim=1)
        out, _ = attention(q, k, v, self.scale)
        return self.output(out.transpose(1, 2).flatten(2), lepe_input, hw_shape), None


# ---------------------------------------------------------------- attention and significance
SIGNIFICANCE_CHUNK_ELEMENTS = 1 << 22
"""Attention weights formed at once (per query chunk) when computing key significance."""

ONE_PASS_DEVICE_TYPES = ('cpu',)
"""Devices where :func:`attention` forms the softmax once for the output and the significance
(two matrix products and one softmax, instead of the fused kernel followed by
:func:`key_significance`, which forms the logits and the softmax a second time; the same
significance bit for bit). Faster on the CPU (docs/benchmark.md); on CUDA the fused kernels
stay."""


def _chunked_softmax_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: Optional[torch.Tensor],
    scale: float,
    key_mask: Optional[torch.Tensor],
    query_weights: Optional[torch.Tensor],
) -> Tuple[Optional[torch.Tensor], torch.Tensor]:
    """Softmax attention formed once per query chunk: ``P @ v`` (if ``v`` is given) and the
    significance (column sums of ``P`` averaged over heads and weighted queries), in ``q``'s
    dtype. Arguments as in :func:`attention`."""
    keys_t = k.transpose(-2, -1)
    num_queries = q.shape[-2]
    # queries per chunk: attention weights of about SIGNIFICANCE_CHUNK_ELEMENTS at once
    weights_per_query = math.prod(q.shape[:-2]) * k.shape[-2]
    outs, total = [], None
    for start, end in chunk_bounds(num_queries, weights_per_query, SIGNIFICANCE_CHUNK_ELEMENTS):
        logits = torch.matmul(q[..., start:end, :], keys_t) * scale
        if key_mask is not None:
            logits = logits.masked_fill(~key_mask, float('-inf'))
        weights = logits.softmax(dim=-1)  # (..., heads, chunk, Lk)
        if v is not None:
            outs.append(torch.matmul(weights, v))
        if query_weights is None:
            part = weights.sum(dim=(-3, -2))
        else:
            per_query = weights.sum(dim=-3)
            chunk_weights = query_weights[..., start:end].to(q.dtype).unsqueeze(-2)
            part = torch.matmul(chunk_weights, per_query).squeeze(-2)
        total = part if total is None else total + part
    num_heads = q.shape[-3]
    significance = total / (num_heads * num_queries if query_weights is None else num_heads)
    out = None if v is None else outs[0] if len(outs) == 1 else torch.cat(outs, dim=-2)
    return out, significance


def significance_dtype(dtype: torch.dtype) -> torch.dtype:
    """Precision of the significance statistic for attention inputs of ``dtype``: float32 and
    float64 as given, float32 for fp16/bf16 (too coarse to rank tokens whose significance is
    nearly equal)."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


@torch.no_grad()
def key_significance(
    q: torch.Tensor,
    k: torch.Tensor,
    scale: float,
    key_mask: Optional[torch.Tensor] = None,
    query_weights: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The attention each key receives, averaged over heads and (weighted) queries.

    This is the significance statistic of hybrid-scale attention. It is accumulated over chunks
    of queries, so the full ``Lq x Lk`` attention matrix never exists, and it is computed with
    autocast disabled in the precision of :func:`significance_dtype` (float32 under fp16/bf16
    training; float64 models get a float64 statistic, whose near-ties then sort as in the official
    model in float64). No gradient flows through it (the official model detaches it as well).

    Args:
        q: Queries ``(..., heads, Lq, d)``.
        k: Keys ``(..., heads, Lk, d)``.
        scale: Factor applied to ``q @ k^T``.
        key_mask: Optional boolean, broadcastable to ``(..., 1, 1, Lk)``; False keys get none.
        query_weights: Optional ``(..., Lq)`` weights of the queries (default: the mean).

    Returns:
        ``(..., Lk)`` significance.
    """
    with torch.autocast(q.device.type, enabled=False):
        dtype = significance_dtype(q.dtype)
        return _chunked_softmax_attention(
            q.to(dtype), k.to(dtype), None, scale, key_mask, query_weights
        )[1]


def _one_pass_applies(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether :func:`attention` may form the softmax once for output and significance: on a
    device of ``ONE_PASS_DEVICE_TYPES``, in float32 or float64 without autocast (the statistic's
    precision; lower precisions keep the fused output kernel), without autograd (the explicit
    attention matrix would be kept for backward, which the fused kernels avoid)."""
    return (
        q.device.type in ONE_PASS_DEVICE_TYPES
        and q.dtype in (torch.float32, torch.float64)
        and not is_autocast_enabled(q.device.type)
        and not (torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)))
    )


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    key_mask: Optional[torch.Tensor] = None,
    query_weights: Optional[torch.Tensor] = None,
    need_key_significance: bool = False,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Multi-head scaled dot-product attention, optionally with each key's significance.

    The output comes from :func:`F.scaled_dot_product_attention` (fused kernels, no stored
    attention matrix in training); the significance, if asked for, from :func:`key_significance`.
    Where that is faster (see ``ONE_PASS_DEVICE_TYPES`` and :func:`_one_pass_applies`) both come
    from one softmax per query chunk instead.

    Args:
        q: Queries ``(..., heads, Lq, d)``.
        k: Keys ``(..., heads, Lk, d)``.
        v: Values ``(..., heads, Lk, d)``.
        scale: Factor applied to ``q @ k^T``.
        key_mask: Optional boolean, broadcastable to ``(..., 1, 1, Lk)``; False keys get no
            attention.
        query_weights: Optional ``(..., Lq)`` weights of the queries in the significance
            average (default: uniform).
        need_key_significance: Whether to return the significance of each key.

    Returns:
        The attention output ``(..., heads, Lq, d)`` and the ``(..., Lk)`` significance or None.
    """
    if need_key_significance and _one_pass_applies(q, k, v):
        return _chunked_softmax_attention(q, k, v, scale, key_mask, query_weights)
    significance = key_significance if need_key_significance else None
    return fused_attention(q, k, v, scale, key_mask, query_weights, significance)


def fused_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    key_mask: Optional[torch.Tensor] = None,
    query_weights: Optional[torch.Tensor] = None,
    significance: Optional[Callable[..., torch.Tensor]] = None,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The output of :func:`F.scaled_dot_product_attention` and, where ``significance`` (a
    function like :func:`key_significance`) is given, the significance computed by it apart
    from the output. Arguments as in :func:`attention`."""
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, scale=scale)
    if significance is None:
        return out, None
    return out, significance(q, k, scale, key_mask, query_weights)
