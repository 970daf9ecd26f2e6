"""mmsgformer's configs, importable from the installed package.

Every file here is a pure-Python MMEngine config. A config in another project inherits one
with ``read_base`` (MMEngine finds it through the installed ``mmsgformer`` package)::

    from mmengine.config import read_base

    with read_base():
        from mmsgformer.configs.maskrcnn_sgformer_s_coco import *

    model.roi_head.bbox_head.num_classes = 8

The repository's ``configs/`` folder is a link to this one, so ``configs/<name>.py`` and
``mmsgformer.configs.<name>`` are the same file. See README "Use it from your own project".
"""
