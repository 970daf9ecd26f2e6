"""Models from a config and a checkpoint, and images through them.

:func:`init_model` and :func:`inference_model` serve detection (mmdet), segmentation (mmseg)
and classification (mmpretrain) configs alike, as ``init_detector``/``inference_detector``,
mmseg's ``init_model``/``inference_model`` and mmpretrain's do for their own task.
:func:`build_model` (no weights at all, for analysis),
:func:`~mmsgformer.models.pretrained.load_weights` (a checkpoint into the model) and the test
pipeline (:mod:`~mmsgformer.apis.pipeline`) are the steps they are made of.
"""

from __future__ import annotations

import os
import os.path as osp
import warnings
from copy import deepcopy
from typing import Any, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.dataset import pseudo_collate

from ..models.pretrained import load_pretrained, load_weights
from ..utils.config import (
    apply_cfg_options,
    disable_pretrained,
    is_pretrained_init,
    load_config,
    task_registries,
)
from .pipeline import build_test_transforms, run_pipeline

ImageInput = Union[str, os.PathLike, np.ndarray]
"""An image file, or an image array as the config's image loading gives it (``(H, W, C)``,
BGR for ``LoadImageFromFile``, as ``mmcv.imread`` reads it)."""


def build_model(cfg: Config, device: str = 'cpu') -> nn.Module:
    """Builds ``cfg.model`` in its task scope, loading no weights (modules' own initialisation).

    Every pretrained ``init_cfg`` is disabled and ``init_weights`` is not called, so nothing is
    read from disk. mmpretrain's top-level ``data_preprocessor`` is merged into the model as the
    runner does.

    Args:
        cfg: The config (see :func:`~mmsgformer.utils.config.load_config`).
        device: Where to put the model.

    Returns:
        The model in eval mode.
    """
    models, _ = task_registries(cfg)
    model_cfg = deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', deepcopy(cfg.data_preprocessor))
    disable_pretrained(model_cfg)
    model = models.build(model_cfg)
    model.to(torch.device(device))
    model.eval()  # (some train() overrides return None: no chaining)
    return model


def backbone_init_file(cfg: Config) -> Optional[str]:
    """The file of the config's pretrained backbone ``init_cfg`` when it exists, else None."""
    backbone_init = (cfg.model.get('backbone') or {}).get('init_cfg')
    path = backbone_init.get('checkpoint') if isinstance(backbone_init, dict) else None
    if is_pretrained_init(backbone_init) and isinstance(path, str) and osp.isfile(path):
        return path
    return None


def describe_weights(cfg: Config, checkpoint: Optional[str] = None) -> str:
    """Where :func:`init_model`'s weights come from, in a few words (for titles and logs).

    Args:
        cfg: The model's config.
        checkpoint: The checkpoint given to :func:`init_model`, or None.
    """
    if checkpoint is not None:
        return f'weights: {osp.basename(checkpoint)}'
    path = backbone_init_file(cfg)
    if path is not None:
        return f'backbone weights: {osp.basename(path)} (config init_cfg)'
    return 'RANDOM WEIGHTS (no checkpoint)'


def init_model(
    config: Union[str, os.PathLike, Config],
    checkpoint: Optional[str] = None,
    device: Optional[str] = None,
    cfg_options: Optional[dict] = None,
    *,
    backbone_only: bool = False,
) -> nn.Module:
    """A model ready for inference: built from ``config``, weights from ``checkpoint``.

    Without a checkpoint the backbone is initialised from the config's pretrained ``init_cfg``
    when that file exists, otherwise the model keeps random weights (with a warning;
    :func:`describe_weights` says which).

    Args:
        config: Config file or config of a detector, segmentor or classifier.
        checkpoint: A checkpoint of this config's whole model, loaded strictly
            (:func:`~mmsgformer.models.pretrained.load_weights`), or None.
        device: e.g. ``'cpu'`` or ``'cuda:0'``; default ``cuda:0`` when available, else the CPU.
        cfg_options: ``{dotted.key: value}`` overrides of config settings
            (:func:`~mmsgformer.utils.config.apply_cfg_options`); a ``Config`` given is copied
            first.
        backbone_only: Load only the backbone from ``checkpoint``: any checkpoint a backbone's
            ``init_cfg`` takes (an official release, a converted or backbone-only file, the
            ``backbone.*`` part of a whole model; see
            :func:`~mmsgformer.models.pretrained.load_pretrained`). The other parts keep their
            initialisation.

    Returns:
        The model in eval mode, with ``model.cfg`` (the config) and, when the checkpoint's
        ``meta`` has one (whole-model checkpoints), ``model.dataset_meta``.

    Raises:
        FileNotFoundError: The config file does not exist.
        CheckpointError, CheckpointMismatchError: See
            :func:`~mmsgformer.models.pretrained.load_weights`.
    """
    if isinstance(config, Config):
        cfg = apply_cfg_options(deepcopy(config), cfg_options) if cfg_options else config
    elif isinstance(config, (str, os.PathLike)):
        cfg = load_config(os.fspath(config), cfg_options)
    else:
        raise TypeError(
            f'config must be a file name or an mmengine Config, not {type(config).__name__}'
        )
    device = device or ('cuda:0' if torch.cuda.is_available() else 'cpu')
    model = build_model(cfg, 'cpu')
    model.cfg = cfg
    if checkpoint is not None and backbone_only:
        load_pretrained(model.backbone, checkpoint)
    elif checkpoint is not None:
        meta = load_weights(model, checkpoint)
        if meta.get('dataset_meta'):
            model.dataset_meta = meta['dataset_meta']
    elif backbone_init_file(cfg) is not None:
        model.backbone.init_cfg = deepcopy(cfg.model.backbone.init_cfg)
        model.backbone.init_weights()
    else:
        warnings.warn(
            'No checkpoint given and no pretrained backbone file in the config: '
            'the model has RANDOM weights. Pass a checkpoint to see what a '
            'trained model does.'
        )
    model.to(torch.device(device))
    model.eval()
    return model


def inference_model(
    model: nn.Module, images: Union[ImageInput, Sequence[ImageInput]]
) -> Union[Any, List[Any]]:
    """Runs images through the config's test pipeline and the model.

    The pipeline is ``model.cfg``'s test pipeline without annotation loading (see
    :func:`~mmsgformer.apis.pipeline.build_test_transforms`); each image is one
    ``model.test_step`` without gradients.

    Args:
        model: A model of :func:`init_model` (or any with ``model.cfg``).
        images: One image file or array (see :data:`ImageInput`), or a list of them.

    Returns:
        The prediction of each image as the task's data sample (mmdet ``DetDataSample`` with
        ``pred_instances``, mmseg ``SegDataSample`` with ``pred_sem_seg``, mmpretrain
        ``DataSample`` with ``pred_score``/``pred_label``): one for one image, a list for a
        list.
    """
    cfg = getattr(model, 'cfg', None)
    if not isinstance(cfg, Config):
        raise ValueError(
            'the model has no config (model.cfg); build it with mmsgformer.apis.init_model'
        )
    single = isinstance(images, (str, os.PathLike, np.ndarray))
    batch = [images] if single else list(images)
    transforms = build_test_transforms(cfg)
    predictions = []
    for index, image in enumerate(batch):
        image = os.fspath(image) if isinstance(image, os.PathLike) else image
        packed, _, _ = run_pipeline(transforms, image, index)
        with torch.no_grad():
            predictions += model.test_step(pseudo_collate([packed]))
    return predictions[0] if single else predictions
