#!/usr/bin/env python
"""Generate ``ade_shapes``, a deterministic semantic segmentation dataset laid out as ADE20K.

    python tools/dataset_generators/generate_ade_shapes.py --out-dir data/ade_shapes \\
        --num-train 400 --num-val 100 --img-size 64 --seed 0

See :func:`mmsgformer.synthetic_data.generate_ade_shapes` for the contents, label convention
and layout.
"""

import argparse

from mmsgformer.synthetic_data import ADE_SHAPES_CLASSES, generate_ade_shapes


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Generate the ade_shapes demo dataset in ADE20K folder layout'
    )
    parser.add_argument(
        '--out-dir', default='data/ade_shapes', help='dataset root (gets images/ and annotations/)'
    )
    parser.add_argument('--num-train', type=int, default=400)
    parser.add_argument('--num-val', type=int, default=100)
    parser.add_argument(
        '--img-size', type=int, default=64, help='side of the square images in pixels (>= 32)'
    )
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--force', action='store_true', help='regenerate even if the dataset already looks complete'
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        n = generate_ade_shapes(
            args.out_dir, args.num_train, args.num_val, args.img_size, args.seed, args.force
        )
    except ValueError as exc:
        raise SystemExit(f'error: {exc}')
    if n == 0:
        print(f'{args.out_dir}: already complete, nothing to do (use --force to regenerate)')
    else:
        print(
            f'wrote {n} images + label maps to {args.out_dir} (classes: '
            f'{", ".join(ADE_SHAPES_CLASSES)}; PNG value = train id + 1, 0 = ignored)'
        )


if __name__ == '__main__':
    main()
