"""The analysis tools run through their command lines (tiny models, one iteration, no timing
assertions) and count SG-Former-S's MACs like the paper."""

import json
import os.path as osp
import sys

import pytest
from conftest import REPO, TINY_ARCH, checkout_env, run_command

TOOLS = osp.join(REPO, 'tools', 'analysis_tools')
TINY_JSON = json.dumps(TINY_ARCH, separators=(',', ':'))
# --cfg-options for the ImageNet classifier with the tiny arch (arch='s' replaced by a dict)
CLS_TINY_OPTIONS = [
    f'model.backbone.arch.{k}={json.dumps(v, separators=(",", ":"))}' for k, v in TINY_ARCH.items()
] + ['model.head.in_channels=256']
TINY_BACKBONE = ['--custom', f'tiny={TINY_JSON}', '--models', 'tiny']
TINY_CLASSIFIER = ['configs/sgformer/sgformer-s_16xb64_in1k.py', '--cfg-options', *CLS_TINY_OPTIONS]
# one untimed repetition on one thread, a small matmul reference
QUICK = ['--threads', '1', '--warmup', '0', '--reps', '1', '--matmul-size', '256']
EAGER_TWIN = ['--compile-vs-eager', '--compile-backend', 'eager']


def run_tool(script, *args, returncode=0):
    """What ``tools/analysis_tools/<script> args`` printed on stdout (on stdout and stderr for a
    failing ``returncode``), warnings off."""
    return run_command(
        [sys.executable, osp.join(TOOLS, script), *args],
        env=checkout_env({'PYTHONWARNINGS': 'ignore'}),
        returncode=returncode,
        separate_stderr=returncode == 0,
        timeout=300,
    )


def table_rows(stdout, first_column):
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [first_column])
    header = lines[start]
    assert set(lines[start + 1].replace(' ', '')) == {'-'}
    rows = []
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        rows.append(line.split())
    return header, rows


def test_benchmark_backbone(tmp_path):
    out = tmp_path / 'bench.json'
    stdout = run_tool(
        'benchmark.py',
        *TINY_BACKBONE,
        *QUICK,
        *['--sizes', '64x64@1', '--modes', 'train', '--macs-cache', '', '--out', out],
    )
    header, rows = table_rows(stdout, 'model')
    for column in ('img/s', 'ms/img', 'peak MiB', 'GMAC/img', 'GMAC/s', '% mm', 'vs baseline'):
        assert column in header
    assert [r[:4] for r in rows] == [['tiny', '64x64', '1', 'train']]
    assert 'matmul 256x256 float32' in stdout
    data = json.loads(out.read_text())
    assert data['machine']['threads'] == 1 and data['machine']['matmul_gmac_s'] > 0
    assert data['args']['models'] == ['tiny']
    for row in data['results']:
        assert row['img_s'] > 0 and row['ms_img'] > 0 and len(row['times_s']) == 1
        assert row['gmac_img'] > 0 and 0 < row['pct_mm']
        assert row['peak_mib'] > 0  # measured in a subprocess from the RSS high-water mark
        assert row['vs'] == {}


def test_benchmark_compile_vs_eager(tmp_path):
    """Eager and compiled twins in one run (dynamo's eager backend: tracing without codegen)."""
    out = tmp_path / 'bench.json'
    stdout = run_tool(
        'benchmark.py',
        *TINY_BACKBONE,
        *QUICK,
        *EAGER_TWIN,
        *['--sizes', '64x64@1', '--modes', 'infer', '--no-macs', '--out', out],
    )
    _, rows = table_rows(stdout, 'model')
    assert [r[0] for r in rows] == ['tiny', 'tiny+compile']
    assert 'tiny+compile 64x64@1 infer' in stdout  # its compile time
    eager, compiled = json.loads(out.read_text())['results']
    assert eager['vs'] == {} and eager['compile_s'] is None and eager['peak_mib'] > 0
    assert set(compiled['vs']) == {'tiny'} and compiled['compile_s'] > 0
    assert compiled['peak_mib'] is None  # memory subprocesses run eager models only
    stdout = run_tool(
        'benchmark.py',
        *QUICK,
        *EAGER_TWIN,
        *['--sizes', '64@1', '--modes', 'infer', '--no-memory', '--no-macs'],
        '--whole-model',
        *TINY_CLASSIFIER,
    )
    _, rows = table_rows(stdout, 'model')
    assert [r[0] for r in rows] == ['sgformer-s_16xb64_in1k', 'sgformer-s_16xb64_in1k+compile']
    for bad, message in (
        (['--compile', '--compile-vs-eager'], 'exclusive'),
        ([*EAGER_TWIN, '--compile-mode', 'reduce-overhead'], 'inductor backend only'),
    ):
        assert message in run_tool('benchmark.py', *bad, returncode=2)


def test_benchmark_whole_classifier_with_cfg_options(tmp_path):
    out = tmp_path / 'whole.json'
    stdout = run_tool(
        'benchmark.py',
        *QUICK,
        *['--sizes', '64', '--batch-sizes', '2', '--no-memory', '--macs-cache', '', '--out', out],
        '--whole-model',
        *TINY_CLASSIFIER,
    )
    _, rows = table_rows(stdout, 'model')
    assert [r[:4] for r in rows] == [
        ['sgformer-s_16xb64_in1k', '64x64', '2', 'infer'],
        ['sgformer-s_16xb64_in1k', '64x64', '2', 'train'],
    ]
    data = json.loads(out.read_text())
    assert all(r['peak_mib'] is None and r['gmac_img'] > 0 for r in data['results'])


def test_get_flops_classifier_tiny(tmp_path):
    out = tmp_path / 'flops.json'
    stdout = run_tool(
        'get_flops.py', *TINY_CLASSIFIER, '--shape', 64, 64, '--by-operator', '--out', out
    )
    header, rows = table_rows(stdout, 'model')
    assert header.split()[:5] == ['model', 'part', 'input', 'params', 'GMACs']
    assert rows[0][:3] == ['sgformer-s_16xb64_in1k', 'whole', '64x64']
    result = json.loads(out.read_text())[0]
    assert result['task'] == 'cls' and result['not_counted'] == {}
    assert result['by_operator']['scaled_dot_product_attention'] > 0
    assert result['backbone_params'] < result['params'] < 5e6  # the tiny arch was used


def test_sgformer_s_macs_match_paper():
    # in-process (the CLI path is covered above): the counter get_flops.py and benchmark.py use
    import torch

    from mmsgformer.analysis import build_backbone, count_macs

    model = build_backbone('sgformer_s')
    model.eval()
    result = count_macs(model, (torch.randn(1, 3, 224, 224),))
    assert abs(result['macs'] / 1e9 - 4.8) < 0.48, result['macs']
    # the significance recomputation is reported, not counted
    assert 0 < result['recompute_macs'] < 0.02 * result['macs']


def test_mac_counter_talks_only_to_the_modules_it_counts():
    """The counter replaces the significance attention of the model it counts while it traces
    (the sdpa output traced, the statistic not) and restores it; another model running meanwhile
    is untouched, and the counted model computes as before afterwards."""
    import torch

    from mmsgformer.analysis import count_macs
    from mmsgformer.analysis.complexity import significance_untraced
    from mmsgformer.models import SGFormer
    from mmsgformer.models.attention import HybridScaleAttention

    torch.manual_seed(0)
    counted, other = SGFormer(arch=TINY_ARCH).eval(), SGFormer(arch=TINY_ARCH).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        before = counted(x)
    record = []
    with significance_untraced(counted, record), torch.no_grad():
        assert all(
            'attend_with_significance' in m.__dict__
            for m in counted.modules()
            if isinstance(m, HybridScaleAttention)
        )
        other(x)
        assert record == []  # the other model's attention was not replaced
        counted(x)
    hybrid_blocks = sum(isinstance(m, HybridScaleAttention) for m in counted.modules())
    assert len(record) == 2 * hybrid_blocks  # global and local half of each
    result = count_macs(counted, (x,))
    assert result['recompute_macs'] > 0
    assert not any('attend_with_significance' in m.__dict__ for m in counted.modules())
    with torch.no_grad():
        for a, b in zip(counted(x), before):
            assert torch.equal(a, b)


@pytest.mark.parametrize('mmdet_name', ['swin_t', 'pvtv2_b2'])
def test_timm_baselines_match_mmdet(mmdet_name):
    """The timm_* baselines (for machines without mmcv's ops) are the same networks as mmdet's:
    same parameter count and the same four output shapes at an odd size."""
    import torch

    from mmsgformer.analysis import build_backbone

    shapes, params = [], []
    for name in (mmdet_name, 'timm_' + mmdet_name):
        model = build_backbone(name)
        model.eval()
        with torch.no_grad():
            shapes.append([tuple(o.shape) for o in model(torch.randn(1, 3, 99, 133))])
        params.append(sum(p.numel() for p in model.parameters()))
    assert shapes[0] == shapes[1] and len(shapes[0]) == 4
    assert abs(params[0] - params[1]) < 2e-4 * params[0], params
