"""SG-Former on a CUDA GPU: equivalence, mixed precision, checkpointing, torch.compile.

Skipped where no GPU is present (CI); run on a GPU machine with ``pytest tests/test_cuda.py``.
TF32 is switched off for the float32 checks so that they compare the same arithmetic as on the
CPU.
"""

import copy

import pytest
import torch
from conftest import (
    TINY_ARCH,
    check_memory_functions_match_plain_graph,
    check_with_cp_matches_plain,
)

from mmsgformer.models import SGFormer
from mmsgformer.models.official_keys import convert_official_state_dict

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


@pytest.fixture(autouse=True)
def no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope='module')
def official(reference, reference_arch):
    """The fixture's model on the GPU, in eval mode, and its classifier head."""
    model = SGFormer(arch=reference_arch).eval()
    backbone, head = convert_official_state_dict(reference['state_dict'])
    model.load_state_dict(backbone, strict=True)
    return model.cuda(), {k: v.cuda() for k, v in head.items()}


def test_reference_equivalence_cuda(official, reference):
    """Same tolerances as the CPU test in test_backbone.py."""
    model, head = official
    with torch.no_grad():
        outs = model(reference['inputs'].cuda())
    for out, ref in zip(outs, reference['stage_outputs']):
        error = (out.cpu() - ref).abs()
        assert error.max() < 1e-3, error.max()
        assert error.mean() < 1e-4, error.mean()
    logits = outs[-1].mean((2, 3)) @ head['head.weight'].T + head['head.bias']
    torch.testing.assert_close(logits.cpu(), reference['logits'], atol=1e-4, rtol=0)


@pytest.mark.parametrize('hw', [(97, 131), (224, 224), (320, 512)])
def test_cuda_matches_cpu_any_size(official, hw):
    model, _ = official
    torch.manual_seed(0)
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        gpu = model(x.cuda())
        cpu = copy.deepcopy(model).cpu()(x)
    for g, c in zip(gpu, cpu):
        assert g.shape == c.shape
        error = (g.cpu() - c).abs()
        assert error.mean() < 1e-4, error.mean()


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_autocast_close_to_float32(official, reference, dtype):
    """Mixed precision stays finite and close: softmax and significance run in float32."""
    model, _ = official
    x = reference['inputs'].cuda()
    with torch.no_grad():
        full = model(x)
        with torch.autocast('cuda', dtype=dtype):
            half = model(x)
    for f, h in zip(full, half):
        assert torch.isfinite(h).all()
        relative = (h.float() - f).abs().mean() / f.abs().mean()
        assert relative < 5e-2, (dtype, relative)


def test_with_cp_same_outputs_and_gradients_cuda():
    """The CUDA twin of test_backbone.py's test_with_cp_same_outputs_and_gradients."""
    check_with_cp_matches_plain('cuda')


def test_compile_fullgraph_matches_eager():
    """One graph (fullgraph=True fails on any graph break) with the eager outputs (up to the
    rounding of inductor's fused kernels)."""
    torch.manual_seed(0)
    model = SGFormer(arch=TINY_ARCH, drop_path_rate=0.0).cuda().eval()
    compiled = torch.compile(model, fullgraph=True, dynamic=False)
    x = torch.randn(2, 3, 97, 131, device='cuda')
    with torch.no_grad():
        for out, ref in zip(compiled(x), model(x)):
            torch.testing.assert_close(out, ref, atol=1e-3, rtol=1e-3)


def test_non_finite_input_reported_at_next_training_step():
    """Training on CUDA reads the NaN check one step late (no host-GPU synchronisation)."""
    model = SGFormer(arch=TINY_ARCH).cuda().train()
    good = torch.randn(1, 3, 64, 64, device='cuda')
    model(torch.full_like(good, float('nan')))
    with pytest.raises(ValueError, match='previous training step contained NaN'):
        model(good)
    model(good)


@pytest.mark.parametrize('dtype', [None, torch.bfloat16])
def test_conv_gelu_linear_same_gradients_cuda(dtype, monkeypatch):
    """The memory-saving functions (under bf16 autocast: the MLP tail that recomputes its hidden
    activations, which handles every precision): same gradients as the plain graph on CUDA."""
    from mmsgformer.models import memory_saving

    torch.manual_seed(0)
    model = SGFormer(arch=TINY_ARCH, drop_path_rate=0.0).cuda().train()
    x = torch.randn(2, 3, 97, 131, device='cuda')
    grads = []
    for fused in (True, False):
        if not fused:
            monkeypatch.setattr(memory_saving, 'memory_saving_applies', lambda *a, **k: False)
        model.zero_grad()
        with torch.autocast('cuda', dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = sum(o.float().square().mean() for o in model(x))
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    tol = 1e-4 if dtype is None else 2e-2
    for (name, _), a, b in zip(model.named_parameters(), *grads):
        assert (a - b).norm() <= tol * b.norm() + 1e-6, name


def test_training_memory_functions_same_model_gradients_cuda(monkeypatch):
    """CUDA twin of test_attention.py's check that every recomputing autograd function gives
    the plain graph's gradients. Batch 5: up to 4 images per GPU the stem's GroupNorm takes the
    reduction path instead of the native kernel, and NormGeluConv (which recomputes the native
    kernel's statistics) is not used."""
    check_memory_functions_match_plain_graph(monkeypatch, device='cuda', batch=5)
