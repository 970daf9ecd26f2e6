"""The fast attention paths against the straightforward math, and their numerical safety.

The references below are written independently of the implementation: dense ``N x N`` attention
with explicit softmax and a same-window mask instead of window partitioning, per-token loops
instead of vectorised gathers.
"""

import pytest
import torch
import torch.nn.functional as F
from conftest import check_memory_functions_match_plain_graph, requires_cpu_half

import mmsgformer.models.attention as attention_module
from mmsgformer.models.attention import (
    LOCAL_WINDOW,
    REALLOCATION_SPECS,
    GlobalAttention,
    HybridScaleAttention,
    SignificanceGuidedAttention,
    TokenReallocation,
    attention,
    key_significance,
)

torch.manual_seed(0)


def softmax_attention(q, k, v, scale, mask=None):
    logits = (q @ k.transpose(-2, -1)) * scale
    if mask is not None:
        logits = logits.masked_fill(~mask, float('-inf'))
    weights = logits.softmax(-1)
    return weights @ v, weights


def lepe(module, x, hw):
    b, n, c = x.shape
    grid = x.transpose(1, 2).reshape(b, c, *hw)
    return module.lepe.conv(grid).flatten(2).transpose(1, 2)


def reference_hybrid(module: HybridScaleAttention, x, hw):
    """Hybrid-scale attention and significance, computed densely per image."""
    b, n, c = x.shape
    h, w = hw
    heads, d = module.num_heads // 2, module.head_dims
    q_g, q_l, k_l, v_l, lepe_in = module.in_proj(x).split([c // 2] * 4 + [c], -1)
    split = lambda t: t.reshape(b, -1, heads, d).transpose(1, 2)  # noqa: E731
    # global half: pad to a multiple of sr, reduce, normalise
    sr = module.sr_ratio
    grid = x.transpose(1, 2).reshape(b, c, h, w)
    grid = F.pad(grid, (0, -w % sr, 0, -h % sr))
    reduced = module.sr(grid)
    rh, rw = reduced.shape[-2:]
    tokens = module.sr_act(module.sr_norm(reduced.flatten(2).transpose(1, 2)))
    k_g, v_g = module.global_kv(tokens).chunk(2, -1)
    out_g, weights_g = softmax_attention(split(q_g), split(k_g), split(v_g), module.scale)
    sig_g = weights_g.mean(1).mean(1).reshape(b, rh, rw)
    sig_g = sig_g.repeat_interleave(sr, 1).repeat_interleave(sr, 2)[:, :h, :w]
    # local half: dense attention restricted to tokens of the same 7x7 window
    rows = torch.arange(h).repeat_interleave(w) // LOCAL_WINDOW
    cols = torch.arange(w).repeat(h) // LOCAL_WINDOW
    same = (rows[:, None] == rows[None, :]) & (cols[:, None] == cols[None, :])
    out_l, weights_l = softmax_attention(split(q_l), split(k_l), split(v_l), module.scale, same)
    sig_l = (weights_l.mean(1).sum(1) / LOCAL_WINDOW**2).reshape(b, h, w)
    out = torch.cat(
        [out_g.transpose(1, 2).reshape(b, n, -1), out_l.transpose(1, 2).reshape(b, n, -1)], -1
    )
    return module.proj(out + lepe(module, lepe_in, hw)), sig_g + sig_l


def reference_reallocation(module: TokenReallocation, x, significance):
    """Keys by sorting, splitting and merging one token at a time."""
    b, n, c = x.shape
    spec = module.spec
    keys = []
    for i in range(b):
        order = torch.sort(significance[i]).indices.tolist()
        part = n // spec.parts
        bounds = [0]
        for count in spec.part_counts[:-1]:
            bounds.append(bounds[-1] + part * count)
        bounds.append(n)
        image_keys = []
        for g, merge in enumerate(module.merges):
            members = order[bounds[g] : bounds[g + 1]]
            size = merge.in_features
            members = [None] * (-len(members) % size) + members  # zero tokens in front
            for start in range(0, len(members), size):
                total = merge.bias.clone().expand(c).clone()
                for slot, token in enumerate(members[start : start + size]):
                    if token is not None:
                        total = total + merge.weight[0, slot] * x[i, token]
                image_keys.append(total)
        keys.append(torch.stack(image_keys))
    return torch.stack(keys)


@pytest.mark.parametrize('hw', [(14, 14), (10, 13), (5, 9), (21, 8)])
@pytest.mark.parametrize('sr', [2, 4])
def test_hybrid_scale_attention_equals_dense_math(hw, sr):
    module = HybridScaleAttention(32, 4, sr).eval()
    x = torch.randn(2, hw[0] * hw[1], 32)
    with torch.no_grad():
        out, sig = module(x, hw)
        ref_out, ref_sig = reference_hybrid(module, x, hw)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sig, ref_sig, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    'sr,n', [(8, 3136), (8, 130), (4, 784), (4, 91), (2, 196), (2, 15), (8, 3)]
)
def test_token_reallocation_equals_loop(sr, n):
    module = TokenReallocation(REALLOCATION_SPECS[sr])
    for merge in module.merges:
        torch.nn.init.normal_(merge.weight)
        torch.nn.init.normal_(merge.bias)
    x = torch.randn(2, n, 8)
    significance = torch.rand(2, n)
    with torch.no_grad():
        keys = module(x, significance)
        expected = reference_reallocation(module, x, significance)
    torch.testing.assert_close(keys, expected, atol=1e-5, rtol=1e-5)
    if sr == 8 and n == 3136:  # the official 224x224 grouping: 4 + 28 + 28 keys
        assert keys.shape[1] == 60


@pytest.mark.parametrize('sr,n', [(8, 130), (2, 15), (4, 91)])
def test_gather_merge_equals_plain_graph_and_keeps_less(sr, n):
    """Training recomputes the gathered tokens in backward: same keys and gradients as the plain
    graph (gradcheck in float64), the gathered copies not kept."""
    from mmsgformer.models.layers import merge_groups
    from mmsgformer.models.memory_saving import GatherMerge

    gen = torch.Generator().manual_seed(0)
    module = TokenReallocation(REALLOCATION_SPECS[sr])
    for p in module.parameters():
        p.data.copy_(torch.randn(p.shape, generator=gen))
    x = torch.randn(2, n, 8, generator=gen, requires_grad=True)
    significance = torch.rand(2, n, generator=gen)
    params = [p for merge in module.merges for p in (merge.weight, merge.bias)]
    order = torch.sort(significance, dim=1).indices
    group_sizes = module.spec.group_sizes(n)

    def plain():
        ordered = x.gather(1, order.unsqueeze(-1).expand_as(x))
        return merge_groups(ordered, group_sizes, params[0::2], params[1::2])

    results = {}
    for fused, fn in ((True, lambda: module(x, significance)), (False, plain)):
        x.grad = None
        module.zero_grad()
        keys = fn()
        assert (type(keys.grad_fn).__name__ == 'GatherMergeBackward') == fused
        keys.square().sum().backward()
        results[fused] = (keys, x.grad.clone(), [p.grad.clone() for p in params], saved_bytes(fn))
    (keys_f, gx_f, gp_f, bytes_f), (keys_p, gx_p, gp_p, bytes_p) = results[True], results[False]
    torch.testing.assert_close(keys_f, keys_p, atol=0, rtol=0)
    torch.testing.assert_close(gx_f, gx_p)
    for a, b in zip(gp_f, gp_p):
        torch.testing.assert_close(a, b)
    assert bytes_p - bytes_f >= 2 * n * 8 * 4  # at least the gathered copy
    args = [x.detach().double()] + [p.detach().double() for p in params]
    assert torch.autograd.gradcheck(
        lambda x, *params: GatherMerge.apply(x, order, group_sizes, *params),
        [a.requires_grad_() for a in args],
    )


def test_significance_guided_attention_equals_dense_math():
    module = SignificanceGuidedAttention(32, 4, 4).eval()
    hw = (9, 11)
    x = torch.randn(2, 99, 32)
    significance = torch.rand(2, *hw)
    with torch.no_grad():
        out, consumed = module(x, hw, significance)
        q, lepe_in = module.in_proj(x).chunk(2, -1)
        keys = reference_reallocation(module.reallocation, x, significance.flatten(1))
        k, v = module.kv(keys).chunk(2, -1)
        split = lambda t: t.reshape(2, -1, 4, 8).transpose(1, 2)  # noqa: E731
        attended, _ = softmax_attention(split(q), split(k), split(v), module.scale)
        expected = module.proj(
            attended.transpose(1, 2).reshape(2, 99, 32) + lepe(module, lepe_in, hw)
        )
    assert consumed is None
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_global_attention_equals_dense_math():
    module = GlobalAttention(32, 4).eval()
    hw = (3, 5)
    x = torch.randn(2, 15, 32)
    with torch.no_grad():
        out, _ = module(x, hw)
        q, k, v, lepe_in = module.in_proj(x).chunk(4, -1)
        split = lambda t: t.reshape(2, -1, 4, 8).transpose(1, 2)  # noqa: E731
        attended, _ = softmax_attention(split(q), split(k), split(v), module.scale)
        expected = module.proj(
            attended.transpose(1, 2).reshape(2, 15, 32) + lepe(module, lepe_in, hw)
        )
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('masked', [False, True])
def test_key_significance_accumulates_over_query_chunks(monkeypatch, masked):
    q, k, v = torch.randn(2, 3, 100, 16), torch.randn(2, 3, 37, 16), torch.randn(2, 3, 37, 16)
    mask = torch.rand(2, 1, 1, 37) > 0.3 if masked else None
    query_weights = torch.rand(2, 100) if masked else None
    _, weights = softmax_attention(q, k, v, 0.25, mask)
    per_key = weights.mean(1)
    expected = (
        per_key.mean(1) if query_weights is None else (query_weights[:, :, None] * per_key).sum(1)
    )
    monkeypatch.setattr(attention_module, 'SIGNIFICANCE_CHUNK_ELEMENTS', 3 * 37 * 7)  # 7 queries
    chunked = key_significance(q, k, 0.25, mask, query_weights)
    torch.testing.assert_close(chunked, expected, atol=1e-6, rtol=1e-5)
    out, significance = attention(q, k, v, 0.25, mask, query_weights, need_key_significance=True)
    torch.testing.assert_close(significance, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out, softmax_attention(q, k, v, 0.25, mask)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('masked', [False, True])
def test_one_pass_equals_fused_output_and_separate_significance(monkeypatch, masked):
    """Inference on the CPU forms the softmax once for output and significance; it must give
    what the fused kernel plus key_significance (the plain fallback) give, chunked or not."""
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 3, n, 16, generator=gen) for n in (100, 37, 37))
    mask = torch.rand(2, 1, 1, 37, generator=gen) > 0.3 if masked else None
    query_weights = torch.rand(2, 100, generator=gen) if masked else None
    sdpa_calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(
        F, 'scaled_dot_product_attention', lambda *a, **kw: sdpa_calls.append(1) or sdpa(*a, **kw)
    )
    results = {}
    for one_pass in (True, False):
        monkeypatch.setattr(attention_module, 'ONE_PASS_DEVICE_TYPES', ('cpu',) if one_pass else ())
        for chunk_elements in (1 << 22, 3 * 37 * 7):  # one chunk; chunks of 7 queries
            monkeypatch.setattr(attention_module, 'SIGNIFICANCE_CHUNK_ELEMENTS', chunk_elements)
            sdpa_calls.clear()
            results[one_pass, chunk_elements] = attention(
                q, k, v, 0.25, mask, query_weights, need_key_significance=True
            )
            assert len(sdpa_calls) == (0 if one_pass else 1)
    reference = results[False, 1 << 22]
    for out, significance in results.values():
        torch.testing.assert_close(out, reference[0], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(significance, reference[1], atol=1e-7, rtol=1e-6)


def test_one_pass_only_without_autograd_and_autocast(monkeypatch):
    """Training keeps the fused kernel (no attention matrix stored for backward), autocast keeps
    its precision."""
    sdpa_calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(
        F, 'scaled_dot_product_attention', lambda *a, **kw: sdpa_calls.append(1) or sdpa(*a, **kw)
    )
    q, k, v = (torch.randn(1, 2, n, 8) for n in (20, 9, 9))

    def calls(*tensors, context=None):
        sdpa_calls.clear()
        with context or torch.no_grad():
            attention(*tensors, 0.3, need_key_significance=True)
        return len(sdpa_calls)

    assert calls(q, k, v) == 0
    assert calls(q.double(), k.double(), v.double()) == 0
    assert calls(q.requires_grad_(), k, v, context=torch.enable_grad()) == 1
    assert calls(q.detach(), k, v, context=torch.autocast('cpu', dtype=torch.bfloat16)) == 1
    assert calls(q.bfloat16(), k.bfloat16(), v.bfloat16()) == 1


@pytest.mark.parametrize(
    'dtype', [torch.bfloat16, pytest.param(torch.float16, marks=requires_cpu_half)]
)
def test_autocast_close_to_float32_and_significance_in_float32(dtype):
    module = HybridScaleAttention(64, 4, 2).eval()
    x = torch.randn(2, 10 * 13, 64)
    with torch.no_grad():
        out32, sig32 = module(x, (10, 13))
        with torch.autocast('cpu', dtype=dtype):
            out_low, sig_low = module(x, (10, 13))
    assert out_low.dtype == dtype and sig_low.dtype == torch.float32
    torch.testing.assert_close(out_low.float(), out32, atol=5e-2, rtol=5e-2)
    torch.testing.assert_close(sig_low, sig32, atol=5e-3, rtol=5e-2)


@requires_cpu_half
def test_fp16_logits_beyond_half_range_stay_finite():
    """q.k reaches ~8e4 > 65504 (fp16 max): a half-precision softmax of the raw logits overflows.

    Own generator: the outcome must not depend on which tests ran before. Rounding q and k to
    fp16 moves logits of this size by several units, so near-tied keys may swap weight in an
    element or two (seen: 0.8 with seed 7); the output is compared on average.
    """
    gen = torch.Generator().manual_seed(0)
    q, k, v = (
        torch.randn(1, 2, n, 32, generator=gen) * s for n, s in ((50, 60), (40, 60), (40, 1))
    )
    assert not torch.isfinite(q.half() @ k.half().transpose(-2, -1)).all()
    ref_out, ref_sig = attention(q, k, v, 32**-0.5, need_key_significance=True)
    with torch.autocast('cpu', dtype=torch.float16):
        out, sig = attention(q, k, v, 32**-0.5, need_key_significance=True)
    assert torch.isfinite(out).all() and torch.isfinite(sig).all()
    torch.testing.assert_close(sig, ref_sig, atol=1e-5, rtol=1e-4)
    assert (out.float() - ref_out).abs().mean() < 1e-2


@requires_cpu_half
def test_fp16_training_step_with_large_activations():
    from conftest import TINY_ARCH

    from mmsgformer.models import SGFormer

    model = SGFormer(arch=TINY_ARCH, drop_path_rate=0.0).train()
    with torch.no_grad():  # make attention logits huge in the first stage
        for block in model.stages[0].blocks:
            block.attn.in_proj.weight.mul_(30)
        model.stages[0].blocks[0].attn.global_kv.weight.mul_(30)
    x = torch.randn(2, 3, 160, 224) * 3
    with torch.autocast('cpu', dtype=torch.float16):
        outs, records = model.forward_with_significance(x)
        loss = sum(o.float().square().mean() for o in outs)
    loss.backward()
    assert all(torch.isfinite(o).all() for o in outs)
    assert all(torch.isfinite(r['significance']).all() for r in records)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize('channels_last', [True, False])
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_group_norm_by_reduction_equals_native(channels_last, dtype):
    """SGFormer's GroupNorm(1, C) on CUDA (statistics from a general reduction) is the
    straightforward math: checked against F.group_norm in float32, values and gradients."""
    from mmsgformer.models.layers import group_norm_by_reduction

    torch.manual_seed(0)
    x = torch.randn(3, 16, 9, 13) * 3 + 1
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x = x.to(dtype).requires_grad_()
    weight, bias = torch.randn(16, requires_grad=True), torch.randn(16, requires_grad=True)
    ours = group_norm_by_reduction(x, weight, bias, 1e-5)
    assert ours.dtype == dtype and ours.shape == x.shape
    native = F.group_norm(x.float(), 1, weight, bias, 1e-5)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(ours.float(), native, atol=tol * 10, rtol=tol)
    grad_out = torch.randn_like(native)
    ours_grads = torch.autograd.grad((ours.float() * grad_out).sum(), (x, weight, bias))
    native_grads = torch.autograd.grad((native * grad_out).sum(), (x, weight, bias))
    for a, b in zip(ours_grads, native_grads):
        torch.testing.assert_close(a.float(), b.float(), atol=tol * 10, rtol=tol * 10)


def saved_bytes(fn):
    """Bytes of the distinct storages autograd keeps for backward while running ``fn``."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


def test_conv_gelu_linear_equals_plain_mlp_and_keeps_less():
    """The MLP tail that recomputes its hidden activations in backward: same values and
    gradients as the plain graph (gradcheck in float64 too), two hidden-size tensors fewer kept."""
    from mmsgformer.models import memory_saving
    from mmsgformer.models.memory_saving import ConvGeluLinear
    from mmsgformer.models.sgformer import ConvMlp

    gen = torch.Generator().manual_seed(0)
    mlp = ConvMlp(8, 32)
    hw = (9, 13)
    x = torch.randn(2, hw[0] * hw[1], 8, generator=gen, requires_grad=True)
    results = {}
    for fused in (True, False):
        mlp.zero_grad()
        x.grad = None
        with pytest.MonkeyPatch.context() as patch:
            if not fused:
                patch.setattr(memory_saving, 'memory_saving_applies', lambda *a, **k: False)
            out = mlp(x, hw)
            assert (type(out.grad_fn).__name__ == 'ConvGeluLinearBackward') == fused
            nbytes = saved_bytes(lambda: mlp(x, hw))
        out.square().sum().backward()
        results[fused] = (out, x.grad.clone(), [p.grad.clone() for p in mlp.parameters()], nbytes)
    (out_f, gx_f, gp_f, bytes_f), (out_p, gx_p, gp_p, bytes_p) = results[True], results[False]
    torch.testing.assert_close(out_f, out_p)
    torch.testing.assert_close(gx_f, gx_p)
    for a, b in zip(gp_f, gp_p):
        torch.testing.assert_close(a, b)
    hidden_bytes = 2 * hw[0] * hw[1] * 32 * 4
    bias_bytes = mlp.dwconv.bias.numel() * 4  # kept to recompute the convolution
    assert bytes_p - bytes_f == 2 * hidden_bytes - bias_bytes
    h = torch.randn(2, 6, 4, 5, dtype=torch.double, generator=gen)
    args = [h.contiguous(memory_format=torch.channels_last)] + [
        torch.randn(*shape, dtype=torch.double, generator=gen)
        for shape in ((6, 1, 3, 3), (6,), (3, 6), (3,))
    ]
    assert torch.autograd.gradcheck(ConvGeluLinear.apply, [a.requires_grad_() for a in args])


def test_hybrid_scale_training_keeps_no_local_projection():
    """In training the fused input projection runs as three products, so the local queries,
    keys and values (copied into windows) are not kept; values and gradients as with one
    product (up to float32 rounding)."""
    gen = torch.Generator().manual_seed(0)
    module = HybridScaleAttention(32, 4, 2).train()
    hw = (14, 14)
    x = torch.randn(2, 196, 32, generator=gen, requires_grad=True)
    results = {}
    for split in (True, False):
        module.zero_grad()
        x.grad = None
        with pytest.MonkeyPatch.context() as patch:
            if not split:
                patch.setattr(
                    HybridScaleAttention,
                    '_in_proj_parts',
                    lambda self, x: self.in_proj(x).split([16, 48, 32], -1),
                )
            out, significance = module(x, hw)
            nbytes = saved_bytes(lambda: module(x, hw))
        (out.square().sum() + (out * significance.flatten(1)[..., None]).sum()).backward()
        results[split] = (
            out,
            significance,
            x.grad.clone(),
            [p.grad.clone() for p in module.parameters()],
            nbytes,
        )
    split, plain = results[True], results[False]
    for a, b in zip(split[:3] + tuple(split[3]), plain[:3] + tuple(plain[3])):
        torch.testing.assert_close(a, b)  # float32 rounding: other matrix-product blockings
    assert plain[4] - split[4] == 2 * 196 * 48 * 4  # the local q, k, v: 48 channels


@pytest.mark.parametrize('where', ['stem', 'merge'])
def test_norm_gelu_conv_equals_plain_graph_and_keeps_less(where):
    """The stem and downsampling layers recompute GroupNorm + GELU in backward: same values and
    gradients as the plain graph, two maps fewer kept per fused step (gradcheck in float64)."""
    from mmsgformer.models import memory_saving
    from mmsgformer.models.memory_saving import NormGeluConv
    from mmsgformer.models.sgformer import ConvStem, PatchMerging

    gen = torch.Generator().manual_seed(0)
    module = ConvStem(3, 8) if where == 'stem' else PatchMerging(8, 16)
    for p in module.parameters():  # non-trivial norm parameters
        p.data.add_(torch.randn(p.shape, generator=gen) * 0.1)
    shape = (2, 3, 20, 28) if where == 'stem' else (2, 8, 10, 14)
    x = torch.randn(*shape, generator=gen).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    results = {}
    for fused in (True, False):
        module.zero_grad()
        x.grad = None
        with pytest.MonkeyPatch.context() as patch:
            if not fused:
                patch.setattr(memory_saving, 'memory_saving_applies', lambda *a, **k: False)
            out, _ = module(x)
            nbytes = saved_bytes(lambda: module(x))
        out.square().sum().backward()
        results[fused] = (
            out,
            x.grad.clone(),
            [p.grad.clone() for p in module.parameters()],
            nbytes,
        )
    (out_f, gx_f, gp_f, bytes_f), (out_p, gx_p, gp_p, bytes_p) = results[True], results[False]
    torch.testing.assert_close(out_f, out_p, atol=0, rtol=0)
    torch.testing.assert_close(gx_f, gx_p)
    for a, b in zip(gp_f, gp_p):
        torch.testing.assert_close(a, b)
    # not kept: the first convolution's output, the norm's and the GELU's (the stem: conv1 ->
    # conv2 and conv2 -> conv3 at half resolution, 8 channels, less conv2's output, which the
    # second step keeps; downsampling: at the input resolution, 16 channels)
    map_bytes = 2 * 8 * 10 * 14 * 4 if where == 'stem' else 2 * 16 * 10 * 14 * 4
    kept_less = (5 if where == 'stem' else 3) * map_bytes
    # (less the norm's per-sample statistics and parameters, which the function keeps)
    assert 0 <= kept_less - (bytes_p - bytes_f) <= 128
    for first_args, channels in ((([2, 2], [1, 1]), 3), (None, 3), (None, 4)):
        x = torch.randn(2, channels, 5, 6, dtype=torch.double, generator=gen)
        weight = torch.randn(4, 1, 3, 3, dtype=torch.double, generator=gen)
        norm = [torch.randn(4, dtype=torch.double, generator=gen) for _ in range(2)]
        first = (
            None
            if channels == 4
            else torch.randn(
                4, channels, *((3, 3) if first_args else (1, 1)), dtype=torch.double, generator=gen
            )
        )
        tensors = [
            t.requires_grad_() for t in [x] + norm + [weight] + ([] if first is None else [first])
        ]

        def fn(x, norm_weight, norm_bias, weight, first=None, first_args=first_args):
            return NormGeluConv.apply(
                x, first, first_args, norm_weight, norm_bias, 1e-5, weight, [2, 2], [1, 1], 4
            )

        assert torch.autograd.gradcheck(fn, tensors)


def test_layer_norm_linear_equals_plain_graph_and_keeps_less():
    """The block's second LayerNorm and fc1 recompute the normed tokens in backward: same
    values and gradients as the plain modules, one token-sized tensor fewer kept."""
    from mmsgformer.models.memory_saving import LayerNormLinear

    gen = torch.Generator().manual_seed(0)
    norm, linear = torch.nn.LayerNorm(8, eps=1e-6), torch.nn.Linear(8, 24)
    for p in norm.parameters():
        p.data.add_(torch.randn(p.shape, generator=gen))
    x = torch.randn(2, 35, 8, generator=gen, requires_grad=True)
    results = {}
    for fused in (True, False):
        for module in (norm, linear):
            module.zero_grad()
        x.grad = None
        fn = (
            (lambda: LayerNormLinear.apply(x, *norm.parameters(), norm.eps, *linear.parameters()))
            if fused
            else (lambda: linear(norm(x)))
        )
        out = fn()
        assert (type(out.grad_fn).__name__ == 'LayerNormLinearBackward') == fused
        out.square().sum().backward()
        results[fused] = (
            out,
            x.grad.clone(),
            [p.grad.clone() for m in (norm, linear) for p in m.parameters()],
            saved_bytes(fn),
        )
    (out_f, gx_f, gp_f, bytes_f), (out_p, gx_p, gp_p, bytes_p) = results[True], results[False]
    torch.testing.assert_close(out_f, out_p, atol=0, rtol=0)
    torch.testing.assert_close(gx_f, gx_p)
    for a, b in zip(gp_f, gp_p):
        torch.testing.assert_close(a, b)
    assert bytes_p - bytes_f == 2 * 35 * 8 * 4  # the normed tokens
    args = [
        torch.randn(*shape, dtype=torch.double, generator=gen)
        for shape in ((2, 5, 4), (4,), (4,), (3, 4), (3,))
    ]
    assert torch.autograd.gradcheck(
        lambda x, nw, nb, w, b: LayerNormLinear.apply(x, nw, nb, 1e-6, w, b),
        [a.requires_grad_() for a in args],
    )


def test_inference_residual_in_place_same_outputs():
    """Inference adds the residuals in place into the branch outputs: the same features bit for
    bit, under autocast too (a float32 residual stream is not added into a bf16 branch)."""
    from conftest import TINY_ARCH

    from mmsgformer.models import SGFormer
    from mmsgformer.models import sgformer as sgformer_module

    model = SGFormer(arch=TINY_ARCH).eval()
    x = torch.randn(2, 3, 64, 96)
    adds = []
    plain_add = sgformer_module.residual_add

    def spy(a, b):
        out = plain_add(a, b)
        adds.append(out.data_ptr() == b.data_ptr())
        return out

    with torch.no_grad(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(sgformer_module, 'residual_add', spy)
        fast = model(x)
        assert adds and all(adds)
        patch.setattr(sgformer_module, 'residual_add', lambda a, b: a + b)
        plain = model(x)
        for a, b in zip(fast, plain):
            assert torch.equal(a, b)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            plain = model(x)
            adds.clear()
            patch.setattr(sgformer_module, 'residual_add', spy)
            fast = model(x)
        assert not all(adds)  # float32 stream + bf16 branch: not in place
        for a, b in zip(fast, plain):
            assert torch.equal(a, b)


def test_training_memory_functions_same_model_gradients(monkeypatch):
    check_memory_functions_match_plain_graph(monkeypatch)


def test_conv_gelu_linear_under_autocast_close_to_float32():
    from mmsgformer.models.sgformer import ConvMlp

    torch.manual_seed(0)
    mlp = ConvMlp(16, 64)
    x = torch.randn(2, 10 * 12, 16, requires_grad=True)
    mlp(x, (10, 12)).square().sum().backward()
    ref = [x.grad.clone()] + [p.grad.clone() for p in mlp.parameters()]
    x.grad = None
    mlp.zero_grad()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = mlp(x, (10, 12))
    assert out.dtype == torch.bfloat16
    out.float().square().sum().backward()
    for grad, expected in zip([x.grad] + [p.grad for p in mlp.parameters()], ref):
        assert grad.dtype == torch.float32
        assert (grad - expected).norm() <= 0.05 * expected.norm()
