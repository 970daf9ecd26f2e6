"""Honest multiply-accumulate (MAC) counting (``tools/analysis_tools/get_flops.py``, the benchmark).

The counter is MMEngine's :class:`~mmengine.analysis.FlopAnalyzer` (the fvcore JIT-trace counter
behind ``get_model_complexity_info``; like the SG-Former, Swin and PVT papers, its "FLOPs" are
multiply-accumulates) with three corrections:

* ``aten::scaled_dot_product_attention`` has no handler in MMEngine, so attention written with
  ``F.scaled_dot_product_attention`` (all of SG-Former's attention) would count zero. We add one:
  ``batch * Lq * Lk * (E + Ev)`` MACs (``q @ k^T`` plus ``attn @ v``; softmax, scaling and
  masking are not counted, as for explicit attention through ``aten::matmul``).
* MMEngine's ``aten::matmul`` handler ignores broadcast batch dimensions of the *second* operand
  (``(1, k) @ (B, M, k, C)`` counts ``k * C`` instead of ``B * M * k * C``); ours broadcasts both.
* SG-Former's significance statistic (the mean attention each key receives) is part of the
  network's maths at no extra MACs: the straightforward implementation averages attention
  weights it has already formed. A fast implementation that never stores the weights recomputes
  ``q @ k^T`` for it. The network's MACs (the paper's definition, and what the benchmark divides
  by time) therefore exclude that recomputation: while tracing, the significance runs untraced
  (:func:`significance_untraced`: while it traces, the counter replaces
  ``attend_with_significance`` of the counted model's
  :class:`~mmsgformer.models.attention.HybridScaleAttention` modules; the statistic's result
  becomes a trace constant, the forward is unchanged) and its MACs are reported separately as
  ``recompute_macs``.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections import Counter
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import get_shape

from mmsgformer.models.attention import HybridScaleAttention, fused_attention, key_significance


def _broadcast(a: Sequence[int], b: Sequence[int]) -> List[int]:
    return list(torch.broadcast_shapes(tuple(a), tuple(b)))


def matmul_macs(shape1: Sequence[int], shape2: Sequence[int]) -> int:
    """MACs of ``torch.matmul`` of two shapes, broadcasting batch dimensions (numpy rules)."""
    a, b = list(shape1), list(shape2)
    if len(a) == 1:
        a = [1] + a
    if len(b) == 1:
        b = b + [1]
    if a[-1] != b[-2]:
        raise ValueError(f'matmul shapes do not match: {shape1} @ {shape2}')
    batch = _broadcast(a[:-2], b[:-2])
    return math.prod(batch) * a[-2] * a[-1] * b[-1]


def sdpa_macs(q: Sequence[int], k: Sequence[int], v: Sequence[int]) -> int:
    """MACs of scaled dot-product attention: ``q @ k^T`` and ``attn @ v``."""
    batch = _broadcast(_broadcast(q[:-2], k[:-2]), v[:-2])
    return math.prod(batch) * q[-2] * k[-2] * (q[-1] + v[-1])


def _matmul_handle(inputs: List[Any], outputs: List[Any]) -> int:
    return matmul_macs(get_shape(inputs[0]), get_shape(inputs[1]))


def _sdpa_handle(inputs: List[Any], outputs: List[Any]) -> int:
    return sdpa_macs(get_shape(inputs[0]), get_shape(inputs[1]), get_shape(inputs[2]))


EXTRA_HANDLES = {
    'aten::scaled_dot_product_attention': _sdpa_handle,
    'aten::matmul': _matmul_handle,
}

# Ops that are costless by the fvcore convention (views, copies, elementwise maths, sorting);
# listed so that an op outside this list shows up as "not counted" and gets a look.
ZERO_COST_OPS = (
    'aten::add',
    'aten::add_',
    'aten::sub',
    'aten::rsub',
    'aten::mul',
    'aten::mul_',
    'aten::div',
    'aten::gelu',
    'aten::relu',
    'aten::relu_',
    'aten::sigmoid',
    'aten::softmax',
    'aten::mean',
    'aten::sum',
    'aten::sort',
    'aten::gather',
    'aten::index_select',
    'aten::pad',
    'aten::constant_pad_nd',
    'aten::repeat_interleave',
    'aten::expand_as',
    'aten::unflatten',
    'aten::numel',
    'aten::fill_',
    'aten::ne',
    'aten::eq',
    'aten::im2col',
    'aten::masked_fill',
    'aten::dropout',
    'aten::feature_dropout',
    'aten::max_pool2d',
    'aten::topk',
    'aten::exp',
    'aten::log',
    'aten::neg',
    'aten::sqrt',
    'aten::abs',
    'aten::clamp',
    'aten::floor_divide',
    'aten::roll',
    'aten::clone',
    'aten::copy_',
    'aten::linspace',
    'aten::arange',
    'aten::bernoulli_',
    'aten::new_empty',
    'aten::scatter_',
    'aten::scatter',
    'aten::where',
    'aten::max',
    'aten::min',
    'aten::argmax',
    'aten::lt',
    'aten::gt',
    'aten::ge',
    'aten::le',
    'aten::__and__',
    'aten::__or__',
    'aten::bitwise_not',
    'aten::silu',
    'aten::hardswish',
    'aten::log_softmax',
    'aten::sigmoid_',
    'aten::upsample_bicubic2d',
    'aten::log2',
    'aten::repeat',
    'aten::expand',
    'aten::flatten',
    'aten::view',
    'aten::reshape',
)


def _untraced_significance(record: List[int]) -> Callable[..., torch.Tensor]:
    """:func:`~mmsgformer.models.attention.key_significance` run outside the JIT trace (its
    result becomes a trace constant; the forward is unchanged), appending its ``q @ k^T`` MACs
    to ``record``."""

    def untraced(q, k, *args):
        record.append(matmul_macs(q.shape, k.transpose(-2, -1).shape))
        state = torch._C._get_tracing_state()
        torch._C._set_tracing_state(None)
        try:
            return key_significance(q, k, *args)
        finally:
            torch._C._set_tracing_state(state)

    return untraced


@contextlib.contextmanager
def significance_untraced(model: nn.Module, record: List[int]) -> Iterator[None]:
    """While active, every hybrid-scale attention of ``model`` computes its output with the
    fused kernel (traced) and its significance by :func:`_untraced_significance` (not traced).

    It replaces ``attend_with_significance`` on those instances and restores them on exit.
    """
    significance = _untraced_significance(record)
    modules = [m for m in model.modules() if isinstance(m, HybridScaleAttention)]
    for module in modules:
        module.attend_with_significance = functools.partial(
            _attend_untraced, module.scale, significance
        )
    try:
        yield
    finally:
        for module in modules:
            del module.attend_with_significance


def _attend_untraced(
    scale: float,
    significance: Callable[..., torch.Tensor],
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: Optional[torch.Tensor] = None,
    query_weights: Optional[torch.Tensor] = None,
):
    return fused_attention(q, k, v, scale, key_mask, query_weights, significance)


class _Wrapper(nn.Module):
    """Lets FlopAnalyzer trace any callable of a model (e.g. ``extract_feat``)."""

    def __init__(self, model: nn.Module, fn) -> None:
        super().__init__()
        self.model = model
        self._callables = [fn]  # a list: not a submodule (it may be ``model`` itself)

    def forward(self, *inputs):
        out = self._callables[0](*inputs)
        return _tensors_only(out)


def _tensors_only(out):
    """Tuple of the tensors in a nested output (the tracer accepts nothing else)."""
    if isinstance(out, torch.Tensor):
        return out
    flat: List[torch.Tensor] = []

    def walk(o):
        if isinstance(o, torch.Tensor):
            flat.append(o)
        elif isinstance(o, (list, tuple)):
            for item in o:
                walk(item)
        elif isinstance(o, dict):
            for item in o.values():
                walk(item)

    walk(out)
    return tuple(flat)


def count_macs(
    model: nn.Module, inputs: Sequence[torch.Tensor], fn=None, count_recompute: bool = False
) -> Dict[str, Any]:
    """Traces ``fn(*inputs)`` (default ``model(*inputs)``) once and counts its MACs.

    Args:
        model: The model (its parameters are counted; put it in eval mode first).
        inputs: Positional tensor inputs.
        fn: Callable to trace; default the model's forward.
        count_recompute: Also count SG-Former's significance recomputation (everything executed)
            instead of reporting it separately.

    Returns:
        dict with ``macs`` (total), ``by_operator`` (Counter), ``not_counted`` (ops without a
        handler that are not costless by convention, with their call counts), ``recompute_macs``
        (significance ``q @ k^T`` that the total excludes; 0 if counted or absent) and ``params``.
    """
    wrapped = _Wrapper(model, fn if fn is not None else model)
    record: List[int] = []
    ctx = contextlib.nullcontext() if count_recompute else significance_untraced(model, record)
    with ctx, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        analyzer = FlopAnalyzer(wrapped, tuple(inputs))
        analyzer.set_op_handle(**EXTRA_HANDLES)
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        analyzer.tracer_warnings('none')
        total = analyzer.total()
        by_op = Counter(analyzer.by_operator())
        unsupported = analyzer.unsupported_ops()
    not_counted = {op: n for op, n in unsupported.items() if op not in ZERO_COST_OPS}
    return dict(
        macs=int(total),
        by_operator=by_op,
        not_counted=not_counted,
        recompute_macs=int(sum(record)),
        params=int(parameter_count(model)['']),
    )
