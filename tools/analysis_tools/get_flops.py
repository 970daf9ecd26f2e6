"""Parameters and FLOPs (multiply-accumulates, as in the SG-Former/Swin/PVT papers) of a model.

    python tools/analysis_tools/get_flops.py configs/sgformer_s_in1k.py --shape 224 224
    python tools/analysis_tools/get_flops.py configs/maskrcnn_sgformer_s_coco.py --shape 800 1333
    python tools/analysis_tools/get_flops.py configs/upernet_sgformer_s_ade20k.py --shape 512 512
    python tools/analysis_tools/get_flops.py CONFIG --backbone-only --shape 224 224
    python tools/analysis_tools/get_flops.py --backbone sgformer_s swin_t pvtv2_b2 --shape 224 224

What is counted (``--part``):

* ``whole`` (default): the network's forward without post-processing, ``model(x, samples,
  mode='tensor')``: classifier = backbone + neck + head logits; detector = ``_forward`` (backbone,
  neck, RPN head and proposals, RoI heads on the proposals; the number of proposals is the test
  config's, so the RoI part depends on it); segmentor = backbone + decode head (no auxiliary
  head, no resizing to the input).
* ``features``: ``model.extract_feat(x)`` (backbone + neck where there is one).
* ``backbone`` (``--backbone-only``): ``model.backbone(x)``.

Counting: MMEngine's ``FlopAnalyzer`` (what ``get_model_complexity_info`` uses) with handlers for
``F.scaled_dot_product_attention`` and broadcasting ``torch.matmul`` added, and SG-Former's
significance recomputation excluded (shown separately); see :mod:`mmsgformer.analysis.complexity`.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

from mmsgformer.analysis.baselines import (build_backbone, build_from_config, load_config,
                                           parse_custom, whole_model_fns)
from mmsgformer.analysis.complexity import count_macs

PAPER_GMACS = dict(sgformer_s=4.8, sgformer_m=7.5, sgformer_b=15.6, swin_t=4.5, swin_s=8.7,
                   swin_b=15.4, pvtv2_b2=4.0, pvtv2_b3=6.9, pvtv2_b5=11.8)


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Params and FLOPs (MACs) of a model')
    parser.add_argument('config', nargs='?', help='OpenMMLab config (classifier, detector, '
                        'segmentor)')
    parser.add_argument('--backbone', nargs='+', metavar='NAME',
                        help='named backbones instead of a config (sgformer_s/m/b, swin_t/s/b, '
                             'pvtv2_b2/b3/b5, or --custom names)')
    parser.add_argument('--custom', nargs='*', metavar='NAME=JSON',
                        help='extra SG-Former archs, e.g. tiny=\'{"embed_dims": [...], ...}\'')
    parser.add_argument('--shape', type=int, nargs='+', default=[224, 224],
                        help='input H W (one value: square)')
    parser.add_argument('--part', choices=['whole', 'features', 'backbone'], default='whole',
                        help='what of a config model to count (see the module docstring)')
    parser.add_argument('--backbone-only', action='store_true', help='same as --part backbone')
    parser.add_argument('--count-recompute', action='store_true',
                        help="include SG-Former's significance recomputation in the total")
    parser.add_argument('--by-operator', action='store_true', help='print MACs per operator')
    parser.add_argument('--out', help='write the results as JSON')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings (key=value)')
    args = parser.parse_args(argv)
    if len(args.shape) == 1:
        args.shape = args.shape * 2
    if len(args.shape) != 2:
        parser.error('--shape takes H W or one size')
    if args.backbone_only:
        args.part = 'backbone'
    if bool(args.config) == bool(args.backbone):
        parser.error('give a config or --backbone NAMES (one of them)')
    return args


def _fmt(n: float, unit: str = 'G') -> str:
    return f'{n / {"G": 1e9, "M": 1e6}[unit]:.3f}{unit}'


def analyse_config(args):
    cfg = load_config(args.config, args.cfg_options)
    model, task = build_from_config(cfg)
    h, w = args.shape
    x = torch.randn(1, 3, h, w)
    if args.part == 'backbone':
        target, fn = model.backbone, model.backbone
    elif args.part == 'features':
        target, fn = model, model.extract_feat
    else:
        infer, _ = whole_model_fns(model, task, 1, (h, w))
        target, fn = model, infer
    result = count_macs(target, (x,), fn=fn, count_recompute=args.count_recompute)
    name = os.path.splitext(os.path.basename(args.config))[0]
    result.update(name=name, task=task, part=args.part, shape=[h, w],
                  backbone_params=sum(p.numel() for p in model.backbone.parameters()),
                  backbone_type=type(model.backbone).__name__)
    return [result]


def analyse_backbones(args):
    custom = parse_custom(args.custom)
    h, w = args.shape
    results = []
    for name in args.backbone:
        model = build_backbone(name, custom)
        model.eval()  # mmdet Swin's train() returns None: no chaining
        result = count_macs(model, (torch.randn(1, 3, h, w),),
                            count_recompute=args.count_recompute)
        result.update(name=name, task='backbone', part='backbone', shape=[h, w])
        results.append(result)
    return results


def print_table(results, args) -> None:
    header = ['model', 'part', 'input', 'params', 'GMACs', 'paper', 'not counted',
              'sig. recompute']
    rows = []
    for r in results:
        paper = PAPER_GMACS.get(r['name']) if tuple(r['shape']) == (224, 224) else None
        recompute = ('in total' if args.count_recompute else
                     f'{r["recompute_macs"] / 1e9:.3f}G' if r['recompute_macs'] else '-')
        rows.append([r['name'], r['part'], f'{r["shape"][0]}x{r["shape"][1]}',
                     _fmt(r['params'], 'M'), f'{r["macs"] / 1e9:.3f}',
                     f'{paper:.1f}' if paper else '-',
                     ', '.join(f'{k}x{v}' for k, v in sorted(r['not_counted'].items())) or '-',
                     recompute])
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = '  '.join('{:<%d}' % wd for wd in widths)
    print(line.format(*header))
    print('  '.join('-' * wd for wd in widths))
    for row in rows:
        print(line.format(*row))
    print('GMACs: multiply-accumulates (what the papers call FLOPs), batch 1. "paper": the '
          'published 224x224 figure. "not counted": ops with no FLOP handler (not costless by '
          "convention). \"sig. recompute\": SG-Former's q@k^T recomputed for the significance "
          'statistic, excluded from GMACs (the network needs no extra MACs for it).')
    if args.by_operator:
        for r in results:
            print(f'\n{r["name"]} by operator (GMACs):')
            for op, n in sorted(r['by_operator'].items(), key=lambda kv: -kv[1]):
                print(f'  {op:<32} {n / 1e9:10.4f}')


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    results = analyse_config(args) if args.config else analyse_backbones(args)
    print_table(results, args)
    print(f'(counted in {time.time() - start:.1f} s)')
    if args.out:
        for r in results:
            r['by_operator'] = dict(r['by_operator'])
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=2)


if __name__ == '__main__':
    main()
