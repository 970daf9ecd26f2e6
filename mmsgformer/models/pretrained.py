"""Weights from a checkpoint into a model: :func:`load_weights`, strict unless told otherwise.

:func:`load_weights` is the one way our code puts a checkpoint into a model: inference
(:func:`mmsgformer.apis.init_model`), ONNX export, ``tools/test.py`` and :func:`load_pretrained`
(what a backbone's ``init_cfg=dict(type='Pretrained')`` runs) go through it. It reads the file
safely, takes the part asked for (``prefix``), converts SG-Former weights in the official layout
(:mod:`mmsgformer.models.official_keys`) and resizes their position embedding, and loads only when
every tensor fits; otherwise one :class:`CheckpointMismatchError` lists the missing, unexpected
and mis-shaped tensors and names the likely cause and the fix. Tensors are left out only where
the caller names them (``allow_missing``, ``allow_unexpected``).

:func:`load_state_dict_pre_hook` converts and resizes the same way inside ``load_state_dict``, so
that MMEngine's own loading (``load_checkpoint``, ``load_from``, ``--resume``) takes such
checkpoints too.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from typing import Any, Collection, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import MMLogger

from ..utils.safe_loading import (
    CheckpointError,
    check_finite_checkpoint,
    extract_state_dict,
    load_checkpoint_file,
    read_checkpoint,
)
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


def adapt_state_dict(state_dict: StateDict, model: nn.Module) -> Tuple[StateDict, StateDict]:
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
        MMLogger.get_current_instance().info(
            f'resized pos_embed from {tuple(pos.shape)} to {tuple(target.shape)}'
        )
    return state_dict, others


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


# ----------------------------------------------------------------------------- the one way in
NAMES_SHOWN = 8
"""How many tensor names a message lists per kind before it counts the rest by part."""
CLASSIFIER_HEAD = ('head.',)
"""The classifier head of an official release or of a classifier state dict: never a backbone's."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint's tensors do not fit the model: missing, unexpected or of another shape."""


def name_list(names: Sequence[str]) -> str:
    """``a, b, c`` for a few names; the first :data:`NAMES_SHOWN` and the rest counted by part
    (``... and 120 more: neck.* 20, roi_head.* 100``) for many."""
    names = sorted(names)
    if not names:
        return 'none'
    shown = ', '.join(names[:NAMES_SHOWN])
    rest = names[NAMES_SHOWN:]
    if not rest:
        return shown
    parts = Counter(name.split('.')[0] for name in rest)
    by_part = ', '.join(f'{part}.* {count}' for part, count in sorted(parts.items()))
    return f'{shown} ... and {len(rest)} more: {by_part}'


def likely_cause(
    model_keys: Collection[str], checkpoint_keys: Iterable[str], found: int, mis_shaped: List[str]
) -> str:
    """The likely reason why a checkpoint does not fit a model, and the fix, in a sentence or two.

    Args:
        model_keys: The model's state-dict keys.
        checkpoint_keys: The keys of the part of the checkpoint that was to be loaded.
        found: How many model tensors the checkpoint holds with the right shape.
        mis_shaped: The tensors it holds with another shape.
    """
    checkpoint_keys = list(checkpoint_keys)
    model_has_backbone = any(k.startswith('backbone.') for k in model_keys)
    checkpoint_has_backbone = any(k.startswith('backbone.') for k in checkpoint_keys)
    backbone_only = is_official_layout(checkpoint_keys) or any(
        f'backbone.{k}' in model_keys for k in checkpoint_keys
    )
    if model_has_backbone and not checkpoint_has_backbone and backbone_only:
        return (
            'the checkpoint holds no backbone.* tensors: it is a backbone-only file (an '
            'official SG-Former release or a backbone state dict), not a whole model. Load it '
            "into the backbone: model.backbone.init_cfg=dict(type='Pretrained', "
            'checkpoint=FILE) in the config, init_model(..., backbone_only=True) or '
            'load_pretrained(model.backbone, FILE); the other parts keep their initialisation.'
        )
    if checkpoint_has_backbone and not model_has_backbone:
        return (
            "the checkpoint is a whole model's (backbone.* tensors): load its backbone part "
            "with prefix='backbone.' (the default of load_pretrained and init_cfg)."
        )
    if mis_shaped or found < len(model_keys) // 2:
        return (
            'a checkpoint of another config (another architecture, number of classes or '
            'head) or of another model: use the config it was trained with, or its '
            '--cfg-options.'
        )
    return (
        'the model and the checkpoint differ in a few tensors (e.g. fewer blocks, another '
        'head). If that is intended, name what may be left out: allow_missing=(PREFIX, ...) '
        'and allow_unexpected=(PREFIX, ...) (for a backbone init_cfg: strict=False).'
    )


def read_weights(
    checkpoint: Union[str, os.PathLike, Mapping], map_location: Any, source: Optional[str]
) -> Tuple[Mapping, str]:
    """A checkpoint read safely with finite weights (a file or URL) or checked (one already
    read), and its name for messages."""
    if isinstance(checkpoint, (str, os.PathLike)):
        path = os.fspath(checkpoint)
        return read_checkpoint(path, map_location), source or path
    source = source or 'checkpoint'
    check_finite_checkpoint(checkpoint, source)
    return checkpoint, source


def adapt_sgformer_parts(model: nn.Module, state_dict: StateDict) -> None:
    """Converts and resizes, in ``state_dict``, the weights of every part of ``model`` with a
    ``pos_embed`` parameter (an SGFormer) as :func:`load_state_dict_pre_hook` does on load, so
    that a check sees the keys and shapes that will be loaded."""
    for name, module in model.named_modules():
        if isinstance(getattr(module, 'pos_embed', None), nn.Parameter):
            load_state_dict_pre_hook(module, state_dict, f'{name}.' if name else '')


def load_weights(
    model: nn.Module,
    checkpoint: Union[str, os.PathLike, Mapping],
    *,
    prefix: str = '',
    allow_missing: Sequence[str] = (),
    allow_unexpected: Sequence[str] = (),
    map_location: Any = 'cpu',
    source: Optional[str] = None,
) -> dict:
    """Puts a checkpoint's weights into ``model``: every tensor, or a clear error.

    The file is read once, safely, and refused when its weights hold NaN/Inf
    (:func:`~mmsgformer.utils.safe_loading.read_checkpoint`); SG-Former weights in the official
    layout are converted and their position embedding resized (:func:`adapt_sgformer_parts`).
    Then every tensor of the model must be in the checkpoint with its shape, and every tensor of
    the checkpoint must be the model's, except those the caller names.

    Args:
        model: The model (or the part of one) to load into.
        checkpoint: Checkpoint path or ``http(s)://`` URL, or a checkpoint already read (a state
            dict or a dict holding one).
        prefix: Load only the checkpoint's tensors under this prefix, stripped (e.g.
            ``'backbone.'`` for the backbone of a whole-model checkpoint); the others are not
            looked at.
        allow_missing: Key prefixes of model tensors that may be absent from the checkpoint
            (they keep their initialisation, with a warning); ``('',)`` allows any.
        allow_unexpected: Key prefixes of checkpoint tensors that may be left unused (e.g.
            :data:`CLASSIFIER_HEAD`); ``('',)`` allows any.
        map_location: Passed to ``torch.load``.
        source: The checkpoint in messages (default: the path, or ``'checkpoint'``).

    Returns:
        The checkpoint's ``meta`` (e.g. ``dataset_meta``), ``{}`` if it has none.

    Raises:
        CheckpointError: The file cannot be read safely, or its weights hold NaN/Inf (see
            :func:`~mmsgformer.utils.safe_loading.read_checkpoint`).
        CheckpointMismatchError: Tensors missing, unexpected (and not allowed) or of another
            shape, or none found at all; nothing is loaded then.
    """
    raw, source = read_weights(checkpoint, map_location, source)
    state = extract_state_dict(raw, source)
    part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    adapt_sgformer_parts(model, part)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(part))
    unexpected = sorted(set(part) - set(expected))
    mis_shaped = sorted(k for k in set(part) & set(expected) if part[k].shape != expected[k].shape)
    refused_missing = [k for k in missing if not k.startswith(tuple(allow_missing))]
    refused_unexpected = [k for k in unexpected if not k.startswith(tuple(allow_unexpected))]
    found = len(expected) - len(missing) - len(mis_shaped)
    if refused_missing or refused_unexpected or mis_shaped or not found:
        where = f' under {prefix!r}' if prefix else ''
        shapes = [
            f'{k}: checkpoint {tuple(part[k].shape)}, model {tuple(expected[k].shape)}'
            for k in mis_shaped
        ]
        raise CheckpointMismatchError(
            f'checkpoint {source!r}{where} does not fit this {type(model).__name__} '
            f'({found} of its {len(expected)} tensors found):\n'
            f'  missing ({len(refused_missing)}): {name_list(refused_missing)}\n'
            f'  unexpected ({len(refused_unexpected)}): {name_list(refused_unexpected)}\n'
            f'  of another shape ({len(shapes)}): {name_list(shapes)}\n'
            f'Likely cause: {likely_cause(expected, part, found, mis_shaped)}'
        )
    model.load_state_dict({k: v for k, v in part.items() if k in expected}, strict=False)
    logger = MMLogger.get_current_instance()
    logger.info(f'{type(model).__name__}: loaded {found} tensors from {source}')
    if missing:
        logger.warning(
            f'{type(model).__name__}: {len(missing)} tensors not in the checkpoint keep their '
            f'initialisation: {name_list(missing)}'
        )
    if unexpected:
        logger.info(f'{len(unexpected)} tensors of {source} not used: {name_list(unexpected)}')
    outside = [k for k in state if not k.startswith(prefix)]
    if outside:
        logger.info(f'{source} also holds tensors outside {prefix!r}: {name_list(outside)}')
    return (raw.get('meta') or {}) if isinstance(raw, Mapping) else {}


def load_pretrained(
    model: nn.Module,
    checkpoint: Union[str, Mapping],
    prefix: Optional[str] = None,
    strict: bool = True,
    map_location: Any = 'cpu',
    source: Optional[str] = None,
) -> dict:
    """Loads an SGFormer backbone from any supported checkpoint: :func:`load_weights` with
    ``init_cfg=dict(type='Pretrained')``'s choices.

    Accepted: official SG-Former releases (timm checkpoints with ``state_dict`` and possibly
    ``state_dict_ema``/``args``/``optimizer``, or plain state dicts, ``module.`` prefixes
    allowed; their classifier ``head.*`` is left out), files of
    ``tools/model_converters/sgformer2mm.py``, and MMEngine checkpoints of our classifiers,
    detectors and segmentors (their ``backbone.*`` keys).

    Args:
        model: The SGFormer backbone.
        checkpoint: Checkpoint path, an ``http(s)://`` URL (downloaded once into torch's hub
            cache, see :func:`mmsgformer.utils.safe_loading.download_checkpoint`), or a checkpoint
            already read (a state dict or a dict holding one), which is then not read again.
        prefix: Take only keys under this prefix (stripped). Default: ``backbone.`` when present.
        strict: Refuse missing or unexpected backbone keys (default). ``False`` allows any
            (:func:`load_weights` with ``allow_missing=('',)``, ``allow_unexpected=('',)``).
            Shape mismatches are always refused.
        map_location: Passed to ``torch.load``.
        source: Name of an already-read checkpoint in messages (default: ``'checkpoint'``).

    Returns:
        The checkpoint's ``meta``, ``{}`` if it has none.

    Raises:
        FileNotFoundError, CheckpointError, CheckpointMismatchError: See :func:`load_weights`.
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        source = os.fspath(checkpoint)
        checkpoint = load_checkpoint_file(source, map_location)
    source = source or 'checkpoint'
    if prefix is None:
        keys = extract_state_dict(checkpoint, source)
        prefix = 'backbone.' if any(k.startswith('backbone.') for k in keys) else ''
    return load_weights(
        model,
        checkpoint,
        prefix=prefix,
        allow_missing=() if strict else ('',),
        allow_unexpected=CLASSIFIER_HEAD if strict else ('',),
        source=source,
    )
