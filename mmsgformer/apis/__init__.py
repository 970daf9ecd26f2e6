"""The inference API: a model from a config and a checkpoint, and images through it.

For detection, segmentation and classification configs alike (as mmdet's
``init_detector``/``inference_detector``, mmseg's and mmpretrain's ``init_model``/
``inference_model``)::

    from mmsgformer.apis import inference_model, init_model

    config = 'configs/mask_rcnn/mask-rcnn_sgformer-s_fpn_1x_coco.py'
    model = init_model(config, 'checkpoint.pth', device='cpu')
    result = inference_model(model, 'demo.jpg')  # a DetDataSample
    results = inference_model(model, ['a.jpg', image_array])  # a list of them

The steps: :func:`build_model` builds a config's model without any weights (analysis);
:func:`load_weights` (:mod:`mmsgformer.models.pretrained`) puts a checkpoint into it, strictly;
:mod:`~mmsgformer.apis.pipeline` runs images through the config's test pipeline
(:func:`build_test_transforms`, :func:`run_pipeline`) and follows its geometry
(:class:`Geometry`, which maps network-input coordinates back to the original image);
:func:`expand_images` lists the images a file, folder or glob names.
"""

from ..models.pretrained import load_weights
from .inference import build_model, describe_weights, inference_model, init_model
from .pipeline import Geometry, build_test_transforms, expand_images, run_pipeline

__all__ = [
    'init_model',
    'inference_model',
    'build_model',
    'load_weights',
    'describe_weights',
    'Geometry',
    'build_test_transforms',
    'expand_images',
    'run_pipeline',
]
