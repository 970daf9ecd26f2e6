"""Training and testing with MMEngine's Runner: what ``tools/train.py`` and ``tools/test.py`` do.

One pair of tools serves detection, segmentation and classification (the config's
``default_scope`` picks the task). Both parse their common arguments with
:func:`add_runner_arguments` and get their config from :func:`prepare_config` (config +
``--cfg-options`` + work directory + dataset paths checked before anything is built); both build
the runner with :func:`build_runner` (gloo + a CPU DDP wrapper where there is no CUDA).
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from copy import deepcopy
from typing import Any, Dict, Optional, Sequence

from mmengine.config import Config, ConfigDict, DictAction

from .config import load_config
from .preflight import ConfigPathError, check_dataset_paths, concise_build_error


# ----------------------------------------------------------------------------- both tools
def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--work-dir``, ``--cfg-options``, ``--launcher`` and ``--local-rank``.

    Args:
        parser: The tool's parser (its own positional arguments come first).
    """
    parser.add_argument('--work-dir', help='directory for logs, metrics and checkpoints')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value pairs (e.g. '
                             'train_cfg.max_epochs=2 model.backbone.init_cfg=None)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (torch>=2) or --local_rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_runner_args(parser: argparse.ArgumentParser,
                      argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parses ``argv`` and exports ``LOCAL_RANK`` for the launchers that pass it as argument."""
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def prepare_config(args: argparse.Namespace, loaders: Sequence[str]) -> Config:
    """The config of a train/test run, with its dataset paths checked.

    Reads ``args.config`` with ``args.cfg_options``, settles the work directory (``--work-dir`` >
    the file's ``work_dir`` > ``./work_dirs/<config name>``) and the launcher. A missing data
    root, annotation file or image folder of ``loaders`` ends the process (exit code 2) with one
    message naming the path, the config key and the ``--cfg-options`` that changes it.

    Args:
        args: Parsed arguments (``config``, ``cfg_options``, ``work_dir``, ``launcher``).
        loaders: Dataloaders whose datasets the run reads, e.g. ``['test_dataloader']``;
            ``val_dataloader`` is checked only when the config validates (``val_cfg``).
    """
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    if not cfg.get('val_cfg'):
        loaders = [loader for loader in loaders if loader != 'val_dataloader']
    try:
        check_dataset_paths(cfg, loaders)
    except ConfigPathError as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(2)
    return cfg


def build_runner(cfg: Config, config: str):
    """Sets up distributed running (gloo without CUDA) and builds the config's Runner.

    A config error (wrapped by the registry once per nesting level) ends the process with one
    line naming the cause; ``MMSGFORMER_DEBUG=1`` re-raises it instead.

    Args:
        cfg: The prepared config (:func:`prepare_config`).
        config: Config path, for messages.
    """
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from mmsgformer.engine import setup_distributed

    setup_distributed(cfg, cfg.get('launcher', 'none'))
    try:
        return RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    except Exception as e:  # noqa: BLE001 - reported concisely, full traceback on request
        if os.environ.get('MMSGFORMER_DEBUG'):
            raise
        print(f'error: building the runner from {config} failed: {concise_build_error(e)}\n'
              '(set MMSGFORMER_DEBUG=1 for the full traceback)', file=sys.stderr)
        sys.exit(1)


# ----------------------------------------------------------------------------- training
def use_amp(cfg: Config, cuda_available: bool) -> None:
    """Mixed precision: ``AmpOptimWrapper`` with a dynamic loss scale.

    Raises:
        SystemExit: Without a GPU (MMEngine's AmpOptimWrapper does not run on the CPU).
    """
    if not cuda_available:
        raise SystemExit('--amp needs a GPU (MMEngine\'s AmpOptimWrapper does not run on the '
                         'CPU); train without --amp on this machine.')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.loss_scale = 'dynamic'


def enable_auto_scale_lr(cfg: Config) -> None:
    """Lets the runner scale the learning rate by total batch size / ``base_batch_size``."""
    auto = cfg.get('auto_scale_lr')
    if not auto or 'base_batch_size' not in auto:
        raise RuntimeError('--auto-scale-lr needs auto_scale_lr = dict(enable=False, '
                           'base_batch_size=N) in the config')
    cfg.auto_scale_lr.enable = True


def set_resume(cfg: Config, resume: str) -> None:
    """``--resume CKPT``, or ``'auto'``: the last *complete* checkpoint of the work directory."""
    from mmsgformer.engine.reliability import find_resume_checkpoint
    cfg.resume = True
    if resume != 'auto':
        cfg.load_from = resume
        return
    cfg.load_from = find_resume_checkpoint(cfg.work_dir)
    if cfg.load_from is None:
        print(f'--resume: no checkpoint in {cfg.work_dir}; training from scratch.',
              file=sys.stderr)


# ----------------------------------------------------------------------------- testing
def enable_visualization(cfg: Config, show: bool, show_dir: Optional[str],
                         wait_time: float) -> None:
    """Turns on the task's visualization hook for testing (mmdet/mmseg/mmpretrain flavours)."""
    hooks = cfg.get('default_hooks') or {}
    hook = hooks.get('visualization')
    if hook is None:
        raise RuntimeError(
            'default_hooks.visualization is missing from the config; add the task\'s '
            'visualization hook (e.g. DetVisualizationHook) to use --show/--show-dir.')
    hook_type = str(hook.get('type', ''))
    if hook_type.endswith('SegVisualizationHook'):
        hook['draw'] = True
        if show_dir:
            cfg.visualizer['save_dir'] = show_dir
    elif hook_type.endswith('DetVisualizationHook'):
        hook['draw'] = True
        if show_dir:
            hook['test_out_dir'] = show_dir
    else:  # mmpretrain's VisualizationHook
        hook['enable'] = True
        if show_dir:
            hook['out_dir'] = show_dir
    if show:
        hook['show'] = True
        hook['wait_time'] = wait_time


def _flip_tta_pipeline(test_pipeline: list, pack: dict) -> list:
    pipeline = deepcopy(test_pipeline)
    pipeline[-1] = dict(
        type='TestTimeAug',
        transforms=[[dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
                    [pack]])
    return pipeline


def apply_tta(cfg: Config, task: str) -> None:
    """Wraps ``cfg.model`` in ``cfg.tta_model`` and tests with ``cfg.tta_pipeline``.

    mmseg configs ship both (``SegTTAModel`` + multi-scale/flip pipelines); for detection and
    classification a horizontal-flip TTA is used when the config has none.

    Raises:
        RuntimeError: Mask R-CNN (mmdet's DetTTAModel refuses masks), or a segmentation config
            without ``tta_model``/``tta_pipeline``.
    """
    if task == 'det' and (cfg.model.get('roi_head') or {}).get('mask_head'):
        raise RuntimeError(
            '--tta: mmdet 3.3\'s DetTTAModel merges boxes only and refuses instance '
            'masks, so Mask R-CNN cannot be tested with TTA. For box-only TTA drop the '
            'mask branch: --cfg-options model.roi_head.mask_head=None '
            'model.roi_head.mask_roi_extractor=None test_evaluator.metric=bbox')
    test_ds = cfg.test_dataloader.dataset
    while 'dataset' in test_ds:  # dataset wrappers
        test_ds = test_ds['dataset']
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        if task == 'det':
            cfg.setdefault('tta_model', dict(
                type='DetTTAModel',
                tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)))
            pack = deepcopy(test_ds.pipeline[-1])
            pack['meta_keys'] = tuple(pack.get('meta_keys', (
                'img_id', 'img_path', 'ori_shape', 'img_shape',
                'scale_factor'))) + ('flip', 'flip_direction')
            cfg.setdefault('tta_pipeline', _flip_tta_pipeline(test_ds.pipeline, pack))
        elif task == 'cls':
            cfg.setdefault('tta_model', dict(type='mmpretrain.AverageClsScoreTTA'))
            cfg.setdefault('tta_pipeline', _flip_tta_pipeline(
                test_ds.pipeline, deepcopy(test_ds.pipeline[-1])))
        else:
            raise RuntimeError(
                '--tta needs `tta_model` and `tta_pipeline` in the config '
                '(mmseg\'s dataset bases define tta_pipeline, its default_runtime '
                'tta_model).')
        warnings.warn('Config has no tta_model/tta_pipeline: using flip TTA.')
    test_ds.pipeline = cfg.tta_pipeline
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)


def set_prediction_output(cfg: Config, task: str, out: str) -> None:
    """``--out`` for segmentation: the evaluator writes the predicted label maps (PNG) to ``out``.

    Detection and classification dump to a ``.pkl`` file instead
    (:func:`add_prediction_dump`, once the runner exists).
    """
    if task == 'seg':
        cfg.test_evaluator['output_dir'] = out
        cfg.test_evaluator['keep_results'] = True
    elif not out.endswith(('.pkl', '.pickle')):
        raise SystemExit(f'--out must be a .pkl file for this task, got {out!r}')


def add_prediction_dump(runner, task: str, out: str) -> None:
    """``--out`` for detection/classification: the predictions are dumped to ``out`` (.pkl)."""
    if task == 'seg':
        return  # see set_prediction_output
    if task == 'det':
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=out))
    else:
        from mmengine.evaluator import DumpResults
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=out))


def format_metrics(metrics: Optional[Dict[str, Any]], title: str) -> str:
    """The metrics of a test run as printed lines (floats with 4 decimals)."""
    lines = [f'\n==== test metrics ({title}) ====']
    if not metrics:
        lines.append('(the evaluator returned no metrics; see the log above, e.g. CocoMetric '
                     'returns none when the model detected nothing)')
    for key, value in (metrics or {}).items():
        lines.append(f'{key}: {value:.4f}' if isinstance(value, float) else f'{key}: {value}')
    return '\n'.join(lines)
