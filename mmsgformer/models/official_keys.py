"""The official SG-Former checkpoint layout and ours.

The official release stores separate projections (``attn.q1``, ``attn.q2``, ``attn.kv2``,
``attn.lepe_linear``, ...) that our attention modules fuse into one ``in_proj``;
:func:`convert_official_state_dict` maps one layout onto the other exactly, and
:func:`convert_official_checkpoint` writes an official release as a checkpoint of our classifier
configs (``tools/model_converters/sgformer2mm.py``).
"""

from __future__ import annotations

import os
import os.path as osp
import re
from typing import Dict, Iterable, Tuple

import torch

from ..utils.safe_loading import extract_state_dict, load_checkpoint_file

StateDict = Dict[str, torch.Tensor]

_RENAMES = [
    (
        r'^patch_embed1\.conv\.(\d)\.c\.',
        lambda m: f'stages.0.downsample.conv{int(m[1]) // 2 + 1}.conv.',
    ),
    (
        r'^patch_embed1\.conv\.(\d)\.bn\.',
        lambda m: f'stages.0.downsample.conv{int(m[1]) // 2 + 1}.norm.',
    ),
    (r'^patch_embed1\.norm\.', lambda m: 'stages.0.downsample.norm.'),
    (
        r'^patch_embed(\d)\.conv(\d)\.c\.',
        lambda m: f'stages.{int(m[1]) - 1}.downsample.conv{m[2]}.conv.',
    ),
    (
        r'^patch_embed(\d)\.conv(\d)\.bn\.',
        lambda m: f'stages.{int(m[1]) - 1}.downsample.conv{m[2]}.norm.',
    ),
    (r'^norm(\d)\.', lambda m: f'stages.{int(m[1]) - 1}.norm.'),
    (
        r'^block(\d)\.(\d+)\.mlp\.dwconv\.dwconv\.',
        lambda m: f'stages.{int(m[1]) - 1}.blocks.{m[2]}.mlp.dwconv.',
    ),
    (
        r'^block(\d)\.(\d+)\.(norm1|norm2|mlp\.fc1|mlp\.fc2)\.',
        lambda m: f'stages.{int(m[1]) - 1}.blocks.{m[2]}.{m[3]}.',
    ),
    (r'^block(\d)\.(\d+)\.attn\.sr\.', lambda m: f'stages.{int(m[1]) - 1}.blocks.{m[2]}.attn.sr.'),
    (
        r'^block(\d)\.(\d+)\.attn\.norm\.',
        lambda m: f'stages.{int(m[1]) - 1}.blocks.{m[2]}.attn.sr_norm.',
    ),
    (
        r'^block(\d)\.(\d+)\.attn\.lepe_conv\.',
        lambda m: f'stages.{int(m[1]) - 1}.blocks.{m[2]}.attn.lepe.conv.',
    ),
    (
        r'^block(\d)\.(\d+)\.attn\.proj\.',
        lambda m: f'stages.{int(m[1]) - 1}.blocks.{m[2]}.attn.proj.',
    ),
    (
        r'^block(\d)\.(\d+)\.attn\.f(\d)\.',
        lambda m: f'stages.{int(m[1]) - 1}.blocks.{m[2]}.attn.reallocation.merges.{int(m[3]) - 1}.',
    ),
]
_FUSED_ATTN_KEY = re.compile(
    r'^block(\d)\.(\d+)\.attn\.(q|q1|q2|kv|kv1|kv2|lepe_linear)\.(weight|bias)$'
)

OFFICIAL_PREFIXES = ('patch_embed1.', 'block1.', 'norm1.')


def is_official_layout(keys: Iterable[str]) -> bool:
    """Whether state-dict keys are in the official SG-Former layout."""
    return any(k.startswith(OFFICIAL_PREFIXES) for k in keys)


def _fuse_attention(name: str, parts: Dict[str, torch.Tensor]) -> StateDict:
    """Fused projections of one official attention (``parts``: e.g. ``{'q1.weight': ...}``)."""

    def get(key: str) -> torch.Tensor:
        if key not in parts:
            raise KeyError(
                f'official checkpoint lacks {name}.{key} (needed with '
                f'{sorted(parts)}); the file is incomplete'
            )
        return parts[key]

    fused = {}
    for kind in ('weight', 'bias'):
        if f'q1.{kind}' in parts:  # hybrid-scale: global kv stays separate
            fused[f'in_proj.{kind}'] = torch.cat(
                [
                    get(f'q1.{kind}'),
                    get(f'q2.{kind}'),
                    get(f'kv2.{kind}'),
                    get(f'lepe_linear.{kind}'),
                ]
            )
            fused[f'global_kv.{kind}'] = get(f'kv1.{kind}')
        elif f'kv1.{kind}' in parts:  # significance-guided: k of both halves, then v
            k1, v1 = get(f'kv1.{kind}').chunk(2)
            k2, v2 = get(f'kv2.{kind}').chunk(2)
            fused[f'in_proj.{kind}'] = torch.cat([get(f'q.{kind}'), get(f'lepe_linear.{kind}')])
            fused[f'kv.{kind}'] = torch.cat([k1, k2, v1, v2])
        else:  # global attention
            fused[f'in_proj.{kind}'] = torch.cat(
                [get(f'q.{kind}'), get(f'kv.{kind}'), get(f'lepe_linear.{kind}')]
            )
    return {f'{name}.{k}': v for k, v in fused.items()}


def convert_official_state_dict(state_dict: StateDict) -> Tuple[StateDict, StateDict]:
    """Maps an official SG-Former state dict onto :class:`SGFormer`'s layout.

    Returns:
        The backbone's state dict and the keys that are not the backbone's (e.g. ``head.*``),
        unchanged.
    """
    converted: StateDict = {}
    others: StateDict = {}
    attention_parts: Dict[str, Dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        if key == 'pos_embed':
            converted[key] = value
            continue
        fused = _FUSED_ATTN_KEY.match(key)
        if fused:
            name = f'stages.{int(fused[1]) - 1}.blocks.{fused[2]}.attn'
            attention_parts.setdefault(name, {})[f'{fused[3]}.{fused[4]}'] = value
            continue
        for pattern, replace in _RENAMES:
            match = re.match(pattern, key)
            if match:
                converted[replace(match) + key[match.end() :]] = value
                break
        else:
            others[key] = value
    for name, parts in attention_parts.items():
        converted.update(_fuse_attention(name, parts))
    return converted, others


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
        raise ValueError(
            f'{src} is not an official SG-Former checkpoint (no patch_embed1.* / '
            f'block1.* keys; found e.g. {sorted(state_dict)[:5]})'
        )
    backbone, others = convert_official_state_dict(state_dict)
    head = {k: v for k, v in others.items() if k.startswith('head.')}
    unknown = sorted(set(others) - set(head))
    if unknown:
        raise ValueError(f'{src} holds keys that are neither backbone nor head: {unknown[:10]}')
    out = {f'backbone.{k}': v for k, v in backbone.items()}
    out.update({f'head.fc.{k[len("head.") :]}': v for k, v in head.items()})
    meta = dict(
        source=osp.basename(src),
        converted_by='mmsgformer/tools/model_converters/sgformer2mm.py',
        ema=use_ema,
        **describe_arch(backbone),
    )
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    tmp = dst + '.tmp'
    torch.save(dict(state_dict=out, meta=meta), tmp)
    os.replace(tmp, dst)
    return meta
