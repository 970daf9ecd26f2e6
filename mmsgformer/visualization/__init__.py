"""Pictures: SG-Former's significance maps and token allocation, and the demo's predictions.

Images reach the model through :mod:`mmsgformer.apis` (its test pipeline and geometry).

* :mod:`~mmsgformer.visualization.significance` - the significance/allocation pictures
  (``tools/visualize_significance.py``);
* :mod:`~mmsgformer.visualization.predictions` - ground truth beside predictions for several
  images (the detection demo's picture, ``tools/demo/image_demo.py``).
"""

from .significance import visualize_image, visualize_significance

__all__ = ['visualize_image', 'visualize_significance']
