"""The installable package: a built wheel, installed without the checkout on the path, ships
the text configs where MMEngine resolves ``mmsgformer::`` and mim finds them
(``mmsgformer/.mim/configs``), the pure-Python configs (importable as
``mmsgformer.configs.<name>``), the tools and the model index, and a project in another folder
trains and evaluates text configs that inherit ours: detection through ``mim train/test
mmsgformer`` (our tools, from the installed package) with ``mmsgformer::``, segmentation with
mmseg's own stock ``tools/train.py`` / ``tools/test.py`` by path.

One wheel build for this file (module fixture); tiny demo models, 1 iteration on 2 generated
images each.
"""

import glob
import os
import os.path as osp
import shutil
import sys
import zipfile
from typing import NamedTuple

import pytest
from conftest import (
    ONEDL_MIM_FINDS_OUR_PACKAGE,
    REPO,
    STOCK_MMSEG_PARSES_OUR_CONFIGS,
    run_command,
)

from mmsgformer.configs import TEXT_CONFIGS

TIMEOUT = 600
# What the wheel is built from (pyproject.toml's package and setup.py's .mim sources).
SOURCES = (
    'pyproject.toml',
    'setup.py',
    'README.md',
    'model-index.yml',
    'mmsgformer',
    'tools',
    'configs',
)
MIM = osp.join(osp.dirname(sys.executable), 'mim')
PYTHON_CONFIGS = sorted(TEXT_CONFIGS)
"""Every pure-Python config of ours as a dotted name under ``mmsgformer.configs``."""
TEXT_PATHS = sorted(TEXT_CONFIGS.values())
"""Every text config of ours as a path under ``configs/`` (``mmsgformer::<path>``)."""
STRIP_SCOPES = """
def strip_scopes(value):  # the _scope_ keys that inheriting an `mmsgformer::` base adds
    if isinstance(value, dict):
        return {k: strip_scopes(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return [strip_scopes(v) for v in value]
    return value
"""


def test_every_config_is_named_in_text_configs():
    """:data:`TEXT_CONFIGS` names every config file of both forms (bases excluded)."""

    def configs_in(root, separator):
        found = []
        for path in glob.glob(osp.join(root, '**', '*.py'), recursive=True):
            rel = osp.relpath(path, root)
            if not rel.startswith('_base_') and osp.basename(rel) != '__init__.py':
                found.append(rel[: -len('.py')].replace(os.sep, '.') if separator else rel)
        return sorted(found)

    assert configs_in(osp.join(REPO, 'mmsgformer', 'configs'), '.') == PYTHON_CONFIGS
    assert configs_in(osp.join(REPO, 'configs'), None) == TEXT_PATHS


class Installed(NamedTuple):
    wheel: str
    site: str  # the --target folder holding the installed package
    env: dict  # PYTHONPATH=site
    project: str  # a downstream project's folder (the cwd of every command)


def run(cmd, installed: Installed) -> str:
    return run_command(cmd, cwd=installed.project, env=installed.env, timeout=TIMEOUT)


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
    build = ['wheel', '-q', '--no-deps', '--no-build-isolation', '-w', root / 'dist', src]
    run_command(pip + build, cwd=root, env=dict(os.environ), timeout=TIMEOUT)
    (wheel,) = glob.glob(str(root / 'dist' / 'mmsgformer-*.whl'))
    site = root / 'site'
    install = ['install', '-q', '--no-deps', '--target', site, wheel]
    run_command(pip + install, cwd=root, env=dict(os.environ), timeout=TIMEOUT)
    project = root / 'project'
    project.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site), OMP_NUM_THREADS='1')
    return Installed(wheel, str(site), env, str(project))


def test_wheel_ships_configs_tools_and_model_index(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for name in PYTHON_CONFIGS:
        assert f'mmsgformer/configs/{name.replace(".", "/")}.py' in names
    for path in TEXT_PATHS + [
        '_base_/models/mask-rcnn_sgformer_fpn.py',
        '_base_/models/upernet_sgformer.py',
        '_base_/models/image-classifier_sgformer.py',
        '_base_/sgformer-tiny.py',
    ]:
        assert f'mmsgformer/.mim/configs/{path}' in names
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


def test_every_config_inherits_from_the_installed_package(installed):
    """In another folder, ``_base_ = ['mmsgformer::<path>']`` (once mmsgformer is imported)
    gives the same config as the checkout's text config, and ``from mmsgformer.configs.<name>
    import *`` the same as its pure-Python twin; MMEngine found the installed package, not the
    checkout."""
    script = (
        STRIP_SCOPES
        + f"""
import json, os.path as osp
from mmengine.config import Config
from mmengine.utils import get_installed_path
import mmsgformer
assert mmsgformer.__file__.startswith({installed.site!r}), mmsgformer.__file__
assert get_installed_path('mmsgformer').startswith({installed.site!r})

def same(ours, text, name):
    with open('user.py', 'w') as f:
        f.write(text)
    theirs = Config.fromfile('user.py').to_dict()
    assert json.dumps(strip_scopes(Config.fromfile(ours).to_dict()), sort_keys=True,
                      default=repr) == json.dumps(strip_scopes(theirs), sort_keys=True,
                                                  default=repr), name
    print('same', name)

for path in {TEXT_PATHS!r}:
    same(osp.join({REPO!r}, 'configs', path), f"_base_ = ['mmsgformer::{{path}}']\\n", path)
for name in {PYTHON_CONFIGS!r}:
    same(osp.join({REPO!r}, 'mmsgformer', 'configs', *name.split('.')) + '.py',
         'from mmengine.config import read_base\\n'
         'with read_base():\\n'
         f'    from mmsgformer.configs.{{name}} import *\\n', name)
"""
    )
    out = run([sys.executable, '-c', script], installed)
    assert out.count('same ') == len(TEXT_PATHS) + len(PYTHON_CONFIGS), out


@ONEDL_MIM_FINDS_OUR_PACKAGE
def test_mim_search_lists_the_models(installed):
    out = run([MIM, 'search', 'mmsgformer', '--valid-config'], installed)  # a list's repr
    for path in TEXT_PATHS:
        assert repr(osp.basename(path)[: -len('.py')]) in out, (path, out)
    out = run([MIM, 'search', 'mmsgformer', '--config', 'sgformer-s_16xb64_in1k'], installed)
    assert '83.2' in out and 'configs/sgformer/sgformer-s_16xb64_in1k.py' in out, out


DETECTION = """
_base_ = ['mmsgformer::demo/mask-rcnn_sgformer-tiny_fpn_shapes.py']

# data in ./data/coco_shapes (the demo's data_root), 2 images: 1 iteration, then evaluation
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False)
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False)
test_dataloader = val_dataloader
model = dict(test_cfg=dict(rcnn=dict(score_thr=0.0)))  # a barely trained detector still scores
train_cfg = dict(max_epochs=1, val_interval=1)
default_hooks = dict(logger=dict(interval=1))
"""

# mmseg's stock tools read the config before importing anything of ours: the path form, with
# the demo's custom_imports registering SG-Former
SEGMENTATION = """
_base_ = ['{site}/mmsgformer/.mim/configs/demo/upernet_sgformer-tiny_shapes.py']

# data in ./data/ade_shapes (the demo's data_root), 2 images: 1 iteration, then evaluation
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False)
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False)
test_dataloader = val_dataloader
train_cfg = dict(max_iters=1, val_interval=1)
default_hooks = dict(checkpoint=dict(interval=1), logger=dict(interval=1))
"""


@ONEDL_MIM_FINDS_OUR_PACKAGE
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


@STOCK_MMSEG_PARSES_OUR_CONFIGS
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
        f.write(SEGMENTATION.format(site=installed.site))
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
    assert sorted(paths) == ['configs/' + path for path in TEXT_PATHS]
    for model in index.models:
        assert model.name == osp.basename(model.config)[: -len('.py')]
        assert model.metadata.parameters and model.metadata.flops or 'tiny' in model.name


def test_clone_configs_inherited_from_another_folder(tmp_path):
    """In the environment `make setup` builds (the clone on the path through a .pth file), a
    config in another folder inherits ours in both forms: a text config through
    ``mmsgformer::`` (``mmsgformer/.mim/configs`` links to ``configs/``), a pure-Python one from
    ``mmsgformer.configs`` (an editable install would make MMEngine look for
    ``site-packages/mmsgformer`` and fail)."""
    (tmp_path / 'my_text_config.py').write_text(
        "_base_ = ['mmsgformer::upernet/upernet_sgformer-s_8xb2-160k_ade20k-512x512.py']\n"
        'model = dict(decode_head=dict(num_classes=7))\n'
    )
    (tmp_path / 'my_python_config.py').write_text(
        'from mmengine.config import read_base\n'
        'with read_base():\n'
        '    from mmsgformer.configs.upernet_sgformer_s_ade20k import *\n'
        'model.decode_head.num_classes = 7\n'
    )
    script = (
        'import mmsgformer\n'
        'from mmengine.config import Config\n'
        'built = [Config.fromfile(name).model for name in ("my_text_config.py",\n'
        '                                                    "my_python_config.py")]\n'
        'print("RESULT", mmsgformer.__file__, *[(m.decode_head.num_classes, m.backbone.type)\n'
        '                                     for m in built])\n'
    )
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    out = run_command([sys.executable, '-c', script], cwd=tmp_path, env=env, timeout=TIMEOUT)
    result = out[out.rindex('RESULT ') :].split(maxsplit=2)
    assert osp.realpath(result[1]) == osp.realpath(osp.join(REPO, 'mmsgformer', '__init__.py'))
    assert result[2].strip() == ' '.join(["(7, 'mmsgformer.SGFormer')"] * 2), out[-3000:]
