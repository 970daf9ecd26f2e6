#!/usr/bin/env python
"""Train any mmsgformer config: detection (mmdet), segmentation (mmseg) or classification
(mmpretrain). The config's ``default_scope`` selects the task; its ``custom_imports`` loads
mmsgformer.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] \
        [--auto-scale-lr] [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]

Multi-process: ``bash tools/dist_train.sh CONFIG NUM_PROCS`` (torchrun) or
``tools/slurm_train.sh``. Without CUDA the distributed path uses gloo automatically (see
``mmsgformer/engine/dist.py``). The work is done by :mod:`mmsgformer.apis.runner`.
"""
import argparse

from mmsgformer.apis import runner as api


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train an mmsgformer model (detection, segmentation or classification, '
                    'by the config\'s default_scope)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from the given checkpoint, or, without a path, from the '
                             'latest complete checkpoint in the work directory')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision (AmpOptimWrapper, dynamic loss scale); '
                             'needs a GPU')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by (total batch size) / '
                             'auto_scale_lr.base_batch_size')
    api.add_runner_arguments(parser)
    return api.parse_runner_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    import torch

    from mmsgformer.engine.reliability import DivergenceError, use_reliability_hooks

    cfg = api.prepare_config(args, ['train_dataloader', 'val_dataloader'])
    if args.amp:
        api.use_amp(cfg, torch.cuda.is_available())
    if args.auto_scale_lr:
        api.enable_auto_scale_lr(cfg)
    # atomic, finite-only checkpoints and the divergence guard, also for configs without them
    use_reliability_hooks(cfg)
    if args.resume is not None:
        api.set_resume(cfg, args.resume)
    runner = api.build_runner(cfg, args.config)
    try:
        runner.train()
    except DivergenceError:  # its message is already logged, as the last lines: no traceback
        raise SystemExit(1)


if __name__ == '__main__':
    main()
