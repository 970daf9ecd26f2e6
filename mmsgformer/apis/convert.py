"""Official SG-Former releases to checkpoints of our configs (``sgformer2mm.py``)."""
from __future__ import annotations

import os
import os.path as osp
from typing import Dict

import torch

from mmsgformer.models.checkpoint import convert_official_state_dict, is_official_layout
from mmsgformer.utils.checkpoint import extract_state_dict, load_checkpoint_file


def describe_arch(backbone: Dict[str, torch.Tensor]) -> dict:
    """Embedding dims and depths read off a converted backbone state dict."""
    dims, depths = [], []
    for i in range(4):
        dims.append(backbone[f'stages.{i}.norm.weight'].shape[0])
        blocks = {k.split('.')[3] for k in backbone if k.startswith(f'stages.{i}.blocks.')}
        depths.append(len(blocks))
    return dict(embed_dims=dims, depths=depths)


def convert_official_checkpoint(src: str, dst: str, use_ema: bool = False) -> dict:
    """Converts an official release and writes it (atomically) for our classifier configs.

    The output holds ``backbone.*`` (our fused layout) and ``head.fc.*`` (the 1000-class linear
    head), the keys of ``configs/sgformer_{s,m,b}_in1k.py``'s ImageClassifier; the detection and
    segmentation configs start from the same file (their backbone takes the ``backbone.*``
    keys). It holds tensors and plain metadata only (loads with ``weights_only=True``).

    Args:
        src: Official checkpoint (timm training file or state dict).
        dst: Output path.
        use_ema: Convert ``state_dict_ema`` instead of ``state_dict``.

    Returns:
        The metadata written (source, EMA flag, embedding dims, depths).

    Raises:
        KeyError: ``use_ema`` without ``state_dict_ema`` in the file.
        ValueError: ``src`` is not an official SG-Former checkpoint, or holds other keys.
    """
    checkpoint = load_checkpoint_file(src)
    if use_ema:
        if not isinstance(checkpoint, dict) or 'state_dict_ema' not in checkpoint:
            raise KeyError(f'{src} has no state_dict_ema; run without --ema')
        checkpoint = checkpoint['state_dict_ema']
    state_dict = extract_state_dict(checkpoint, src)
    if not is_official_layout(state_dict):
        raise ValueError(f'{src} is not an official SG-Former checkpoint (no patch_embed1.* / '
                         f'block1.* keys; found e.g. {sorted(state_dict)[:5]})')
    backbone, others = convert_official_state_dict(state_dict)
    head = {k: v for k, v in others.items() if k.startswith('head.')}
    unknown = sorted(set(others) - set(head))
    if unknown:
        raise ValueError(f'{src} holds keys that are neither backbone nor head: {unknown[:10]}')
    out = {f'backbone.{k}': v for k, v in backbone.items()}
    out.update({f'head.fc.{k[len("head."):]}': v for k, v in head.items()})
    meta = dict(source=osp.basename(src),
                converted_by='mmsgformer/tools/model_converters/sgformer2mm.py',
                ema=use_ema, **describe_arch(backbone))
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    tmp = dst + '.tmp'
    torch.save(dict(state_dict=out, meta=meta), tmp)
    os.replace(tmp, dst)
    return meta
