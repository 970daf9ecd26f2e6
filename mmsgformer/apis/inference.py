"""Models from a config (and a checkpoint) for inference and analysis."""
from __future__ import annotations

import os.path as osp
import warnings
from copy import deepcopy
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmengine.config import Config

from .config import disable_pretrained, is_pretrained_init, task_registries


def build_model(cfg: Config, device: str = 'cpu') -> nn.Module:
    """Builds ``cfg.model`` in its task scope, loading no weights (modules' own initialisation).

    Every pretrained ``init_cfg`` is disabled and ``init_weights`` is not called, so nothing is
    read from disk. mmpretrain's top-level ``data_preprocessor`` is merged into the model as the
    runner does.

    Args:
        cfg: The config (see :func:`~mmsgformer.apis.load_config`).
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


def load_weights(model: nn.Module, checkpoint: str) -> dict:
    """Loads a whole-model or backbone-only checkpoint into ``model``.

    A checkpoint with ``backbone.*`` keys is a whole model (classifier, detector, segmentor of
    the same config); any other is taken as the backbone's (official SG-Former release or
    converted file, see :func:`mmsgformer.models.load_pretrained`). Weights with NaN/Inf are
    refused (:func:`mmsgformer.engine.reliability.check_finite_checkpoint`).

    Args:
        model: The model built from the checkpoint's config.
        checkpoint: Checkpoint path.

    Returns:
        The checkpoint's ``meta`` (e.g. ``dataset_meta``), ``{}`` if it has none.

    Raises:
        RuntimeError: Fewer than half of the model's tensors are in the checkpoint (a checkpoint
            of another model).
    """
    from mmsgformer.engine.reliability import check_finite_checkpoint
    from mmsgformer.models.pretrained import load_pretrained
    from mmsgformer.utils import extract_state_dict, load_checkpoint_file

    raw = load_checkpoint_file(checkpoint)
    state = extract_state_dict(raw, checkpoint)
    check_finite_checkpoint(state)
    meta = (raw.get('meta') or {}) if isinstance(raw, dict) else {}
    if not any(k.startswith('backbone.') for k in state):
        load_pretrained(model.backbone, checkpoint)
        return meta
    expected = model.state_dict()
    found = [k for k in state if k in expected]
    if len(found) < len(expected) // 2:
        raise RuntimeError(f'checkpoint {checkpoint!r} does not hold weights for this model: '
                           f'only {len(found)} of its {len(expected)} tensors are in it. Is it a '
                           f'checkpoint of another config?')
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        warnings.warn(f'checkpoint {checkpoint!r}: {len(missing)} model tensors missing '
                      f'(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. '
                      f'{unexpected[:3]})')
    return meta


def init_model(cfg: Config, checkpoint: Optional[str] = None,
               device: Optional[str] = None) -> Tuple[nn.Module, str]:
    """A model ready for inference: built from ``cfg``, weights from ``checkpoint``.

    Without a checkpoint the backbone is initialised from the config's pretrained ``init_cfg``
    when that file exists, otherwise the model keeps random weights (with a warning).

    Args:
        cfg: The config (see :func:`~mmsgformer.apis.load_config`).
        checkpoint: Whole-model or backbone checkpoint (see :func:`load_weights`), or None.
        device: e.g. ``'cpu'`` or ``'cuda:0'``; default ``cuda:0`` when available.

    Returns:
        The model (eval mode, ``model.cfg`` set, ``model.dataset_meta`` from the checkpoint when
        it has one) and a short description of where its weights came from.
    """
    device = device or ('cuda:0' if torch.cuda.is_available() else 'cpu')
    model = build_model(cfg, 'cpu')
    model.cfg = cfg
    if checkpoint is not None:
        meta = load_weights(model, checkpoint)
        if meta.get('dataset_meta'):
            model.dataset_meta = meta['dataset_meta']
        weights = f'weights: {osp.basename(checkpoint)}'
    else:
        backbone_init = (cfg.model.get('backbone') or {}).get('init_cfg')
        path = backbone_init.get('checkpoint') if isinstance(backbone_init, dict) else None
        if is_pretrained_init(backbone_init) and isinstance(path, str) and osp.isfile(path):
            model.backbone.init_cfg = deepcopy(backbone_init)
            model.backbone.init_weights()
            weights = f'backbone weights: {osp.basename(path)} (config init_cfg)'
        else:
            weights = 'RANDOM WEIGHTS (no checkpoint)'
            warnings.warn('No checkpoint given and no pretrained backbone file in the config: '
                          'the model has RANDOM weights. Pass a checkpoint to see what a '
                          'trained model does.')
    model.to(torch.device(device))
    model.eval()
    return model, weights
