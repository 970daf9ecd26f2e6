#!/usr/bin/env python
"""Test (evaluate) a checkpoint of any mmsgformer config: detection, segmentation or
classification, chosen by the config's ``default_scope``. Prints the evaluator's metrics
(CocoMetric bbox/segm mAP, mmseg IoUMetric per-class table and mIoU, accuracy).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE|DIR] \
        [--show] [--show-dir DIR] [--tta] [--cfg-options k=v ...] [--launcher ...]

``--out``: detection/classification dump the predictions to a ``.pkl`` file;
segmentation writes the predicted label maps (PNG) into the directory ``--out``.
The work is done by :mod:`mmsgformer.apis.runner`.
"""
import argparse
import os.path as osp

from mmsgformer.apis import runner as api


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Test an mmsgformer checkpoint (detection, segmentation or '
                    'classification, by the config\'s default_scope)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='detection/classification: .pkl file for the '
                                      'predictions; segmentation: directory for the predicted '
                                      'masks')
    parser.add_argument('--show', action='store_true', help='show predictions in a window')
    parser.add_argument('--show-dir', help='save pictures of the predictions here (relative '
                                           'paths land in work_dir/<timestamp>/)')
    parser.add_argument('--wait-time', type=float, default=2,
                        help='seconds each shown picture stays')
    parser.add_argument('--tta', action='store_true',
                        help='test-time augmentation with the config\'s tta_model/tta_pipeline '
                             '(flip TTA for detection/classification configs without them)')
    api.add_runner_arguments(parser)
    return api.parse_runner_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    from mmengine.dist import get_rank

    from mmsgformer.apis import task_of
    from mmsgformer.engine.reliability import NonFiniteCheckpointError, check_finite_checkpoint
    from mmsgformer.utils.checkpoint import CheckpointError

    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'error: checkpoint not found: {args.checkpoint}')
    cfg = api.prepare_config(args, ['test_dataloader'])  # config and data errors first
    try:  # unreadable, unsafe or NaN/Inf weights: one clear error instead of empty results
        check_finite_checkpoint(args.checkpoint)
    except (NonFiniteCheckpointError, CheckpointError) as err:
        raise SystemExit(f'error: {err}')
    task = task_of(cfg)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        api.enable_visualization(cfg, args.show, args.show_dir, args.wait_time)
    if args.tta:
        try:
            api.apply_tta(cfg, task)
        except RuntimeError as err:  # a model or config TTA cannot serve
            raise SystemExit(f'error: {err}')
    if args.out is not None:
        api.set_prediction_output(cfg, task, args.out)

    runner = api.build_runner(cfg, args.config)
    if args.out is not None:
        api.add_prediction_dump(runner, task, args.out)
    metrics = runner.test()
    if get_rank() == 0:
        print(api.format_metrics(metrics, osp.basename(args.config)))


if __name__ == '__main__':
    main()
