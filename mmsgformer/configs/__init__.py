"""mmsgformer's configs in MMEngine's pure-Python form, importable from the installed package.

A pure-Python config in another project inherits one with ``read_base`` (MMEngine finds it
through the installed ``mmsgformer`` package)::

    from mmengine.config import read_base

    with read_base():
        from mmsgformer.configs.maskrcnn_sgformer_s_coco import *

    model.roi_head.bbox_head.num_classes = 8

Each file here has a twin in OpenMMLab's text form in the repository's ``configs/`` folder
(``mmsgformer::<folder>/<file>`` for an installed package), named in :data:`TEXT_CONFIGS`;
``tests/test_config_pairs.py`` checks that each pair gives the same config. See README "Use it
from your own project".
"""

_SIZES = ('s', 'm', 'b')

TEXT_CONFIGS = {
    **{
        f'maskrcnn_sgformer_{s}_coco': f'mask_rcnn/mask-rcnn_sgformer-{s}_fpn_1x_coco.py'
        for s in _SIZES
    },
    **{
        f'maskrcnn_sgformer_{s}_coco_3x': f'mask_rcnn/mask-rcnn_sgformer-{s}_fpn_ms-crop-3x_coco.py'
        for s in _SIZES
    },
    **{
        f'upernet_sgformer_{s}_ade20k': f'upernet/upernet_sgformer-{s}_8xb2-160k_ade20k-512x512.py'
        for s in _SIZES
    },
    **{f'sgformer_{s}_in1k': f'sgformer/sgformer-{s}_16xb64_in1k.py' for s in _SIZES},
    'demo.maskrcnn_sgformer_tiny_shapes': 'demo/mask-rcnn_sgformer-tiny_fpn_shapes.py',
    'demo.upernet_sgformer_tiny_shapes': 'demo/upernet_sgformer-tiny_shapes.py',
}
"""``{pure-Python module under mmsgformer.configs: text config under configs/}`` for every
released config."""
