#!/usr/bin/env python
"""Test (evaluate) a checkpoint of any mmsgformer config: detection, segmentation or
classification, chosen by the config's ``default_scope``. Prints the evaluator's metrics
(CocoMetric bbox/segm mAP, mmseg IoUMetric per-class table and mIoU, accuracy).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE|DIR] \
        [--show] [--show-dir DIR] [--tta] [--cfg-options k=v ...] [--launcher ...]

CHECKPOINT may be a ``.onnx`` file exported from CONFIG (``tools/deployment/export_onnx.py``):
it is then run by ONNX Runtime with the config's dataset and evaluator (no ``--tta``).

``--out``: detection/classification dump the predictions to a ``.pkl`` file;
segmentation writes the predicted label maps (PNG) into the directory ``--out``.
The work is done by :func:`mmsgformer.engine.runner.test`.
"""

import argparse
import os
import os.path as osp
import sys
from dataclasses import fields

from mmengine.config import DictAction


def parse_args(argv=None) -> argparse.Namespace:
    # Apart from tools/train.py's parser on purpose, as in mmdet: each tool lists all it takes.
    # An option's name is that of the TestOptions field it sets (main() passes them by name).
    parser = argparse.ArgumentParser(
        description='Test an mmsgformer checkpoint (detection, segmentation or '
        "classification, by the config's default_scope)"
    )
    parser.add_argument('config', help='test config file path')
    parser.add_argument(
        'checkpoint',
        help='checkpoint file, or a .onnx file exported from the config (run by ONNX Runtime)',
    )
    parser.add_argument(
        '--out',
        help='detection/classification: .pkl file for the '
        'predictions; segmentation: directory for the predicted '
        'masks',
    )
    parser.add_argument('--show', action='store_true', help='show predictions in a window')
    parser.add_argument(
        '--show-dir',
        help='save pictures of the predictions here (relative paths land in work_dir/<timestamp>/)',
    )
    parser.add_argument(
        '--wait-time', type=float, default=2, help='seconds each shown picture stays'
    )
    parser.add_argument(
        '--tta',
        action='store_true',
        help="test-time augmentation with the config's tta_model/tta_pipeline "
        '(flip TTA for detection/classification configs without them)',
    )
    parser.add_argument('--work-dir', help='directory for logs, metrics and checkpoints')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs (e.g. '
        'test_dataloader.dataset.data_root=data/coco/)',
    )
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher',
    )
    # torch.distributed.launch passes --local-rank (torch>=2) or --local_rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    from mmengine.dist import get_rank

    from mmsgformer.deployment import ExportError
    from mmsgformer.engine.preflight import ConfigPathError
    from mmsgformer.engine.runner import RunError, TestOptions, format_metrics, test
    from mmsgformer.utils.config import ConfigError
    from mmsgformer.utils.safe_loading import CheckpointError

    options = TestOptions(**{f.name: getattr(args, f.name) for f in fields(TestOptions)})
    try:
        metrics = test(args.config, args.checkpoint, options)
    except ConfigPathError as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(2)
    except (ConfigError, RunError, CheckpointError, ExportError) as err:
        raise SystemExit(f'error: {err}')
    if get_rank() == 0:
        print(format_metrics(metrics, osp.basename(args.config)))


if __name__ == '__main__':
    main()
