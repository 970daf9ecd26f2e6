#!/usr/bin/env python
"""Train any mmsgformer config: detection (mmdet), segmentation (mmseg) or classification
(mmpretrain). The config's ``default_scope`` selects the task; its ``custom_imports`` loads
mmsgformer.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] \
        [--auto-scale-lr] [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]

Multi-process: ``bash tools/dist_train.sh CONFIG NUM_PROCS`` (torchrun) or
``tools/slurm_train.sh``. Without CUDA the distributed path uses gloo automatically (see
``mmsgformer/engine/dist.py``). The work is done by :func:`mmsgformer.engine.runner.train`.
"""

import argparse
import os
import sys
from dataclasses import fields

from mmengine.config import DictAction


def parse_args(argv=None) -> argparse.Namespace:
    # Apart from tools/test.py's parser on purpose, as in mmdet: each tool lists all it takes.
    # An option's name is that of the TrainOptions field it sets (main() passes them by name).
    parser = argparse.ArgumentParser(
        description='Train an mmsgformer model (detection, segmentation or classification, '
        "by the config's default_scope)"
    )
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or, without a path, from the '
        'latest complete checkpoint in the work directory',
    )
    parser.add_argument(
        '--amp',
        action='store_true',
        help='automatic mixed precision (AmpOptimWrapper, dynamic loss scale); needs a GPU',
    )
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by (total batch size) / auto_scale_lr.base_batch_size',
    )
    parser.add_argument('--work-dir', help='directory for logs, metrics and checkpoints')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs (e.g. '
        'train_cfg.max_epochs=2 model.backbone.init_cfg=None)',
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
    from mmsgformer.engine.preflight import ConfigPathError
    from mmsgformer.engine.reliability import DivergenceError
    from mmsgformer.engine.runner import RunError, TrainOptions, train
    from mmsgformer.utils.config import ConfigError

    options = TrainOptions(**{f.name: getattr(args, f.name) for f in fields(TrainOptions)})
    try:
        train(args.config, options)
    except ConfigPathError as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(2)
    except (ConfigError, RunError) as err:
        raise SystemExit(f'error: {err}')
    except DivergenceError:  # its message is already logged, as the last lines: no traceback
        raise SystemExit(1)


if __name__ == '__main__':
    main()
