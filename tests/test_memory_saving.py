"""The modules' memory-saving forwards (mmsgformer.models.memory_saving) against autograd of
their plain forwards, and where each is taken."""

import pytest
import torch
from conftest import autograd_node_names

from mmsgformer.models import memory_saving
from mmsgformer.models.sgformer import ConvMlp, ConvStem, PatchMerging


def _perturbed(module: torch.nn.Module, gen: torch.Generator) -> torch.nn.Module:
    """``module`` in float64 with non-trivial norm parameters and biases."""
    module = module.double()
    for p in module.parameters():
        p.data.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.1)
    return module


def _outputs_and_grads(fn, module, x):
    """``fn()``'s output and the gradients of a fixed random direction through it, for ``x``
    and every parameter of ``module``."""
    module.zero_grad()
    x.grad = None
    out = fn()
    direction = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    (out * direction).sum().backward()
    return [out.detach(), x.grad.clone()] + [p.grad.clone() for p in module.parameters()]


def _plain(monkeypatch):
    monkeypatch.setattr(memory_saving, 'memory_saving_applies', lambda *a, **k: False)


CASES = {
    'stem': (lambda: ConvStem(3, 8), (2, 3, 21, 26), 'conv_stem', {'NormGeluConvBackward'}),
    'merging': (
        lambda: PatchMerging(8, 16),
        (2, 8, 11, 13),
        'patch_merging',
        {'NormGeluConvBackward'},
    ),
}


@pytest.mark.parametrize('where', sorted(CASES))
def test_conv_layers_backward_equals_autograd_of_plain_forward(where, monkeypatch):
    """Float64: the stem's and patch merging's hand-written backward (NormGeluConv) gives the
    gradients that autograd of their plain forward gives, for the input and every parameter."""
    build, shape, name, nodes = CASES[where]
    gen = torch.Generator().manual_seed(0)
    module = _perturbed(build(), gen).train()
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    assert memory_saving.norm_gelu_conv_applies(module, x)
    saving = getattr(memory_saving, name)
    assert nodes <= autograd_node_names(saving(module, x)[0])
    results = _outputs_and_grads(lambda: saving(module, x)[0], module, x)
    _plain(monkeypatch)
    assert not nodes & autograd_node_names(module(x)[0])
    expected = _outputs_and_grads(lambda: module(x)[0], module, x)
    for got, want in zip(results, expected):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize('with_norm', [True, False])
def test_mlp_backward_equals_autograd_of_plain_forward(with_norm, monkeypatch):
    """Float64: the MLP's hand-written backwards (LayerNormLinear with the block's norm,
    ConvGeluLinear) give the gradients of autograd of its plain forward."""
    gen = torch.Generator().manual_seed(0)
    mlp = _perturbed(ConvMlp(8, 32), gen).train()
    norm = _perturbed(torch.nn.LayerNorm(8, eps=1e-6), gen) if with_norm else None
    hw = (5, 7)
    x = torch.randn(2, 35, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    nodes = {'ConvGeluLinearBackward'} | ({'LayerNormLinearBackward'} if with_norm else set())
    assert memory_saving.conv_mlp_applies(mlp, x, norm)
    assert (
        autograd_node_names(memory_saving.conv_mlp(mlp, x, hw, norm))
        & {
            'ConvGeluLinearBackward',
            'LayerNormLinearBackward',
        }
        == nodes
    )
    results = _outputs_and_grads(lambda: memory_saving.conv_mlp(mlp, x, hw, norm), mlp, x)
    _plain(monkeypatch)
    expected = _outputs_and_grads(lambda: mlp(x, hw, norm), mlp, x)
    for got, want in zip(results, expected):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)


def _mlp_nodes(mlp, x, norm, context=None):
    with context or torch.enable_grad():
        return autograd_node_names(mlp(x, (5, 7), norm)) & {
            'ConvGeluLinearBackward',
            'LayerNormLinearBackward',
        }


def test_mlp_takes_each_memory_saver_where_it_applies():
    """LayerNormLinear needs float32/float64 without autocast, ConvGeluLinear no dropout; each
    runs where its condition holds, the plain modules elsewhere; nothing without autograd."""
    norm = torch.nn.LayerNorm(8, eps=1e-6)
    x = torch.randn(2, 35, 8, requires_grad=True)
    both = {'ConvGeluLinearBackward', 'LayerNormLinearBackward'}
    assert _mlp_nodes(ConvMlp(8, 32), x, norm) == both
    assert _mlp_nodes(ConvMlp(8, 32, drop=0.1), x, norm) == {'LayerNormLinearBackward'}
    autocast = torch.autocast('cpu', dtype=torch.bfloat16)
    assert _mlp_nodes(ConvMlp(8, 32), x, norm, autocast) == {'ConvGeluLinearBackward'}
    assert _mlp_nodes(ConvMlp(8, 32), x, norm, torch.no_grad()) == set()
    frozen = ConvMlp(8, 32).requires_grad_(False)
    assert not memory_saving.conv_mlp_applies(frozen, x.detach(), norm.requires_grad_(False))
    assert _mlp_nodes(frozen, x.detach(), norm) == set()


def test_conv_layers_take_memory_saving_only_with_autograd_in_full_precision():
    stem = ConvStem(3, 8).train()
    x = torch.randn(1, 3, 16, 16)
    assert memory_saving.norm_gelu_conv_applies(stem, x)  # the parameters require gradients
    with torch.no_grad():
        assert not memory_saving.norm_gelu_conv_applies(stem, x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert not memory_saving.norm_gelu_conv_applies(stem, x)
    assert not memory_saving.norm_gelu_conv_applies(stem.requires_grad_(False), x)
    merging = PatchMerging(8, 16)
    assert memory_saving.norm_gelu_conv_applies(merging, torch.randn(1, 8, 8, 8))
    merging.act = torch.nn.GELU(approximate='tanh')  # not what NormGeluConv differentiates
    assert not memory_saving.norm_gelu_conv_applies(merging, torch.randn(1, 8, 8, 8))
