"""Build step of mmsgformer that pyproject.toml cannot express: the ``.mim`` folder.

OpenMMLab packages carry their command-line tools and model index inside the installed
package, in ``mmsgformer/.mim/``, where ``mim train/test/run/search mmsgformer`` look for them.
Building a wheel (or ``pip install .``) copies into it:

- ``tools/`` -> ``.mim/tools/`` (``mim train mmsgformer CONFIG`` runs ``.mim/tools/train.py``);
- ``model-index.yml`` and the metafiles it imports (``configs/metafiles/``), at the same
  relative paths (``mim search mmsgformer``).

The configs themselves ship once, as the package ``mmsgformer.configs`` (which downstream
configs import with ``read_base``, and where mim finds a config by its file name). They are not
copied to ``.mim/configs``: mim searches the whole package for a config's file name and refuses a
name it finds twice. Editable installs get no ``.mim`` (MMEngine and mim look for an editable
package in site-packages, where it is not; see README "Use it from your own project").
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
    'mmsgformer/configs/metafiles': 'configs/metafiles',
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
