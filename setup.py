"""Build step of mmsgformer that pyproject.toml cannot express: the ``.mim`` folder.

OpenMMLab packages carry their command-line tools and model index inside the installed
package, in ``mmsgformer/.mim/``, where ``mim train/test/run/search mmsgformer`` look for them.
Building a wheel (or ``pip install .``) copies into it:

- ``tools/`` -> ``.mim/tools/`` (``mim train mmsgformer CONFIG`` runs ``.mim/tools/train.py``);
- ``model-index.yml`` -> ``.mim/model-index.yml`` (``mim search mmsgformer``);
- ``configs/`` -> ``.mim/configs/``: the text configs, where MMEngine resolves
  ``_base_ = ['mmsgformer::<folder>/<file>']`` and mim finds a config by its file name, and the
  metafiles that the model index imports.

The pure-Python configs ship as the package ``mmsgformer.configs`` (downstream configs import
them with ``read_base``); their file names differ from the text configs', as mim refuses a
config name it finds twice in the package. In the clone, ``mmsgformer/.mim`` holds links to
``configs/`` and ``model-index.yml`` instead. Editable installs get no ``.mim`` (MMEngine and
mim look for an editable package in site-packages, where it is not; see README "Use it from
your own project").
"""

import os
import os.path as osp
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = osp.dirname(osp.abspath(__file__))
# source (relative to the repository) -> destination (relative to mmsgformer/.mim)
MIM_FILES = {
    'tools': 'tools',
    'model-index.yml': 'model-index.yml',
    'configs': 'configs',
}


class BuildPyWithMim(build_py):
    """``build_py`` that also fills ``mmsgformer/.mim`` in the build folder (not in editable
    mode)."""

    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False):
            return
        mim = osp.join(self.build_lib, 'mmsgformer', '.mim')
        for src, dst in MIM_FILES.items():
            src, dst = osp.join(ROOT, src), osp.join(mim, dst)
            os.makedirs(osp.dirname(dst), exist_ok=True)
            if osp.islink(dst) or osp.isfile(dst):  # the clone's links, if the build copied them
                os.remove(dst)
            if osp.isdir(src):
                shutil.copytree(
                    src,
                    dst,
                    dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns('__pycache__', '*.pyc'),
                )
            else:
                shutil.copyfile(src, dst)


setup(cmdclass={'build_py': BuildPyWithMim})
