#!/usr/bin/env python
"""Test (evaluate) a checkpoint of any mmsgformer config: detection, segmentation or
classification, chosen by the config's ``default_scope``. Prints the evaluator's metrics
(CocoMetric bbox/segm mAP, mmseg IoUMetric per-class table and mIoU, accuracy).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE|DIR] \
        [--show] [--show-dir DIR] [--tta] [--cfg-options k=v ...] [--launcher ...]

``--out``: detection/classification dump the predictions to a ``.pkl`` file;
segmentation writes the predicted label maps (PNG) into the directory ``--out``.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import DictAction  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Test an mmsgformer checkpoint (detection, segmentation or '
        'classification, by the config\'s default_scope)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='directory for logs and metrics')
    parser.add_argument(
        '--out', help='detection/classification: .pkl file for the predictions; '
        'segmentation: directory for the predicted masks')
    parser.add_argument('--show', action='store_true',
                        help='show predictions in a window')
    parser.add_argument('--show-dir',
                        help='save pictures of the predictions here (relative '
                        'paths land in work_dir/<timestamp>/)')
    parser.add_argument('--wait-time', type=float, default=2,
                        help='seconds each shown picture stays')
    parser.add_argument(
        '--tta', action='store_true',
        help='test-time augmentation with the config\'s tta_model/tta_pipeline '
        '(flip TTA for detection/classification configs without them)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value pairs')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def _add_dump(runner, task, out):
    if task == 'seg':
        return  # handled through cfg.test_evaluator.output_dir
    if not out.endswith(('.pkl', '.pickle')):
        raise ValueError('--out must be a .pkl file for this task')
    if task == 'det':
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=out))
    else:
        from mmengine.evaluator import DumpResults
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=out))


def main(argv=None):
    args = parse_args(argv)

    from mmengine.dist import get_rank

    from mmsgformer.engine import setup_distributed
    from mmsgformer.engine.tools_utils import (apply_tta, build_runner,
                                               enable_visualization,
                                               load_config, task_of)
    from mmsgformer.utils import register_safe_globals

    register_safe_globals()

    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')

    cfg = load_config(args.config, args.launcher, args.cfg_options,
                      args.work_dir)
    task = task_of(cfg)
    cfg.load_from = args.checkpoint

    from mmsgformer.engine.preflight import ConfigPathError, check_dataset_paths
    try:
        check_dataset_paths(cfg, ['test_dataloader'])
    except ConfigPathError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)

    if args.show or args.show_dir:
        enable_visualization(cfg, args.show, args.show_dir, args.wait_time)
    if args.tta:
        apply_tta(cfg, task)
    if args.out is not None and task == 'seg':
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True

    setup_distributed(cfg, args.launcher)

    runner = build_runner(cfg, args.config)
    if args.out is not None:
        _add_dump(runner, task, args.out)

    metrics = runner.test()

    if get_rank() == 0:
        print('\n==== test metrics ({}) ===='.format(osp.basename(args.config)))
        if not metrics:
            print('(the evaluator returned no metrics; see the log above, e.g. '
                  'CocoMetric returns none when the model detected nothing)')
        for key, value in (metrics or {}).items():
            if isinstance(value, float):
                print(f'{key}: {value:.4f}')
            else:
                print(f'{key}: {value}')


if __name__ == '__main__':
    main()
