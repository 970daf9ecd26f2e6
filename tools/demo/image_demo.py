#!/usr/bin/env python
"""Run a trained detector on images and save one picture: ground truth beside prediction.

    python tools/demo/image_demo.py IMAGES CONFIG CHECKPOINT [--num-images 6] \
        [--out-file OUT.png] [--score-thr 0.3] [--device cpu] [--cfg-options k=v ...]

IMAGES is an image file, a folder or a quoted glob; the first ``--num-images`` (sorted) are
drawn. Ground truth is shown for images of the config's test dataset. The drawing is
:func:`mmsgformer.visualization.predictions.draw_prediction_grid`. CHECKPOINT may be a ``.onnx``
file exported from CONFIG (``tools/deployment/export_onnx.py``), run by ONNX Runtime.
"""

import argparse
import os.path as osp

from mmengine.config import DictAction


def parse_args(argv=None):
    # Its own parser on purpose, as mmdet's tools have: each tool lists all it takes.
    parser = argparse.ArgumentParser(description='Detector demo: ground truth beside prediction')
    parser.add_argument('images', help='image file, folder of images, or glob (quote it)')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        'checkpoint',
        help='checkpoint file, or a .onnx file exported from the config (run by ONNX Runtime)',
    )
    parser.add_argument(
        '--num-images', type=int, default=6, help='draw at most this many images (default 6)'
    )
    parser.add_argument(
        '--out-file', default='demo_prediction.png', help='where to save the picture'
    )
    parser.add_argument(
        '--score-thr', type=float, default=0.3, help='draw predictions with at least this score'
    )
    parser.add_argument(
        '--device',
        default=None,
        help='e.g. cpu or cuda:0 (default: cuda:0 if available; a .onnx runs on the CPU)',
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs',
    )
    args = parser.parse_args(argv)
    if args.num_images < 1:
        parser.error('--num-images must be at least 1')
    return args


def main(argv=None):
    args = parse_args(argv)
    from mmsgformer.apis import expand_images, init_model
    from mmsgformer.deployment import ExportError, init_onnx_model
    from mmsgformer.utils.config import ConfigError
    from mmsgformer.utils.safe_loading import CheckpointError
    from mmsgformer.visualization.predictions import (
        class_names,
        draw_prediction_grid,
        predict_images,
        test_dataset_ground_truth,
    )

    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'error: checkpoint not found: {args.checkpoint}')
    try:
        if args.checkpoint.endswith('.onnx'):
            model = init_onnx_model(args.checkpoint, args.config, args.cfg_options)
        else:
            model = init_model(args.config, args.checkpoint, args.device, args.cfg_options)
    except (ConfigError, CheckpointError, ExportError) as err:  # a config that cannot be read;
        # unreadable, unsafe or NaN/Inf weights
        raise SystemExit(f'error: {err}')
    cfg = model.cfg
    images = expand_images(args.images)[: args.num_images]
    results = predict_images(model, images, args.score_thr)
    test_dataset_ground_truth(cfg, results)
    classes = class_names(model, cfg)
    draw_prediction_grid(
        results,
        classes,
        args.out_file,
        args.score_thr,
        title=f'{osp.basename(args.config)}: ground truth | prediction',
    )
    for result in results:
        pred = result.predictions
        print(f'{osp.basename(result.path)}: {len(pred)} objects with score >= {args.score_thr}:')
        for label, score, box in zip(pred.labels, pred.scores, pred.boxes):
            x0, y0, x1, y1 = (round(float(v), 1) for v in box)
            print(f'  {classes[int(label)]:<10s} {float(score):.2f}  box=({x0}, {y0}, {x1}, {y1})')
    print(f'saved {args.out_file}')


if __name__ == '__main__':
    main()
