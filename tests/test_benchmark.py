"""The benchmark library's summary table (tiny models and sizes; the numbers are not checked,
only that every row compares what it says, from the same run)."""

import json
import os.path as osp
import sys

import pytest
from conftest import TINY_ARCH

FAKE_OFFICIAL = """
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 4, stride=4)

    def forward_features(self, x):
        return self.conv(x).mean((2, 3))


def sgformer_s(num_classes=1000, **kwargs):
    return Net()
"""


@pytest.fixture
def options(tmp_path):
    from mmsgformer.analysis.benchmark import BenchmarkOptions

    (tmp_path / 'sgformer.py').write_text(FAKE_OFFICIAL)
    (tmp_path / 'pos_embed.py').write_text('')
    other = dict(TINY_ARCH, depths=[1, 1, 1, 1])
    return BenchmarkOptions(
        custom=[f'tiny={json.dumps(TINY_ARCH)}', f'other={json.dumps(other)}'],
        sizes=[],
        modes=['infer'],
        device='cpu',
        threads=1,
        warmup=0,
        reps=2,
        macs_cache='',
        matmul_size=128,
        out=str(tmp_path / 'summary.json'),
        official=str(tmp_path),
        summary_model='tiny',
        summary_baseline='other',
    )


def test_summary_rows_compare_one_run(options, monkeypatch, capsys):
    from mmsgformer.analysis.benchmark import summary

    monkeypatch.setattr(
        summary, 'SUMMARY_SIZES', dict(small=(64, 64, 2), large=(96, 64, 1), memory=(64, 96, 1))
    )
    rows = summary.run_summary(options)
    printed = capsys.readouterr().out
    data = json.loads(open(options.out).read())
    small, large, step = data['small'], data['large'], data['step_mib']
    assert set(small) == {'tiny', 'other', 'official_sgformer_s'}
    assert set(large) == {'tiny', 'other'}
    expected = [
        small['tiny']['img_s'] / small['official_sgformer_s']['img_s'],
        small['tiny']['img_s'] / small['other']['img_s'],
        large['tiny']['img_s'] / large['other']['img_s'],
        small['tiny']['pct_mm'] / 100,
        step['tiny'] / step['other'],
    ]
    assert [r['value'] for r in rows] == pytest.approx(expected)
    assert small['tiny']['size'] == '64x64' and small['tiny']['batch'] == 2
    assert large['tiny']['size'] == '96x64' and step['tiny'] > 0 and step['other'] > 0
    for r, (target, direction) in zip(
        rows, [(1.3, '>='), (1.0, '>='), (0.5, '>='), (0.8, '>='), (1.0, '<=')]
    ):
        shown = '80%' if target == 0.8 else f'{target:g}'
        assert r['target'] == f'{direction} {shown}'
        assert r['met'] == (r['value'] >= target if direction == '>=' else r['value'] <= target)
    assert 'ours / official implementation, tiny, 64x64@2, inference' in printed
    assert 'extra peak memory of a training step at 64x96@1, tiny / other' in printed


def test_summary_without_official_skips_that_row(options, monkeypatch):
    from mmsgformer.analysis.benchmark import summary

    monkeypatch.setattr(summary, 'measure_memory_cpu', lambda *a: None)  # a failed child
    options = options.replace(
        official=None, out=None, summary_sizes=['64x64@1', '64x32@1', '32x32@1']
    )
    rows = summary.run_summary(options)
    assert [r['label'].split(', ')[1] for r in rows[1:3]] == ['64x64@1', '64x32@1']
    assert rows[0]['value'] is None and rows[0]['met'] is None
    assert 'needs --official' in rows[0]['detail']
    assert rows[4]['value'] is None and rows[4]['detail'] == 'not measured'
    assert rows[1]['value'] > 0


def test_official_needs_a_folder():
    from mmsgformer.analysis.benchmark import build_official

    with pytest.raises(ValueError, match='--official PATH'):
        build_official('official_sgformer_s', None)


@pytest.fixture
def forget_checkout():
    """Drops the imported checkout (:func:`import_checkout` imports one per process)."""
    import sys

    from mmsgformer.analysis.benchmark.models import CHECKOUT_PACKAGE

    yield
    for name in [m for m in sys.modules if m.split('.')[0] == CHECKOUT_PACKAGE]:
        del sys.modules[name]


def test_checkout_models_run_the_other_checkouts_code(tmp_path, forget_checkout):
    """``checkout_NAME`` is built from the checkout's files (here a copy of this package with one
    constant changed), under its own module name, and ours is compared with it."""
    import shutil

    import torch
    from conftest import REPO

    from mmsgformer.analysis.benchmark import BenchmarkOptions
    from mmsgformer.analysis.benchmark.models import baseline_names, build_entries

    shutil.copytree(osp.join(REPO, 'mmsgformer'), tmp_path / 'mmsgformer')
    sgformer_py = tmp_path / 'mmsgformer' / 'models' / 'sgformer.py'
    source = sgformer_py.read_text()
    assert source.count('MIN_INPUT_SIZE = 32') == 1
    sgformer_py.write_text(source.replace('MIN_INPUT_SIZE = 32', 'MIN_INPUT_SIZE = 8'))
    options = BenchmarkOptions(
        models=['tiny', 'checkout_tiny'],
        custom=[f'tiny={json.dumps(TINY_ARCH)}'],
        checkout=str(tmp_path),
        sizes=[],
        device='cpu',
        threads=1,
    )
    torch.manual_seed(0)
    ours, theirs = (entry.model.eval() for entry in build_entries(options))
    assert type(theirs).__module__ == 'mmsgformer_checkout.models.sgformer'
    assert osp.samefile(sys.modules[type(theirs).__module__].__file__, sgformer_py)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(1, 3, 16, 16)  # below our minimum input, above the changed copy's
    with torch.no_grad():
        assert len(theirs(x)) == 4
        with pytest.raises(ValueError, match='at least 32x32'):
            ours(x)
    assert baseline_names('tiny', ['tiny', 'checkout_tiny']) == ['checkout_tiny']
