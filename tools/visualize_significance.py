#!/usr/bin/env python
"""Show where SG-Former puts its tokens: significance maps and token allocation as PNGs.

    python tools/visualize_significance.py IMAGE CONFIG [CHECKPOINT] --out DIR \
        [--device cpu] [--block -1] [--alpha 0.5] [--cfg-options key=value ...]

IMAGE is an image file, a folder (every image in it) or a quoted glob (``'data/*/val/*.png'``).
CONFIG is any of our configs: classifier (mmpretrain), detector (mmdet) or segmentor (mmseg);
only the backbone is run. CHECKPOINT is a checkpoint of that model or of the backbone alone
(official SG-Former release or converted file). Without CHECKPOINT the backbone keeps the
config's backbone ``init_cfg`` when its file exists, otherwise it has random weights and the tool
says so on the console and in every title.

Outputs and the meaning of the colours: :mod:`mmsgformer.visualization.significance` and
``docs/significance.md``.
"""

import argparse

from mmengine.config import DictAction


def parse_args(argv=None) -> argparse.Namespace:
    # Its own parser on purpose, as mmdet's tools have: each tool lists all it takes.
    parser = argparse.ArgumentParser(
        description='Draw SG-Former significance maps and token allocation',
        epilog='Outputs and the meaning of the colours: docs/significance.md.',
    )
    parser.add_argument('image', help='image file, folder of images, or glob (quote it)')
    parser.add_argument('config', help='classifier, detector or segmentor config')
    parser.add_argument(
        'checkpoint',
        nargs='?',
        default=None,
        help='model or backbone checkpoint (default: random weights)',
    )
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument(
        '--device', default=None, help='e.g. cpu or cuda:0 (default: cuda:0 if available)'
    )
    parser.add_argument(
        '--block',
        type=int,
        default=-1,
        help='which hybrid-scale block of each stage to show: index among the '
        "stage's hybrid-scale blocks, Python style (default -1: the last)",
    )
    parser.add_argument(
        '--alpha',
        type=float,
        default=0.5,
        help='opacity of the colours over the image (default 0.5)',
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs',
    )
    args = parser.parse_args(argv)
    if not 0 <= args.alpha <= 1:
        parser.error('--alpha must be in [0, 1]')
    return args


def main(argv=None):
    args = parse_args(argv)
    import matplotlib

    matplotlib.use('Agg')

    from mmsgformer.apis import build_test_transforms, describe_weights, expand_images, init_model
    from mmsgformer.utils.config import ConfigError
    from mmsgformer.utils.safe_loading import CheckpointError
    from mmsgformer.visualization import visualize_significance

    images = expand_images(args.image)
    try:  # (without a checkpoint: random weights, with a warning; only the backbone runs)
        model = init_model(
            args.config, args.checkpoint, args.device, args.cfg_options, backbone_only=True
        )
    except (
        ConfigError,
        CheckpointError,
    ) as err:  # a config that cannot be read; unreadable, unsafe or NaN/Inf weights
        raise SystemExit(f'error: {err}')
    weights = describe_weights(model.cfg, args.checkpoint)
    transforms = build_test_transforms(model.cfg)
    written = visualize_significance(
        model, transforms, images, args.out, weights, args.block, args.alpha
    )
    print('\n'.join(written))
    print(f'{len(images)} image(s), {len(written)} PNG files written under {args.out}')


if __name__ == '__main__':
    main()
