#!/usr/bin/env python
"""Train any mmsgformer config: detection (mmdet), segmentation (mmseg) or classification
(mmpretrain). The config's ``default_scope`` selects the task; its ``custom_imports`` loads
mmsgformer.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] \
        [--auto-scale-lr] [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]

Multi-process: ``bash tools/dist_train.sh CONFIG NUM_PROCS`` (torchrun) or
``tools/slurm_train.sh``. Without CUDA the distributed path uses gloo automatically (see
``mmsgformer/engine/dist.py``).
"""
import argparse
import os
import os.path as osp
import sys

# Use the mmsgformer next to this script even when the package is not installed.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import DictAction  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train an mmsgformer model (detection, segmentation or '
        'classification, by the config\'s default_scope)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='directory for logs and checkpoints')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the given checkpoint, or, without a path, from the '
        'latest checkpoint in the work directory')
    parser.add_argument(
        '--amp', action='store_true',
        help='automatic mixed precision (AmpOptimWrapper, dynamic loss scale); '
        'needs a GPU')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the learning rate by (total batch size) / '
        'auto_scale_lr.base_batch_size')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value pairs (e.g. '
        'train_cfg.max_epochs=2 model.backbone.init_cfg=None)')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (torch>=2) or --local_rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None):
    args = parse_args(argv)

    import torch

    from mmsgformer.engine import setup_distributed
    from mmsgformer.engine.preflight import ConfigPathError, check_dataset_paths
    from mmsgformer.engine.reliability import (find_resume_checkpoint,
                                               use_atomic_checkpoints)
    from mmsgformer.engine.tools_utils import build_runner, load_config
    from mmsgformer.utils import register_safe_globals

    # torch>=2.6 loads checkpoints with weights_only=True: allow-list the few types
    # MMEngine checkpoints pickle, so --resume and load_from work.
    register_safe_globals()

    cfg = load_config(args.config, args.launcher, args.cfg_options,
                      args.work_dir)

    if args.amp:
        if not torch.cuda.is_available():
            raise SystemExit('--amp needs a GPU (MMEngine\'s AmpOptimWrapper '
                             'does not run on the CPU).')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'

    if args.auto_scale_lr:
        auto = cfg.get('auto_scale_lr')
        if not auto or 'base_batch_size' not in auto:
            raise RuntimeError('--auto-scale-lr needs auto_scale_lr = dict('
                               'enable=False, base_batch_size=N) in the config')
        cfg.auto_scale_lr.enable = True

    # Crash-safe checkpoints (temp file + rename) that also carry the random state
    use_atomic_checkpoints(cfg)

    # Missing data: one message naming the path and the config key, before anything is built
    loaders = ['train_dataloader']
    if cfg.get('val_cfg') and cfg.get('val_dataloader'):
        loaders.append('val_dataloader')
    try:
        check_dataset_paths(cfg, loaders)
    except ConfigPathError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)

    if args.resume == 'auto':
        # the last *complete* checkpoint (last_checkpoint, else the newest readable one)
        cfg.resume = True
        cfg.load_from = find_resume_checkpoint(cfg.work_dir)
        if cfg.load_from is None:
            print(f'--resume: no checkpoint in {cfg.work_dir}; training from scratch.',
                  file=sys.stderr)
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    # CPU-only machines: gloo process group + a DDP wrapper without device_ids
    setup_distributed(cfg, args.launcher)

    runner = build_runner(cfg, args.config)
    runner.train()


if __name__ == '__main__':
    main()
