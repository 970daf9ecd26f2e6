"""One OpenMMLab line per environment (mmsgformer.utils.compat): the installed line is found, a
mixed environment or an mmcv without loadable ops is named with the fix. The suite runs on both
lines (`make test` and `make test-upstream`), so each test here runs on each."""

import os
import subprocess
import sys

import pytest
from conftest import REPO

from mmsgformer.engine import runner
from mmsgformer.utils import compat


def stack_pins(line: str) -> dict:
    """``{distribution: version}`` of requirements/<line>.txt."""
    pins = {}
    with open(os.path.join(REPO, 'requirements', f'{line}.txt')) as f:
        for raw in f:
            requirement = raw.split('#')[0].strip()
            if '==' in requirement:
                name, version = requirement.split('==')
                pins[name] = version
    return pins


def fake_distribution(folder, name: str, version: str = '1.0') -> None:
    """Installed-package metadata of ``name`` (no code) in ``folder``."""
    info = folder / f'{name.replace("-", "_")}-{version}.dist-info'
    info.mkdir(parents=True)
    (info / 'METADATA').write_text(f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n')


def run_python(code: str, pythonpath) -> subprocess.CompletedProcess:
    env = {**os.environ, 'PYTHONPATH': f'{pythonpath}{os.pathsep}{REPO}'}
    return subprocess.run(
        [sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=300
    )


def test_the_environment_holds_one_line_at_its_pinned_versions():
    line = compat.check_openmmlab_installation()
    assert line in ('onedl', 'upstream')
    from importlib.metadata import version

    for name, pinned in stack_pins(line).items():
        if name != 'setuptools':
            assert version(name) == pinned, name
    other = {'onedl': 'upstream', 'upstream': 'onedl'}[line]
    assert other not in compat.installed_openmmlab_lines()


@pytest.mark.parametrize('other_package', ['mmcv', 'onedl-mmdetection'])
def test_import_names_a_mixed_environment(tmp_path, other_package):
    """A package of the other line beside the installed one (upstream mmcv with
    onedl-mmdetection, or the reverse) stops ``import mmsgformer`` with one message."""
    line = compat.check_openmmlab_installation()
    if other_package in compat.installed_openmmlab_lines().get(line, []):
        other_package = {'mmcv': 'onedl-mmcv', 'onedl-mmdetection': 'mmdet'}[other_package]
    fake_distribution(tmp_path, other_package)
    result = run_python('import mmsgformer', tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('mmsgformer.utils.compat.OpenMMLabInstallError: ')
    assert 'mix two lines' in last and other_package in last
    assert 'pip uninstall -y' in last and 'tools/setup_env.sh' in last
    for name in compat.installed_openmmlab_lines()[line]:
        assert name in last


def test_missing_mmengine_is_named(monkeypatch):
    find_spec = compat.importlib.util.find_spec
    monkeypatch.setattr(
        compat.importlib.util,
        'find_spec',
        lambda name: None if name == 'mmengine' else find_spec(name),
    )
    with pytest.raises(
        compat.OpenMMLabInstallError, match='needs mmengine, which is not installed'
    ):
        compat.check_openmmlab_installation()


def test_mmcv_ops_load_here():
    compat.check_mmcv_ops()


@pytest.mark.parametrize(
    'ext, message',
    [
        (None, 'has no compiled ops (mmcv._ext)'),
        (
            'raise ImportError("_ext.so: undefined symbol: _ZN3c104impl")',
            'built against another torch',
        ),
    ],
)
def test_mmcv_without_loadable_ops_is_named(tmp_path, ext, message):
    """A stand-in mmcv package shadows the installed one: without ``_ext``, and with an ``_ext``
    that fails like one compiled against another torch."""
    (tmp_path / 'mmcv').mkdir()
    (tmp_path / 'mmcv' / '__init__.py').write_text('')
    if ext is not None:
        (tmp_path / 'mmcv' / '_ext.py').write_text(ext)
    code = 'from mmsgformer.utils import compat\ncompat.check_mmcv_ops()'
    result = run_python(code, tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert message in last and 'tools/setup_env.sh' in last
    line = compat.check_openmmlab_installation()
    mmcv_pin = next(f'{n}=={v}' for n, v in stack_pins(line).items() if n.endswith('mmcv'))
    assert mmcv_pin in last


def test_tools_report_unloadable_ops_before_building(monkeypatch):
    """train/test go through build_runner, which names ops that do not load as a RunError (the
    tools print it as ``error: ...``) for the scopes that import them."""

    def no_ops():
        raise compat.OpenMMLabInstallError('stand-in: no ops')

    monkeypatch.setattr(runner, 'check_mmcv_ops', no_ops)
    from mmengine.config import Config

    for scope in runner.SCOPES_NEEDING_MMCV_OPS:
        with pytest.raises(runner.RunError, match='stand-in: no ops'):
            runner.build_runner(Config(dict(default_scope=scope)), 'x.py')


def test_config_packages_are_looked_up_where_they_import():
    """``mmseg::`` resolves on both lines: upstream installs mmseg as ``mmsegmentation`` (the
    table's name stays), OneDL as ``onedl-mmsegmentation`` (looked up by the module); a module
    that is not installed keeps its entry."""
    table = {'mmseg': 'mmsegmentation', 'mmdet': 'mmdet', 'mmnotthere': 'mmnotthere2'}
    compat.look_up_config_packages_by_module(table)
    line = compat.check_openmmlab_installation()
    expected_mmseg = {'upstream': 'mmsegmentation', 'onedl': 'mmseg'}[line]
    assert table == {'mmseg': expected_mmseg, 'mmdet': 'mmdet', 'mmnotthere': 'mmnotthere2'}
    from mmengine.config import Config

    cfg = Config.fromfile(os.path.join(REPO, 'configs', '_base_', 'models', 'upernet_sgformer.py'))
    assert cfg.model.backbone.type == 'mmsgformer.SGFormer'


def test_mmengine_loading_never_falls_back_to_unpickling():
    """OneDL's loader (retrying refused checkpoints with full unpickling) is replaced on
    ``import mmsgformer``; upstream has none. tests/test_checkpoint.py checks the refusal."""
    from mmengine.runner import checkpoint

    line = compat.check_openmmlab_installation()
    replaced = getattr(getattr(checkpoint, '_safe_torch_load', None), 'refuses_unpickling', False)
    assert replaced == (line == 'onedl')
    assert not compat.refuse_unpickling_fallback_in_mmengine()  # done once


def test_tests_left_out_on_the_second_stack_import_no_openmmlab_package():
    """`make test-upstream` skips the Makefile's STACK_FREE_TESTS: none of them may import
    mmcv, mmengine, mmdet, mmseg, mmpretrain or mim (directly or through a config or tool)."""
    import re

    with open(os.path.join(REPO, 'Makefile')) as f:
        makefile = f.read().replace('\\\n', ' ')
    (listing,) = re.findall(r'^STACK_FREE_TESTS := (.*)$', makefile, re.M)
    files = listing.split()
    assert files
    uses_openmmlab = re.compile(
        r'^\s*(import|from)\s+(mmcv|mmengine|mmdet|mmseg|mmpretrain|mim)\b'
        r"|Config\.fromfile|run_command|subprocess|['\"](tools|configs)['/]",
        re.M,
    )
    for name in files:
        with open(os.path.join(REPO, name)) as f:
            found = uses_openmmlab.search(f.read())
        assert found is None, f'{name} uses {found.group(0)!r}: remove it from STACK_FREE_TESTS'
