#!/usr/bin/env python
"""Export a config's model to one ONNX file with dynamic batch, height and width.

    python tools/deployment/export_onnx.py CONFIG [CHECKPOINT] --out FILE.onnx [--opset N] \
        [--example-size H W] [--cfg-options k=v ...]

Classification, segmentation and detection configs alike; the file's inputs and outputs are in
docs/deployment.md. Test it with ``python tools/test.py CONFIG FILE.onnx``. The work is done by
:func:`mmsgformer.deployment.export_onnx`.
"""

import argparse
import os.path as osp
import time

from mmengine.config import DictAction


def parse_args(argv=None) -> argparse.Namespace:
    from mmsgformer.deployment.export import DEFAULT_OPSET

    # Its own parser on purpose, as mmdet's tools have: each tool lists all it takes.
    parser = argparse.ArgumentParser(description='Export an mmsgformer model to ONNX')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        'checkpoint',
        nargs='?',
        default=None,
        help='whole-model checkpoint of the config (default: random weights)',
    )
    parser.add_argument('--out', required=True, help='the .onnx file to write')
    parser.add_argument(
        '--opset', type=int, default=DEFAULT_OPSET, help=f'ONNX opset (default {DEFAULT_OPSET})'
    )
    parser.add_argument(
        '--example-size',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help='size of the traced example (the file takes any size)',
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs',
    )
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    from mmsgformer.deployment import ExportError, export_onnx
    from mmsgformer.utils.config import ConfigError
    from mmsgformer.utils.safe_loading import CheckpointError

    start = time.perf_counter()
    try:
        out = export_onnx(
            args.config,
            args.checkpoint,
            out=args.out,
            opset=args.opset,
            example_size=tuple(args.example_size) if args.example_size else None,
            cfg_options=args.cfg_options,
        )
    except (ConfigError, ExportError, CheckpointError, FileNotFoundError) as err:
        raise SystemExit(f'error: {err}')
    print(
        f'exported {out} in {time.perf_counter() - start:.1f} s, {osp.getsize(out) / 2**20:.1f} MiB'
    )


if __name__ == '__main__':
    main()
