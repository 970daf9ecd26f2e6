"""Backbone weights from any supported checkpoint: what ``init_cfg=dict(type='Pretrained')`` runs.

:func:`load_pretrained` finds the backbone's weights in whatever checkpoint it is given (an
official release, a converted file, a classifier, detector or segmentor of ours), converts the
official layout (:mod:`mmsgformer.models.official_keys`), resizes the position embedding and
refuses, naming keys and shapes, anything that does not fit. :func:`load_state_dict_pre_hook`
does the conversion and resizing for MMEngine's own ``load_checkpoint``.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import MMLogger

from ..utils.safe_loading import extract_state_dict, load_checkpoint_file
from .official_keys import StateDict, convert_official_state_dict, is_official_layout


def resize_pos_embed(pos_embed: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Bicubically resizes a square-grid position embedding ``(1, L, C)`` to ``num_tokens``."""
    src, dst = math.isqrt(pos_embed.shape[1]), math.isqrt(num_tokens)
    if src * src != pos_embed.shape[1] or dst * dst != num_tokens:
        raise ValueError(
            f'pos_embed with {pos_embed.shape[1]} tokens cannot be resized to '
            f'{num_tokens}: both must be square grids'
        )
    grid = pos_embed.reshape(1, src, src, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(dst, dst), mode='bicubic', align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, num_tokens, -1).to(pos_embed.dtype)


def adapt_state_dict(
    state_dict: StateDict, model: nn.Module, logger: Optional[MMLogger] = None
) -> Tuple[StateDict, StateDict]:
    """Official-layout conversion and position-embedding resizing, as needed.

    Returns the backbone state dict and keys that are not the backbone's.
    """
    others: StateDict = {}
    if is_official_layout(state_dict):
        state_dict, others = convert_official_state_dict(state_dict)
    target = model.pos_embed
    pos = state_dict.get('pos_embed')
    if (
        pos is not None
        and pos.dim() == 3
        and pos.shape[2] == target.shape[2]
        and pos.shape[1] != target.shape[1]
    ):
        state_dict['pos_embed'] = resize_pos_embed(pos, target.shape[1])
        if logger is not None:
            logger.info(f'resized pos_embed from {tuple(pos.shape)} to {tuple(target.shape)}')
    return state_dict, others


def _split_backbone(state_dict: StateDict, prefix: Optional[str]) -> Tuple[StateDict, StateDict]:
    """Keys under ``prefix`` (or ``backbone.`` if present) with it stripped, and the rest."""
    if prefix is None:
        prefix = 'backbone.' if any(k.startswith('backbone.') for k in state_dict) else ''
    if not prefix:
        return dict(state_dict), {}
    inside = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    outside = {k: v for k, v in state_dict.items() if not k.startswith(prefix)}
    return inside, outside


def _summarise(keys: Iterable[str], limit: int = 12) -> str:
    keys = sorted(keys)
    head = ', '.join(keys[:limit])
    return head + (f', ... ({len(keys)} in all)' if len(keys) > limit else '')


def load_pretrained(
    model: nn.Module,
    checkpoint: Union[str, Mapping],
    prefix: Optional[str] = None,
    strict: bool = True,
    map_location: str = 'cpu',
    source: Optional[str] = None,
) -> None:
    """Loads backbone weights from any supported checkpoint into ``model``.

    Accepted: official SG-Former releases (timm checkpoints with ``state_dict`` and possibly
    ``state_dict_ema``/``args``/``optimizer``, or plain state dicts, ``module.`` prefixes
    allowed), files of ``tools/model_converters/sgformer2mm.py``, and MMEngine checkpoints of our
    classifiers, detectors and segmentors (their ``backbone.*`` keys).

    Args:
        model: The SGFormer backbone.
        checkpoint: Checkpoint path, an ``http(s)://`` URL (downloaded once into torch's hub
            cache, see :func:`mmsgformer.utils.safe_loading.download_checkpoint`), or a checkpoint
            already read (a state dict or a dict holding one), which is then not read again.
        prefix: Take only keys under this prefix (stripped). Default: ``backbone.`` when present.
        strict: Refuse missing or unexpected backbone keys (default). With ``False`` they are
            listed as warnings and the rest is loaded. Shape mismatches are always refused.
        map_location: Passed to ``torch.load``.
        source: Name of an already-read checkpoint in messages (default: ``'checkpoint'``).

    Raises:
        FileNotFoundError, CheckpointDownloadError, UnsafeCheckpointError,
            CorruptCheckpointError: see :func:`mmsgformer.utils.safe_loading.load_checkpoint_file`.
        RuntimeError: The weights do not fit the model; the message names keys and shapes.
    """
    logger = MMLogger.get_current_instance()
    if isinstance(checkpoint, str):
        source = checkpoint
        checkpoint = load_checkpoint_file(checkpoint, map_location)
    source = source or 'checkpoint'
    raw = extract_state_dict(checkpoint, source)
    state_dict, others = _split_backbone(raw, prefix)
    state_dict, not_backbone = adapt_state_dict(state_dict, model, logger)
    others.update(not_backbone)

    expected = model.state_dict()
    mismatched = [
        f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}'
        for k, v in state_dict.items()
        if k in expected and v.shape != expected[k].shape
    ]
    matched = [k for k, v in state_dict.items() if k in expected and v.shape == expected[k].shape]
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    where = f'checkpoint {source!r}'
    if len(set(state_dict) & set(expected)) < len(expected) // 2:
        raise RuntimeError(
            f'{where} does not hold weights for this SGFormer: only '
            f'{len(set(state_dict) & set(expected))} of {len(expected)} backbone tensors are '
            f'found by name. Is it a checkpoint of another model? Missing e.g.: '
            f'{_summarise(missing, 5)}; checkpoint keys e.g.: {_summarise(raw, 5)}'
        )
    if mismatched:
        raise RuntimeError(
            f'{where} does not fit this SGFormer (another arch?); shapes differ '
            f'for {len(mismatched)} tensors: {_summarise(mismatched, 8)}'
        )
    if strict and (missing or unexpected):
        raise RuntimeError(
            f'{where} does not match this SGFormer exactly: missing {_summarise(missing) or "none"}'
            f'; unexpected {_summarise(unexpected) or "none"}. If that is intended (e.g. a model '
            f'with fewer blocks), load with init_cfg=dict(type="Pretrained", checkpoint=..., '
            f'strict=False) to load the matching {len(matched)} tensors.'
        )
    model.load_state_dict({k: state_dict[k] for k in matched}, strict=False)
    logger.info(f'SGFormer: loaded {len(matched)} tensors from {source}')
    if missing:
        logger.warning(
            f'SGFormer: {len(missing)} tensors not in the checkpoint keep their '
            f'initialisation: {_summarise(missing)}'
        )
    if unexpected:
        logger.warning(
            f'SGFormer: {len(unexpected)} backbone tensors of the checkpoint were not '
            f'used: {_summarise(unexpected)}'
        )
    if others:
        groups = Counter(k.split('.')[0] for k in others)
        logger.info(
            "SGFormer: the checkpoint also holds weights that are not the backbone's "
            '(not loaded here): ' + ', '.join(f'{g}.* ({n})' for g, n in sorted(groups.items()))
        )


def load_state_dict_pre_hook(
    module: nn.Module, state_dict: StateDict, prefix: str, *args, **kwargs
) -> None:
    """``load_state_dict`` pre-hook: converts official keys under ``prefix`` and resizes pos_embed.

    Lets whole-model checkpoints (e.g. a detector fine-tuned at another resolution) load through
    MMEngine's ordinary ``load_checkpoint``.
    """
    own = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not own:
        return
    adapted, others = adapt_state_dict(dict(own), module)
    if adapted.keys() == own.keys() and all(adapted[k] is own[k] for k in own):
        return
    for key in own:
        del state_dict[prefix + key]
    state_dict.update({prefix + k: v for k, v in {**adapted, **others}.items()})
