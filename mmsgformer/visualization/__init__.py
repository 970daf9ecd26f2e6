"""Pictures: SG-Former's significance maps and token allocation, and the demo's predictions.

* :mod:`~mmsgformer.visualization.pipeline` - images through a config's test pipeline, with the
  geometry that maps network-input coordinates back to the original image;
* :mod:`~mmsgformer.visualization.significance` - the significance/allocation pictures
  (``tools/visualize_significance.py``);
* :mod:`~mmsgformer.visualization.predictions` - ground truth beside predictions for several
  images (the detection demo's picture, ``tools/demo/image_demo.py``).
"""

from .pipeline import Geometry, build_test_transforms, expand_images, run_pipeline
from .significance import visualize_image, visualize_significance

__all__ = [
    'Geometry',
    'build_test_transforms',
    'expand_images',
    'run_pipeline',
    'visualize_image',
    'visualize_significance',
]
