#!/usr/bin/env python
"""Generate ``coco_shapes``, a deterministic COCO-format instance segmentation dataset.

    python tools/dataset_generators/generate_coco_shapes.py data/coco_shapes \\
        --num-train 600 --num-val 120 --seed 0

See :func:`mmsgformer.synthetic_data.generate_coco_shapes` for the contents and layout.
"""

import argparse
import os.path as osp

from mmsgformer.synthetic_data import generate_coco_shapes


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Generate a deterministic COCO-style shapes dataset'
    )
    parser.add_argument('out_dir', help='dataset root to create')
    parser.add_argument('--num-train', type=int, default=600)
    parser.add_argument('--num-val', type=int, default=120)
    parser.add_argument(
        '--img-size',
        type=int,
        nargs=2,
        default=[160, 128],
        metavar=('W', 'H'),
        help='image width and height',
    )
    parser.add_argument('--max-objects', type=int, default=4, help='objects per image, 1..N')
    parser.add_argument('--min-size', type=int, default=20, help='smallest object extent in pixels')
    parser.add_argument('--max-size', type=int, default=56, help='largest object extent in pixels')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        counts = generate_coco_shapes(
            args.out_dir,
            args.num_train,
            args.num_val,
            args.img_size,
            args.max_objects,
            args.min_size,
            args.max_size,
            args.seed,
        )
    except ValueError as exc:
        raise SystemExit(f'error: {exc}')
    for split, (n_img, n_ann) in counts.items():
        print(
            f'{split}: {n_img} images, {n_ann} instances -> '
            f'{osp.join(args.out_dir, "annotations", f"instances_{split}.json")}'
        )


if __name__ == '__main__':
    main()
