"""The installable package: a built wheel, installed without the checkout on the path, ships
the configs (importable as ``mmsgformer.configs.<name>``), the tools and the model index the
OpenMMLab way (``mmsgformer/.mim``), and a project in another folder trains and evaluates
configs that inherit ours: detection through ``mim train/test mmsgformer`` (our tools, from the
installed package), segmentation with mmseg's own stock ``tools/train.py`` / ``tools/test.py``.

One wheel build for this file (module fixture); tiny demo models, 1 iteration on 2 generated
images each.
"""

import glob
import os
import os.path as osp
import shutil
import subprocess
import sys
import zipfile
from typing import NamedTuple

import pytest
from conftest import REPO

TIMEOUT = 600
# What the wheel is built from (pyproject.toml's package and setup.py's .mim sources).
SOURCES = ('pyproject.toml', 'setup.py', 'README.md', 'model-index.yml', 'mmsgformer', 'tools')
MIM = osp.join(osp.dirname(sys.executable), 'mim')


def config_names():
    """Every config of ours as a dotted name under ``mmsgformer.configs`` (bases excluded)."""
    root = osp.join(REPO, 'mmsgformer', 'configs')
    names = []
    for path in sorted(glob.glob(osp.join(root, '**', '*.py'), recursive=True)):
        rel = osp.relpath(path, root)[: -len('.py')]
        if osp.basename(rel) != '__init__' and not rel.startswith('_base_'):
            names.append(rel.replace(os.sep, '.'))
    return names


class Installed(NamedTuple):
    wheel: str
    site: str  # the --target folder holding the installed package
    env: dict  # PYTHONPATH=site
    project: str  # a downstream project's folder (the cwd of every command)


def run(cmd, installed: Installed) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd],
        cwd=installed.project,
        env=installed.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, f'{cmd} failed:\n{proc.stdout[-6000:]}'
    return proc.stdout


@pytest.fixture(scope='module')
def installed(tmp_path_factory) -> Installed:
    root = tmp_path_factory.mktemp('package')
    src = root / 'src'
    src.mkdir()
    for name in SOURCES:  # a clean copy: no build/ or .mim left over from earlier builds
        if osp.isdir(osp.join(REPO, name)):
            shutil.copytree(
                osp.join(REPO, name),
                src / name,
                ignore=shutil.ignore_patterns('__pycache__', '*.pyc', '.mim'),
            )
        else:
            shutil.copy(osp.join(REPO, name), src / name)
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check']
    subprocess.run(
        pip
        + ['wheel', '-q', '--no-deps', '--no-build-isolation', '-w', str(root / 'dist'), str(src)],
        check=True,
        cwd=root,
        capture_output=True,
        timeout=TIMEOUT,
    )
    (wheel,) = glob.glob(str(root / 'dist' / 'mmsgformer-*.whl'))
    site = root / 'site'
    subprocess.run(
        pip + ['install', '-q', '--no-deps', '--target', str(site), wheel],
        check=True,
        cwd=root,
        capture_output=True,
        timeout=TIMEOUT,
    )
    project = root / 'project'
    project.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site), OMP_NUM_THREADS='1')
    return Installed(wheel, str(site), env, str(project))


def test_wheel_ships_configs_tools_and_model_index(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for name in config_names():
        assert f'mmsgformer/configs/{name.replace(".", "/")}.py' in names
    for base in (
        'maskrcnn_sgformer_coco',
        'maskrcnn_coco_ms_3x',
        'upernet_sgformer_ade20k',
        'sgformer_in1k',
    ):
        assert f'mmsgformer/configs/_base_/{base}.py' in names
    for tool in ('train.py', 'test.py', 'analysis_tools/get_flops.py'):
        assert f'mmsgformer/.mim/tools/{tool}' in names
    assert 'mmsgformer/.mim/model-index.yml' in names
    for family in ('sgformer_in1k', 'maskrcnn_coco', 'upernet_ade20k'):
        assert f'mmsgformer/.mim/configs/metafiles/{family}.yml' in names
    # each config once: mim looks a config's file name up in the whole package and refuses a
    # name it finds twice
    basenames = [
        osp.basename(n)
        for n in names
        if '/configs/' in n and n.endswith('.py') and not n.endswith('__init__.py')
    ]
    assert len(basenames) == len(set(basenames))
    assert not any('__pycache__' in n for n in names)


def test_every_config_imports_from_the_installed_package(installed):
    """``from mmsgformer.configs.<name> import *`` in another folder gives the same config as
    the checkout's file, and MMEngine found the installed package, not the checkout."""
    script = f"""
import json, os.path as osp, sys
from mmengine.config import Config
from mmengine.utils import get_installed_path
import mmsgformer
assert mmsgformer.__file__.startswith({installed.site!r}), mmsgformer.__file__
assert get_installed_path('mmsgformer').startswith({installed.site!r})
for name in {config_names()!r}:
    path = 'user_' + name.replace('.', '_') + '.py'
    with open(path, 'w') as f:
        f.write('from mmengine.config import read_base\\n'
                'with read_base():\\n'
                f'    from mmsgformer.configs.{{name}} import *\\n')
    ours = Config.fromfile(osp.join({REPO!r}, 'configs', *name.split('.')) + '.py')
    theirs = Config.fromfile(path)
    assert json.dumps(ours.to_dict(), sort_keys=True, default=repr) == json.dumps(
        theirs.to_dict(), sort_keys=True, default=repr), name
    print('same', name)
"""
    out = run([sys.executable, '-c', script], installed)
    assert out.count('same ') == len(config_names()), out


def test_mim_search_lists_the_models(installed):
    out = run([MIM, 'search', 'mmsgformer', '--valid-config'], installed)  # a list's repr
    for name in config_names():
        assert repr(name.split('.')[-1]) in out, (name, out)
    out = run([MIM, 'search', 'mmsgformer', '--config', 'sgformer_s_in1k'], installed)
    assert '83.2' in out and 'configs/sgformer/sgformer-s_16xb64_in1k.py' in out, out


DETECTION = """
from mmengine.config import read_base

with read_base():
    from mmsgformer.configs.demo.maskrcnn_sgformer_tiny_shapes import *

# data in ./data/coco_shapes (the demo's data_root), 2 images: 1 iteration, then evaluation
train_dataloader.update(batch_size=2, num_workers=0, persistent_workers=False)
val_dataloader.update(batch_size=2, num_workers=0, persistent_workers=False)
test_dataloader = val_dataloader
model.test_cfg.rcnn.score_thr = 0.0  # a barely trained detector still gets scored
train_cfg.update(max_epochs=1, val_interval=1)
default_hooks.logger.interval = 1
"""

SEGMENTATION = """
from mmengine.config import read_base

with read_base():
    from mmsgformer.configs.demo.upernet_sgformer_tiny_shapes import *

# data in ./data/ade_shapes (the demo's data_root), 2 images: 1 iteration, then evaluation
train_dataloader.update(batch_size=2, num_workers=0, persistent_workers=False)
val_dataloader.update(batch_size=2, num_workers=0, persistent_workers=False)
test_dataloader = val_dataloader
train_cfg.update(max_iters=1, val_interval=1)
default_hooks.checkpoint.interval = 1
default_hooks.logger.interval = 1
"""


def test_downstream_detection_with_mim(installed):
    """``mim train mmsgformer`` a downstream config, then ``mim test mmsgformer`` the demo config
    by its file name (found in the installed package) on that checkpoint."""
    from mmsgformer.synthetic_data import generate_coco_shapes

    generate_coco_shapes(
        osp.join(installed.project, 'data', 'coco_shapes'), num_train=2, num_val=2, seed=1
    )
    with open(osp.join(installed.project, 'det.py'), 'w') as f:
        f.write(DETECTION)
    work = osp.join(installed.project, 'work_det')
    out = run([MIM, 'train', 'mmsgformer', 'det.py', '--work-dir', work], installed)
    assert osp.join(installed.site, 'mmsgformer', '.mim', 'tools', 'train.py') in out
    assert 'coco/bbox_mAP' in out and 'coco/segm_mAP' in out, out[-3000:]
    ckpt = osp.join(work, 'epoch_1.pth')
    assert osp.isfile(ckpt)

    out = run(
        [
            MIM,
            'test',
            'mmsgformer',
            'mask-rcnn_sgformer-tiny_fpn_shapes.py',
            '--checkpoint',
            ckpt,
            '--work-dir',
            osp.join(installed.project, 'work_det_test'),
            '--cfg-options',
            'test_dataloader.num_workers=0',
            'test_dataloader.persistent_workers=False',
            'model.test_cfg.rcnn.score_thr=0.0',
        ],
        installed,
    )
    demo = osp.join(
        installed.site,
        'mmsgformer',
        '.mim',
        'configs',
        'demo',
        'mask-rcnn_sgformer-tiny_fpn_shapes.py',
    )
    assert demo in out and 'coco/bbox_mAP' in out, out[-3000:]


def test_downstream_segmentation_with_mmseg_stock_tools(installed):
    from importlib.util import find_spec

    from mmsgformer.synthetic_data import generate_ade_shapes

    generate_ade_shapes(
        osp.join(installed.project, 'data', 'ade_shapes'),
        num_train=2,
        num_val=2,
        img_size=64,
        seed=1,
    )
    with open(osp.join(installed.project, 'seg.py'), 'w') as f:
        f.write(SEGMENTATION)
    tools = osp.join(osp.dirname(find_spec('mmseg').origin), '.mim', 'tools')
    work = osp.join(installed.project, 'work_seg')
    run([sys.executable, osp.join(tools, 'train.py'), 'seg.py', '--work-dir', work], installed)
    ckpt = osp.join(work, 'iter_1.pth')
    assert osp.isfile(ckpt)
    out = run(
        [
            sys.executable,
            osp.join(tools, 'test.py'),
            'seg.py',
            ckpt,
            '--work-dir',
            osp.join(installed.project, 'work_seg_test'),
        ],
        installed,
    )
    assert 'mIoU' in out, out[-3000:]


def test_model_index_covers_every_config():
    """Every Config path of the model index exists, and every config is in the index."""
    from modelindex.load_model_index import load

    index = load(osp.join(REPO, 'model-index.yml'))
    paths = [model.config for model in index.models]
    assert len(paths) == len(set(paths))
    for path in paths:
        assert osp.isfile(osp.join(REPO, path)), path
    assert sorted(paths) == sorted(
        'configs/' + name.replace('.', '/') + '.py' for name in config_names()
    )
    for model in index.models:
        assert model.name == osp.basename(model.config)[: -len('.py')]
        assert model.metadata.parameters and model.metadata.flops or 'tiny' in model.name


def test_clone_configs_inherited_from_another_folder(tmp_path):
    """In the environment `make setup` builds (the clone on the path through a .pth file), a
    config in another folder inherits ours from ``mmsgformer.configs`` (an editable install
    would make MMEngine look for ``site-packages/mmsgformer`` and fail)."""
    (tmp_path / 'my_config.py').write_text(
        'from mmengine.config import read_base\n'
        'with read_base():\n'
        '    from mmsgformer.configs.upernet_sgformer_s_ade20k import *\n'
        'model.decode_head.num_classes = 7\n'
    )
    script = (
        'import mmsgformer\n'
        'from mmengine.config import Config\n'
        'cfg = Config.fromfile("my_config.py")\n'
        'print(mmsgformer.__file__, cfg.model.decode_head.num_classes, '
        'cfg.model.backbone.type)\n'
    )
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run(
        [sys.executable, '-c', script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    module_file, num_classes, backbone = proc.stdout.split()[-3:]
    assert osp.realpath(module_file) == osp.realpath(osp.join(REPO, 'mmsgformer', '__init__.py'))
    assert (num_classes, backbone) == ('7', 'mmsgformer.SGFormer')
