#!/usr/bin/env python
"""Convert an official SG-Former release into a checkpoint for mmsgformer.

    python tools/model_converters/sgformer2mm.py sgformer_s.pth \
        checkpoints/sgformer_s_in1k_converted.pth

The output holds ``backbone.*`` and ``head.fc.*``, the keys of
``configs/sgformer_{s,m,b}_in1k.py``'s ImageClassifier (the detection and segmentation configs
take its ``backbone.*``); see
:func:`mmsgformer.models.official_keys.convert_official_checkpoint`.
"""

import argparse
import sys

from mmsgformer.models.official_keys import convert_official_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        'src', help='official SG-Former checkpoint (timm training file or state dict)'
    )
    parser.add_argument('dst', help='output path')
    parser.add_argument(
        '--ema', action='store_true', help='convert state_dict_ema instead of state_dict'
    )
    args = parser.parse_args()
    try:
        meta = convert_official_checkpoint(args.src, args.dst, args.ema)
    except (FileNotFoundError, KeyError, ValueError, RuntimeError) as err:
        sys.exit(f'error: {err}')
    print(f'wrote {args.dst}: {meta}')


if __name__ == '__main__':
    main()
