#!/usr/bin/env python
"""Write the reference outputs of the official SG-Former code, or measure float32 rounding.

    git clone https://github.com/OliverRensu/SG-Former /tmp/official
    python tools/model_converters/make_reference.py /tmp/official
    python tools/model_converters/make_reference.py /tmp/official --measure-arch s

The first form runs the official ``sgformer.py`` (imported from OFFICIAL_DIR as it is, never
copied or modified: the script only gives it its ``pos_embed`` module and silences timm's
deprecation warnings) on a small architecture with every block kind and randomly perturbed
weights, in float32 and in float64, and writes ``tests/data/sgformer_reference.pth``: the weights
in the official layout, two 224x224 images and the official per-stage outputs and logits of
both runs. ``tests/test_backbone.py`` checks our model against it. The weights and images depend
only on ``--seed``; the outputs are those of this machine's arithmetic.

With ``--measure-arch`` it writes nothing and prints how far float32 moves a real-size model's
outputs from the official float64 run, for the official code and for ours (the table of README
"Exactly the official network"). See :mod:`mmsgformer.testing.reference`.
"""

import argparse
import os
import os.path as osp

import torch

from mmsgformer.testing.reference import format_rounding, make_reference, measure_rounding


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        'official_dir', help='folder with the official sgformer.py and pos_embed.py'
    )
    parser.add_argument(
        '--out',
        default='tests/data/sgformer_reference.pth',
        help='reference file to write (default: %(default)s)',
    )
    parser.add_argument('--seed', type=int, default=0, help='seed of weights and images')
    parser.add_argument(
        '--measure-arch',
        choices=['s', 'm', 'b'],
        help='measure float32 rounding on this architecture instead',
    )
    parser.add_argument(
        '--num-images',
        type=int,
        default=16,
        help='images of the measurement (default: %(default)s)',
    )
    parser.add_argument(
        '--batch-size',
        type=int,
        default=4,
        help='images per forward pass of the measurement (default: %(default)s)',
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.measure_arch:
        report = measure_rounding(
            args.official_dir, args.measure_arch, args.num_images, args.batch_size, args.seed
        )
        print(format_rounding(report, args.measure_arch, args.num_images))
        return
    reference = make_reference(args.official_dir, args.seed)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    torch.save(reference, args.out)
    print(f'wrote {args.out} ({osp.getsize(args.out) / 2**20:.2f} MiB)')


if __name__ == '__main__':
    main()
