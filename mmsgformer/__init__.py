"""mmsgformer: SG-Former (Self-guided Transformer, ICCV 2023) for OpenMMLab.

Importing the package registers every class that a config of ours names (the policy is in
:mod:`mmsgformer.registry`): the backbone (:mod:`mmsgformer.models`) and the hooks and model
wrapper (:mod:`mmsgformer.engine`). It imports neither mmdet, mmseg nor mmpretrain. It also
adds the checkpoint allow-list to torch's (:func:`mmsgformer.utils.register_safe_globals`), so that
MMEngine checkpoints load through MMEngine's and the stock tools' ``torch.load``, and makes
``_base_ = ['mmsgformer::<folder>/<file>']`` resolve to our text configs
(:func:`mmsgformer.utils.config.register_config_package`). Under OneDL it keeps MMEngine's
checkpoint loading from retrying refused checkpoints with full unpickling
(:func:`mmsgformer.utils.compat.refuse_unpickling_fallback_in_mmengine`).

Before any of that it checks that the installed OpenMMLab packages come from one line, upstream
or OneDL (:func:`mmsgformer.utils.compat.check_openmmlab_installation`).
"""

from .utils.compat import check_openmmlab_installation, refuse_unpickling_fallback_in_mmengine

check_openmmlab_installation()

from . import engine  # noqa: F401  (registers the hooks and the CPU model wrapper)
from .models import SGFormer  # noqa: F401  (registers the backbone)
from .utils import register_safe_globals
from .utils.config import register_config_package
from .version import __version__

register_safe_globals()
refuse_unpickling_fallback_in_mmengine()
register_config_package()

__all__ = ['SGFormer', '__version__']
