#!/usr/bin/env python
"""Run a trained detector on one image and save a picture with its boxes and masks.

    python tools/demo/image_demo.py IMAGE CONFIG CHECKPOINT \
        [--out-file OUT.png] [--score-thr 0.3] [--device cpu] [--cfg-options k=v ...]
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.config import DictAction  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Detector image demo')
    parser.add_argument('image', help='image file')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out-file', default='demo_prediction.png',
                        help='where to save the picture')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='draw predictions with at least this score')
    parser.add_argument('--device', default=None,
                        help='e.g. cpu or cuda:0 (default: cuda:0 if available)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value pairs')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)

    import mmcv
    import torch
    from mmengine.config import Config

    from mmdet.apis import inference_detector, init_detector
    from mmdet.registry import VISUALIZERS
    from mmsgformer.utils import register_safe_globals

    register_safe_globals()
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
    device = args.device or ('cuda:0' if torch.cuda.is_available() else 'cpu')

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    # the checkpoint holds all weights: do not load the ImageNet backbone weights again
    cfg.model.backbone.init_cfg = None

    model = init_detector(cfg, args.checkpoint, device=device)
    result = inference_detector(model, args.image)

    visualizer = VISUALIZERS.build(model.cfg.visualizer)
    visualizer.dataset_meta = model.dataset_meta
    image = mmcv.imread(args.image, channel_order='rgb')
    out_dir = osp.dirname(osp.abspath(args.out_file))
    os.makedirs(out_dir, exist_ok=True)
    visualizer.add_datasample(
        'prediction', image, data_sample=result, draw_gt=False, show=False,
        pred_score_thr=args.score_thr, out_file=args.out_file)

    pred = result.pred_instances
    keep = pred.scores >= args.score_thr
    classes = model.dataset_meta['classes']
    print(f'{int(keep.sum())} objects with score >= {args.score_thr}:')
    for label, score, box in zip(pred.labels[keep], pred.scores[keep],
                                 pred.bboxes[keep]):
        x0, y0, x1, y1 = (round(float(v), 1) for v in box)
        print(f'  {classes[int(label)]:<10s} {float(score):.2f}  '
              f'box=({x0}, {y0}, {x1}, {y1})')
    print(f'saved {args.out_file}')


if __name__ == '__main__':
    main()
