"""Parameters and FLOPs (multiply-accumulates, as in the SG-Former/Swin/PVT papers) of a model.

    python tools/analysis_tools/get_flops.py \\
        configs/sgformer/sgformer-s_16xb64_in1k.py --shape 224 224
    python tools/analysis_tools/get_flops.py \\
        configs/mask_rcnn/mask-rcnn_sgformer-s_fpn_1x_coco.py --shape 800 1333
    python tools/analysis_tools/get_flops.py \\
        configs/upernet/upernet_sgformer-s_8xb2-160k_ade20k-512x512.py --shape 512 512
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
import time

from mmsgformer.analysis.baselines import parse_custom
from mmsgformer.analysis.flops import PARTS, backbone_macs, config_macs, config_name, format_table
from mmsgformer.utils.config import ConfigError, load_config


def parse_args(argv=None):
    from mmengine.config import DictAction

    # Its own parser on purpose, as mmdet's tools have: each tool lists all it takes.
    parser = argparse.ArgumentParser(description='Params and FLOPs (MACs) of a model')
    parser.add_argument(
        'config', nargs='?', help='OpenMMLab config (classifier, detector, segmentor)'
    )
    parser.add_argument(
        '--backbone',
        nargs='+',
        metavar='NAME',
        help='named backbones instead of a config (sgformer_s/m/b, swin_t/s/b, '
        'pvtv2_b2/b3/b5, or --custom names)',
    )
    parser.add_argument(
        '--custom',
        nargs='*',
        metavar='NAME=JSON',
        help='extra SG-Former archs, e.g. tiny=\'{"embed_dims": [...], ...}\'',
    )
    parser.add_argument(
        '--shape', type=int, nargs='+', default=[224, 224], help='input H W (one value: square)'
    )
    parser.add_argument(
        '--part',
        choices=PARTS,
        default='whole',
        help='what of a config model to count (see the module docstring)',
    )
    parser.add_argument('--backbone-only', action='store_true', help='same as --part backbone')
    parser.add_argument(
        '--count-recompute',
        action='store_true',
        help="include SG-Former's significance recomputation in the total",
    )
    parser.add_argument('--by-operator', action='store_true', help='print MACs per operator')
    parser.add_argument('--out', help='write the results as JSON')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='override config settings (key=value)'
    )
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


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    if args.config:
        try:
            cfg = load_config(args.config, args.cfg_options)
        except (ConfigError, FileNotFoundError) as err:
            raise SystemExit(f'error: {err}')
        results = [
            config_macs(cfg, config_name(args.config), args.shape, args.part, args.count_recompute)
        ]
    else:
        results = backbone_macs(
            args.backbone, args.shape, parse_custom(args.custom), args.count_recompute
        )
    print(format_table(results, args.count_recompute, args.by_operator))
    print(f'(counted in {time.time() - start:.1f} s)')
    if args.out:
        for r in results:
            r['by_operator'] = dict(r['by_operator'])
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=2)


if __name__ == '__main__':
    main()
