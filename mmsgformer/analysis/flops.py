"""Parameters and MACs of a config's model or of named backbones (``get_flops.py``)."""

from __future__ import annotations

import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .baselines import build_backbone, build_from_config, whole_model_fns
from .complexity import count_macs

PAPER_GMACS = dict(
    sgformer_s=4.8,
    sgformer_m=7.5,
    sgformer_b=15.6,
    swin_t=4.5,
    swin_s=8.7,
    swin_b=15.4,
    pvtv2_b2=4.0,
    pvtv2_b3=6.9,
    pvtv2_b5=11.8,
)
"""The published 224x224 GMACs of the named backbones."""
PARTS = ('whole', 'features', 'backbone')


def config_macs(
    cfg,
    config_name: str,
    shape: Tuple[int, int],
    part: str = 'whole',
    count_recompute: bool = False,
) -> dict:
    """MACs and parameters of (a part of) a config's model at one input size.

    Args:
        cfg: The config (:func:`mmsgformer.utils.config.load_config`).
        config_name: Name shown for the model (e.g. the config file name).
        shape: Input ``(H, W)``.
        part: ``'whole'`` (the forward without post-processing, ``mode='tensor'``),
            ``'features'`` (``extract_feat``) or ``'backbone'``.
        count_recompute: See :func:`~mmsgformer.analysis.count_macs`.

    Returns:
        :func:`~mmsgformer.analysis.count_macs`'s result with ``name``, ``task``, ``part``,
        ``shape``, ``backbone_params`` and ``backbone_type``.
    """
    if part not in PARTS:
        raise ValueError(f'part must be one of {PARTS}, got {part!r}')
    model, task = build_from_config(cfg)
    h, w = shape
    x = torch.randn(1, 3, h, w)
    if part == 'backbone':
        target, fn = model.backbone, model.backbone
    elif part == 'features':
        target, fn = model, model.extract_feat
    else:
        infer, _ = whole_model_fns(model, task, 1, (h, w))
        target, fn = model, infer
    result = count_macs(target, (x,), fn=fn, count_recompute=count_recompute)
    result.update(
        name=config_name,
        task=task,
        part=part,
        shape=[h, w],
        backbone_params=sum(p.numel() for p in model.backbone.parameters()),
        backbone_type=type(model.backbone).__name__,
    )
    return result


def backbone_macs(
    names: Sequence[str],
    shape: Tuple[int, int],
    custom: Optional[Dict[str, dict]] = None,
    count_recompute: bool = False,
) -> List[dict]:
    """MACs and parameters of named backbones (:func:`~mmsgformer.analysis.build_backbone`)."""
    h, w = shape
    results = []
    for name in names:
        model = build_backbone(name, custom)
        model.eval()  # mmdet Swin's train() returns None: no chaining
        result = count_macs(model, (torch.randn(1, 3, h, w),), count_recompute=count_recompute)
        result.update(name=name, task='backbone', part='backbone', shape=[h, w])
        results.append(result)
    return results


def format_table(
    results: Sequence[dict], count_recompute: bool = False, by_operator: bool = False
) -> str:
    """The results as a text table (with the published figure where there is one)."""
    header = ['model', 'part', 'input', 'params', 'GMACs', 'paper', 'not counted', 'sig. recompute']
    rows = []
    for r in results:
        paper = PAPER_GMACS.get(r['name']) if tuple(r['shape']) == (224, 224) else None
        recompute = (
            'in total'
            if count_recompute
            else f'{r["recompute_macs"] / 1e9:.3f}G'
            if r['recompute_macs']
            else '-'
        )
        rows.append(
            [
                r['name'],
                r['part'],
                f'{r["shape"][0]}x{r["shape"][1]}',
                f'{r["params"] / 1e6:.3f}M',
                f'{r["macs"] / 1e9:.3f}',
                f'{paper:.1f}' if paper else '-',
                ', '.join(f'{k}x{v}' for k, v in sorted(r['not_counted'].items())) or '-',
                recompute,
            ]
        )
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = '  '.join('{:<%d}' % wd for wd in widths)
    lines = [line.format(*header), '  '.join('-' * wd for wd in widths)]
    lines += [line.format(*row) for row in rows]
    lines.append(
        'GMACs: multiply-accumulates (what the papers call FLOPs), batch 1. "paper": '
        'the published 224x224 figure. "not counted": ops with no FLOP handler (not '
        'costless by convention). "sig. recompute": SG-Former\'s q@k^T recomputed for '
        'the significance statistic, excluded from GMACs (the network needs no extra '
        'MACs for it).'
    )
    if by_operator:
        for r in results:
            lines.append(f'\n{r["name"]} by operator (GMACs):')
            lines += [
                f'  {op:<32} {n / 1e9:10.4f}'
                for op, n in sorted(r['by_operator'].items(), key=lambda kv: -kv[1])
            ]
    return '\n'.join(lines)


def config_name(path: str) -> str:
    """The model name of a config file: its file name without extension."""
    return osp.splitext(osp.basename(path))[0]
