"""tools/setup_env.sh: the compiled mmcv wheel always matches the torch it is installed with.

The script is sourced (which defines its functions without running it) and its functions are
run in a bash subprocess, with the expensive parts (torch, the mmcv build) stood in for.
"""

import os
import os.path as osp
import subprocess
import sys
import tarfile
import zipfile

import pytest
from conftest import REPO

SETUP_ENV = osp.join(REPO, 'tools', 'setup_env.sh')

STAND_IN_SETUP = """\
import os
from setuptools import setup

# Records, like a compiled extension does, what it was built against.
with open('buildstamp.py', 'w') as f:
    f.write(f"BUILT_AGAINST = {os.environ['STAND_IN_TORCH']!r}\\n")
setup(name='buildstamp', version='1.0', py_modules=['buildstamp'])
"""


def run_sourced(script: str, env: dict) -> subprocess.CompletedProcess:
    """Runs ``script`` in bash after sourcing setup_env.sh."""
    return subprocess.run(
        ['bash', '-c', f'source {SETUP_ENV}\n{script}'],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def stand_in_sdist(tmp_path):
    """A source archive ``buildstamp-1.0.tar.gz`` in a find-links folder."""
    src = tmp_path / 'buildstamp-1.0'
    src.mkdir()
    (src / 'setup.py').write_text(STAND_IN_SETUP)
    links = tmp_path / 'links'
    links.mkdir()
    with tarfile.open(links / 'buildstamp-1.0.tar.gz', 'w:gz') as tar:
        tar.add(src, arcname='buildstamp-1.0')
    return links


def built_against(wheel_dir) -> str:
    (wheel,) = [f for f in os.listdir(wheel_dir) if f.endswith('.whl')]
    with zipfile.ZipFile(osp.join(wheel_dir, wheel)) as zf:
        return zf.read('buildstamp.py').decode()


def test_build_is_never_answered_from_pips_cache(tmp_path, stand_in_sdist):
    """Two builds of one source archive against two torches, pip's cache shared between them:
    the second wheel must be compiled anew, not the first one handed back."""
    env = {
        'MMSGFORMER_VENV': sys.prefix,
        'PIP_NO_INDEX': '1',
        'PIP_FIND_LINKS': str(stand_in_sdist),
        'PIP_CACHE_DIR': str(tmp_path / 'pip-cache'),
    }
    for torch in ('2.14.1', '2.1.2'):
        out = tmp_path / f'wheel-{torch}'
        result = run_sourced(f'build_wheel buildstamp==1.0 {out}', {**env, 'STAND_IN_TORCH': torch})
        assert result.returncode == 0, result.stderr
        assert built_against(out) == f"BUILT_AGAINST = '{torch}'\n"


# Stand-ins for install_mmcv: the venv's torch is "2.1.2 new"; a build writes a wheel and makes
# the ops load; pip does nothing. `calls` logs what was built.
STAND_INS = """
torch_build() { echo "2.1.2 new"; }
PIP=(true)
build_wheel() {
    echo build >> "$CALLS"
    touch "$2/mmcv-2.1.0-cp311-cp311-linux_x86_64.whl" "$OPS_LOAD"
}
has_mmcv_ops() { [ -f "$OPS_LOAD" ]; }
"""


@pytest.fixture
def cache(tmp_path):
    """The wheel cache with one cached mmcv wheel for the venv's python; returns its folder."""
    root = tmp_path / 'cache'
    py_tag = f'cp{sys.version_info[0]}{sys.version_info[1]}'
    wheel_dir = root / 'wheels' / f'mmcv-2.1.0-torch2.1.2-{py_tag}-{os.uname().machine}'
    wheel_dir.mkdir(parents=True)
    (wheel_dir / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl').write_text('cached')
    return wheel_dir


def install_mmcv(tmp_path, cache, ops_load: bool):
    calls, ops = tmp_path / 'calls', tmp_path / 'ops_load'
    if ops_load:
        ops.touch()
    result = run_sourced(
        STAND_INS + 'install_mmcv',
        {
            'MMSGFORMER_VENV': sys.prefix,
            'MMSGFORMER_STACK': 'upstream',
            'MMSGFORMER_TORCH': '2.1.2',
            'MMSGFORMER_CACHE': str(cache.parent.parent),
            'CALLS': str(calls),
            'OPS_LOAD': str(ops),
        },
    )
    assert result.returncode == 0, result.stderr
    built = calls.read_text().split() if calls.exists() else []
    return built, result.stderr


def test_wheel_built_against_another_torch_is_rebuilt(tmp_path, cache):
    (cache / 'built-against').write_text('2.14.1 old\n')
    built, log = install_mmcv(tmp_path, cache, ops_load=True)
    assert built == ['build']
    reasons = [line for line in log.splitlines() if 'not usable' in line]
    assert len(reasons) == 1 and 'torch 2.14.1 old' in reasons[0] and '2.1.2 new' in reasons[0]
    assert (cache / 'built-against').read_text() == '2.1.2 new\n'
    assert (cache / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl').read_text() == ''


def test_wheel_whose_ops_do_not_load_is_rebuilt(tmp_path, cache):
    built, log = install_mmcv(tmp_path, cache, ops_load=False)
    assert built == ['build']
    assert 'its ops do not load' in log
    assert (cache / 'built-against').read_text() == '2.1.2 new\n'


@pytest.mark.parametrize('stamp', ['2.1.2 new\n', None])
def test_fitting_wheel_is_used_and_stamped(tmp_path, cache, stamp):
    if stamp is not None:
        (cache / 'built-against').write_text(stamp)
    built, log = install_mmcv(tmp_path, cache, ops_load=True)
    assert built == [] and 'not usable' not in log
    assert (cache / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl').read_text() == 'cached'
    assert (cache / 'built-against').read_text() == '2.1.2 new\n'


def sourced_value(expression: str, env: dict) -> str:
    result = run_sourced(f'echo "{expression}"', env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize(
    'stack, mmcv', [('onedl', 'onedl-mmcv==2.3.6'), ('upstream', 'mmcv==2.1.0')]
)
def test_each_stack_builds_its_own_mmcv(stack, mmcv):
    """The stack file's mmcv pin is what gets built, cached under its own distribution name."""
    env = {'MMSGFORMER_STACK': stack}
    assert sourced_value('$MMCV_REQUIREMENT', env) == mmcv
    assert sourced_value('$MMCV_WHEEL_PREFIX', env) == mmcv.split('==')[0].replace('-', '_')
    names = sourced_value('$(stack_distributions $STACK_FILE)', env).split()
    assert len(names) == 6 and mmcv.split('==')[0] in names and 'setuptools' not in names


@pytest.mark.parametrize(
    'env, message',
    [
        ({'MMSGFORMER_STACK': 'openmmlab'}, 'MMSGFORMER_STACK=openmmlab is not one of the stacks'),
        ({'MMSGFORMER_STACK': 'onedl', 'MMSGFORMER_TORCH': '2.1.2'}, 'MMSGFORMER_STACK=upstream'),
    ],
)
def test_unknown_stack_or_unsupported_pair_is_refused(env, message):
    result = run_sourced('true', env)
    assert result.returncode == 1 and message in result.stderr


def test_other_stacks_packages_are_found_for_removal(tmp_path):
    """An environment switched to onedl that still has upstream packages: they are named."""
    for name in ('mmdet', 'openmim'):
        info = tmp_path / f'{name}-1.0.dist-info'
        info.mkdir()
        (info / 'METADATA').write_text(f'Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n')
    env = {'MMSGFORMER_VENV': sys.prefix, 'MMSGFORMER_STACK': 'onedl', 'PYTHONPATH': str(tmp_path)}
    found = sourced_value('$(other_stacks_installed)', env).split()
    assert {'mmdet', 'openmim'} <= set(found)
    assert not any(name.startswith('onedl-') for name in found)
