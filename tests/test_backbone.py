"""SGFormer backbone: equivalence with the official model, any size, freezing, checkpointing."""

import copy
import os.path as osp

import pytest
import torch
from conftest import REFERENCE_FILE, TINY_ARCH, check_with_cp_matches_plain, requires_cpu_half

from mmsgformer.models import SGFormer
from mmsgformer.models.attention import attention, key_significance
from mmsgformer.models.sgformer import FiniteInputCheck
from mmsgformer.models.sizes import window_validity
from mmsgformer.testing.reference import make_reference, ours_from_official, run_ours

ODD_SIZES = [(32, 32), (37, 53), (65, 97), (100, 33), (224, 224), (230, 250)]


def expected_sizes(height, width):
    """Stage sizes from the stem and downsampling convolutions (ceil at every stride 2)."""
    sizes = []
    for stride_two_convs in (2, 1, 1, 1):
        for _ in range(stride_two_convs):
            height, width = -(-height // 2), -(-width // 2)
        sizes.append((height, width))
    return sizes


@pytest.fixture(scope='module')
def tiny():
    torch.manual_seed(0)
    return SGFormer(arch=TINY_ARCH, drop_path_rate=0.0).eval()


def check_float32_equivalence(reference: dict) -> None:
    """Our float32 model with the reference's official weights reproduces its outputs."""
    arch = {
        k: reference['arch'][k]
        for k in ('embed_dims', 'num_heads', 'depths', 'mlp_ratios', 'sr_ratios')
    }
    model, head = ours_from_official(arch, reference['state_dict'])
    assert sorted(head) == ['head.bias', 'head.weight']
    stages, logits = run_ours(model, head, reference['inputs'])
    assert len(stages) == 4
    for out, ref in zip(stages, reference['stage_outputs']):
        assert out.shape == ref.shape
        error = (out - ref).abs()
        assert error.max() < 1e-3, error.max()
        assert error.mean() < 1e-4, error.mean()
    torch.testing.assert_close(logits, reference['logits'], atol=1e-4, rtol=0)


def test_reference_equivalence(reference):
    """Reproduces the official implementation's float32 stage features and logits.

    ``tests/data/sgformer_reference.pth`` (``tools/model_converters/make_reference.py``) holds
    the official outputs. In float32 both implementations rank tokens whose significance differs
    by a few ulps by rounding, and a swapped pair is merged into other keys (README "Exactly the
    official network"), so stage outputs are checked element-wise to 1e-3 and on average to 1e-4,
    logits to 1e-4; the float64 test below checks the same network without that effect.
    """
    check_float32_equivalence(reference)


def test_reference_equivalence_float64(reference64, reference_arch):
    """In float64 our model gives the official float64 outputs up to float64 rounding."""
    model, head = ours_from_official(reference_arch, reference64['state_dict'], torch.float64)
    stages, logits = run_ours(model, head, reference64['inputs'])
    for out, ref in zip(stages, reference64['stage_outputs']):
        assert out.dtype == ref.dtype == torch.float64
        torch.testing.assert_close(out, ref, atol=1e-10, rtol=0)
    torch.testing.assert_close(logits, reference64['logits'], atol=1e-10, rtol=0)


def test_shared_reference_equivalence(shared_reference):
    """The older reference of ``../shared/fixtures`` (made on another machine), when present."""
    check_float32_equivalence(shared_reference)


def test_reference_file(reference):
    """The in-repo reference covers every block kind and stays small."""
    keys = reference['state_dict']
    for stage in (1, 2, 3):
        assert f'block{stage}.0.attn.sr.weight' in keys  # hybrid-scale
        assert f'block{stage}.1.attn.f1.weight' in keys  # significance-guided
    assert 'block4.0.attn.kv.weight' in keys  # global
    assert len(reference['meta']['official_sgformer_py_sha256']) == 64
    assert osp.getsize(REFERENCE_FILE) < 2 * 2**20


def test_make_reference_names_the_missing_official_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='sgformer.py.*OliverRensu/SG-Former'):
        make_reference(str(tmp_path))


@pytest.mark.parametrize('through_attention', [False, True])
@pytest.mark.parametrize(
    'dtype,expected_dtype,tolerance',
    [
        (torch.float64, torch.float64, 1e-15),
        (torch.float32, torch.float32, 1e-6),
        pytest.param(torch.float16, torch.float32, 1e-6, marks=requires_cpu_half),
        (torch.bfloat16, torch.float32, 1e-6),
    ],
)
def test_significance_precision(dtype, expected_dtype, tolerance, through_attention):
    """The significance statistic keeps float32/float64 inputs' precision, float32 for halves.

    The expected values are the dense float64 statistic of the (rounded) inputs: a float32
    computation misses float64's by ~1e-8, a half-precision one float32's by ~1e-3.
    """
    generator = torch.Generator().manual_seed(0)
    q, k, v = (
        torch.randn(2, 3, 49, 8, generator=generator, dtype=torch.float64).to(dtype)
        for _ in range(3)
    )
    weights = torch.rand(2, 49, generator=generator, dtype=torch.float64)
    for query_weights in (None, weights):
        if through_attention:
            significance = attention(
                q, k, v, 0.35, query_weights=query_weights, need_key_significance=True
            )[1]
        else:
            significance = key_significance(q, k, 0.35, query_weights=query_weights)
        assert significance.dtype == expected_dtype
        probs = (q.double() @ k.double().transpose(-2, -1) * 0.35).softmax(-1).mean(-3)
        if query_weights is None:
            expected = probs.mean(-2)
        else:
            expected = (query_weights.unsqueeze(-1) * probs).sum(-2)
        torch.testing.assert_close(significance.double(), expected, atol=tolerance, rtol=0)


def test_padded_window_weights_in_float64():
    """Padded windows weight real queries by 1/49 in the statistic's precision."""
    _, weights = window_validity(1, 2, 2, (10, 12), 7, torch.device('cpu'), torch.float64)
    assert weights.dtype == torch.float64
    assert set(weights.unique().tolist()) == {0.0, 1 / 49}


@pytest.mark.parametrize('arch,params', [('s', 22_545_981), ('m', 38_689_316), ('b', 77_950_293)])
def test_official_parameter_counts(arch, params):
    model = SGFormer(arch=arch)
    head = model.embed_dims[-1] * 1000 + 1000
    assert sum(p.numel() for p in model.parameters()) + head == params


@pytest.mark.parametrize('height,width', ODD_SIZES)
@pytest.mark.parametrize('batch', [1, 3])
def test_any_size_every_out_index(tiny, height, width, batch):
    x = torch.randn(batch, 3, height, width)
    with torch.no_grad():
        outs = tiny(x)
    sizes = expected_sizes(height, width)
    for out, dims, size in zip(outs, TINY_ARCH['embed_dims'], sizes):
        assert out.shape == (batch, dims, *size)
        assert torch.isfinite(out).all()
        assert out.is_contiguous()


@pytest.mark.parametrize('out_indices', [(0,), (1, 3), (2,), 3, (-1,), (0, 1, 2, 3)])
def test_out_indices(out_indices):
    model = SGFormer(arch=TINY_ARCH, out_indices=out_indices).eval()
    indices = [out_indices] if isinstance(out_indices, int) else list(out_indices)
    indices = [i % 4 for i in indices]
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 61, 75))
    sizes = expected_sizes(61, 75)
    assert [o.shape[1:] for o in outs] == [(TINY_ARCH['embed_dims'][i], *sizes[i]) for i in indices]


def test_train_mode_odd_size_batch_one():
    model = SGFormer(arch=TINY_ARCH).train()
    outs = model(torch.randn(1, 3, 45, 71))
    assert [tuple(o.shape[-2:]) for o in outs] == expected_sizes(45, 71)


@pytest.mark.parametrize('height,width', [(37, 53), (224, 224), (123, 301)])
def test_batch_independence(tiny, height, width):
    """An image's features do not depend on the other images of its batch.

    Changing the other images leaves them bit-identical (same batch size, same kernels); running
    the image alone agrees up to float rounding of differently blocked matrix products.
    """
    images = torch.randn(3, 3, height, width)
    others = images.clone()
    others[1:] = torch.randn(2, 3, height, width) * 5
    with torch.no_grad():
        together = tiny(images)
        changed = tiny(others)
        alone = tiny(images[:1])
    for joint, other, single in zip(together, changed, alone):
        assert torch.equal(joint[0], other[0])
        torch.testing.assert_close(joint[:1], single, atol=1e-3, rtol=0)


def test_every_parameter_gets_a_gradient():
    model = SGFormer(arch=TINY_ARCH, drop_path_rate=0.0).train()  # no branch may be dropped
    # 77x101: every attention pads (stage maps 20x26, 10x13, 5x7, 3x4) and every merge group of
    # the token reallocation is populated.
    outs = model(torch.randn(2, 3, 77, 101))
    sum((o * torch.randn_like(o)).sum() for o in outs).backward()
    without = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert without == []


@pytest.mark.parametrize('frozen_stages', [-1, 0, 1, 2, 4])
def test_frozen_stages(frozen_stages):
    model = SGFormer(arch=TINY_ARCH, frozen_stages=frozen_stages, drop_path_rate=0.0)
    model.train()
    frozen_prefixes = []
    if frozen_stages >= 0:
        frozen_prefixes += ['pos_embed', 'stages.0.downsample.']
    frozen_prefixes += [f'stages.{i}.' for i in range(frozen_stages)]
    before = copy.deepcopy(model.state_dict())
    trainable = [p for p in model.parameters() if p.requires_grad]
    outs = model(torch.randn(1, 3, 64, 64))
    if trainable:
        # A random projection: the plain sum of LayerNorm outputs has zero gradient upstream.
        sum((o * torch.randn_like(o)).sum() for o in outs).backward()
        torch.optim.SGD(trainable, lr=0.1).step()
    for name, param in model.named_parameters():
        is_frozen = name.startswith(tuple(frozen_prefixes))
        assert param.requires_grad != is_frozen, name
        changed = not torch.equal(before[name], param.detach())
        assert changed != is_frozen, name
    for name, module in model.named_modules():
        if name.startswith(tuple(frozen_prefixes)) and name:
            assert not module.training, name
    # Output norms of frozen stages are frozen too.
    for i in range(max(frozen_stages, 0)):
        assert not model.stages[i].norm.weight.requires_grad


def test_norm_eval_keeps_norms_in_eval_mode():
    model = SGFormer(arch=TINY_ARCH, norm_eval=True).train()
    norms = [m for m in model.modules() if isinstance(m, (torch.nn.LayerNorm, torch.nn.GroupNorm))]
    assert norms and not any(m.training for m in norms)
    assert model.stages[1].blocks[0].attn.training  # the rest trains
    assert all(m.training for m in SGFormer(arch=TINY_ARCH).train().modules())


def test_with_cp_same_outputs_and_gradients():
    check_with_cp_matches_plain()


def test_drop_path_schedule_and_eval_determinism():
    model = SGFormer(arch=TINY_ARCH, drop_path_rate=0.3)
    rates = [
        b.drop_path.rate for s in model.stages for b in s.blocks if hasattr(b.drop_path, 'rate')
    ]
    assert rates == pytest.approx(torch.linspace(0, 0.3, 7)[1:].tolist())
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))


@pytest.mark.parametrize(
    'x,message',
    [
        (torch.randn(3, 64, 64), '4D tensor'),
        (torch.randn(1, 1, 64, 64), 'in_channels=3'),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), 'floating-point'),
        (torch.randn(0, 3, 64, 64), 'empty batch'),
        (torch.randn(1, 3, 31, 64), 'at least 32x32'),
        (torch.full((1, 3, 64, 64), float('nan')), 'NaN'),
    ],
)
def test_bad_input_messages(tiny, x, message):
    with pytest.raises((ValueError, TypeError), match=message):
        tiny(x)


def test_non_finite_input_in_deferred_training_check(tiny, monkeypatch):
    """On CUDA in training the NaN check is read one step late (no GPU stall); emulated on CPU."""
    monkeypatch.setattr(FiniteInputCheck, 'DEFERRED_DEVICE_TYPES', ('cpu',))
    good, bad = torch.randn(1, 3, 64, 64), torch.full((1, 3, 64, 64), float('inf'))
    tiny.train()
    tiny(good)
    tiny(bad)  # not read yet
    clone = copy.deepcopy(tiny)  # copies (EMA) do not inherit the pending result
    clone(good)
    with pytest.raises(ValueError, match='previous training step contained NaN or infinite'):
        tiny(good)
    tiny(good)  # reported once; training can go on after the user fixes the data
    tiny.eval()
    with pytest.raises(ValueError, match='input contains NaN'):  # immediate in eval mode
        tiny(bad)


@pytest.mark.parametrize(
    'arch,message',
    [
        ('xl', 'does not exist'),
        (dict(embed_dims=[32, 64, 128, 256], num_heads=[2, 2, 4, 8], depths=[2, 2, 2]), 'keys'),
        (dict(TINY_ARCH, depths=[2, 2, 2]), '4 values'),
        (dict(TINY_ARCH, num_heads=[1, 2, 4, 8]), 'even'),
        (dict(TINY_ARCH, sr_ratios=[8, 3, 2, 1]), 'sr_ratios'),
        (dict(TINY_ARCH, embed_dims=[30, 64, 128, 256], num_heads=[4, 2, 4, 8]), 'divisible'),
    ],
)
def test_bad_arch_messages(arch, message):
    with pytest.raises(ValueError, match=message):
        SGFormer(arch=arch)


def test_odd_depth_stage_keeps_working():
    """A custom arch may end a stage on a hybrid-scale block; its map is then unused."""
    model = SGFormer(arch=dict(TINY_ARCH, depths=[3, 1, 2, 1])).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 70, 90))
    assert [tuple(o.shape[-2:]) for o in outs] == expected_sizes(70, 90)
