#!/usr/bin/env python
"""Convert an official SG-Former release into a checkpoint for mmsgformer.

    python tools/model_converters/sgformer2mm.py sgformer_s.pth checkpoints/sgformer_s_in1k_converted.pth

The output holds ``backbone.*`` (our fused layout) and ``head.fc.*`` (the 1000-class linear
head), the keys of ``configs/sgformer_{s,m,b}_in1k.py``'s ImageClassifier; the detection and
segmentation configs start from the same file (their backbone takes the ``backbone.*`` keys).
It contains tensors and plain metadata only, so it loads with ``torch.load(weights_only=True)``.
"""
import argparse
import os
import os.path as osp
import sys

import torch

from mmsgformer.models.checkpoint import convert_official_state_dict, is_official_layout
from mmsgformer.utils.checkpoint import extract_state_dict, load_checkpoint_file


def describe_arch(backbone: dict) -> dict:
    """Embedding dims and depths read off a converted backbone state dict."""
    dims, depths = [], []
    for i in range(4):
        dims.append(backbone[f'stages.{i}.norm.weight'].shape[0])
        blocks = {k.split('.')[3] for k in backbone if k.startswith(f'stages.{i}.blocks.')}
        depths.append(len(blocks))
    return dict(embed_dims=dims, depths=depths)


def convert(src: str, dst: str, use_ema: bool = False) -> dict:
    """Converts ``src`` and writes ``dst``; returns the metadata written."""
    checkpoint = load_checkpoint_file(src)
    if use_ema:
        if not isinstance(checkpoint, dict) or 'state_dict_ema' not in checkpoint:
            raise KeyError(f'{src} has no state_dict_ema; run without --ema')
        checkpoint = checkpoint['state_dict_ema']
    state_dict = extract_state_dict(checkpoint, src)
    if not is_official_layout(state_dict):
        raise ValueError(f'{src} is not an official SG-Former checkpoint (no patch_embed1.* / '
                         f'block1.* keys; found e.g. {sorted(state_dict)[:5]})')
    backbone, others = convert_official_state_dict(state_dict)
    head = {k: v for k, v in others.items() if k.startswith('head.')}
    unknown = sorted(set(others) - set(head))
    if unknown:
        raise ValueError(f'{src} holds keys that are neither backbone nor head: {unknown[:10]}')
    out = {f'backbone.{k}': v for k, v in backbone.items()}
    out.update({f'head.fc.{k[len("head."):]}': v for k, v in head.items()})
    meta = dict(source=osp.basename(src), converted_by='mmsgformer/tools/model_converters/sgformer2mm.py',
                ema=use_ema, **describe_arch(backbone))
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    tmp = dst + '.tmp'
    torch.save(dict(state_dict=out, meta=meta), tmp)
    os.replace(tmp, dst)
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='official SG-Former checkpoint (timm training file or state dict)')
    parser.add_argument('dst', help='output path')
    parser.add_argument('--ema', action='store_true', help='convert state_dict_ema instead of state_dict')
    args = parser.parse_args()
    try:
        meta = convert(args.src, args.dst, args.ema)
    except (FileNotFoundError, KeyError, ValueError, RuntimeError) as err:
        sys.exit(f'error: {err}')
    print(f'wrote {args.dst}: {meta}')


if __name__ == '__main__':
    main()
