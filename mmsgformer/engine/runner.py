"""Training and testing with MMEngine's Runner: what ``tools/train.py`` and ``tools/test.py`` do.

One pair of entry points serves detection, segmentation and classification (the config's
``default_scope`` picks the task): :func:`train` with :class:`TrainOptions` and :func:`test` with
:class:`TestOptions`. Both read the config with :func:`prepare_config` (config +
``cfg_options`` + work directory + dataset paths checked before anything is built) and build the
runner with :func:`build_runner` (gloo + a CPU DDP wrapper where there is no CUDA).

What stops a run before it starts is an exception whose message names the cause and the fix,
for the tools to print: :class:`~mmsgformer.engine.preflight.ConfigPathError` (a dataset path of
the config is missing), :class:`RunError` (an option or config the run cannot serve) and
:class:`~mmsgformer.utils.safe_loading.CheckpointError` (the checkpoint to test cannot be used).
"""

from __future__ import annotations

import os
import os.path as osp
import sys
import warnings
from copy import deepcopy
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from mmengine.config import Config, ConfigDict

from ..utils.compat import OpenMMLabInstallError, check_mmcv_ops
from ..utils.config import load_config, task_of
from ..utils.safe_loading import read_checkpoint
from .preflight import check_dataset_paths, concise_build_error

SCOPES_NEEDING_MMCV_OPS = ('mmdet', 'mmseg')
"""Scopes whose packages import mmcv's compiled ops when their models register."""


class RunError(RuntimeError):
    """A run that cannot start as asked; the message says why and what to change."""


@dataclass
class RunOptions:
    """What training and testing share.

    Args:
        work_dir: Folder for logs, metrics and checkpoints (default: the config's
            ``work_dir``, else ``./work_dirs/<config name>``).
        cfg_options: ``{dotted.key: value}`` overrides of config settings
            (:func:`mmsgformer.utils.config.apply_cfg_options`).
        launcher: ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``.
    """

    work_dir: Optional[str] = None
    cfg_options: Optional[Dict[str, Any]] = None
    launcher: str = 'none'


@dataclass
class TrainOptions(RunOptions):
    """Options of :func:`train`.

    Args:
        resume: A checkpoint to resume from, or ``'auto'``: the last complete checkpoint of the
            work directory (see :func:`set_resume`); None starts a new run.
        amp: Mixed precision (:func:`use_amp`; needs a GPU).
        auto_scale_lr: Scale the learning rate by the total batch size
            (:func:`enable_auto_scale_lr`).
    """

    resume: Optional[str] = None
    amp: bool = False
    auto_scale_lr: bool = False


@dataclass
class TestOptions(RunOptions):
    """Options of :func:`test`.

    Args:
        out: Detection/classification: a ``.pkl`` file for the predictions; segmentation: a
            folder for the predicted label maps (:func:`set_prediction_output`).
        show: Show the predictions in a window.
        show_dir: Save pictures of the predictions here (:func:`enable_visualization`).
        wait_time: Seconds each shown picture stays.
        tta: Test-time augmentation (:func:`apply_tta`).
    """

    __test__ = False  # not a test class for pytest, where a test module imports it
    out: Optional[str] = None
    show: bool = False
    show_dir: Optional[str] = None
    wait_time: float = 2.0
    tta: bool = False


# ----------------------------------------------------------------------------- both
def prepare_config(config: str, options: RunOptions, loaders: Sequence[str]) -> Config:
    """The config of a train/test run, with its dataset paths checked.

    Reads ``config`` with ``options.cfg_options``, settles the work directory
    (``options.work_dir`` > the file's ``work_dir`` > ``./work_dirs/<config name>``) and the
    launcher.

    Args:
        config: Config file.
        options: The run's options.
        loaders: Dataloaders whose datasets the run reads, e.g. ``['test_dataloader']``;
            ``val_dataloader`` is checked only when the config validates (``val_cfg``).

    Raises:
        ConfigPathError: A data root, annotation file or image folder of ``loaders`` is missing;
            the message names the path, the config key and the ``--cfg-options`` that changes
            it.
    """
    cfg = load_config(config, options.cfg_options, options.work_dir, options.launcher)
    if not cfg.get('val_cfg'):
        loaders = [loader for loader in loaders if loader != 'val_dataloader']
    check_dataset_paths(cfg, loaders)
    return cfg


def build_runner(cfg: Config, config: str):
    """Sets up distributed running (gloo without CUDA) and builds the config's Runner.

    Args:
        cfg: The prepared config (:func:`prepare_config`).
        config: Config path, for messages.

    Raises:
        RunError: Building failed; the message is the failing component's own, without the
            registry's nesting (``MMSGFORMER_DEBUG=1`` re-raises the original error instead).
            Or mmcv's compiled ops, which mmdet and mmseg import, do not load.
    """
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from .dist import setup_distributed

    if cfg.get('default_scope') in SCOPES_NEEDING_MMCV_OPS:
        try:
            check_mmcv_ops()
        except OpenMMLabInstallError as err:
            raise RunError(str(err)) from None
    setup_distributed(cfg, cfg.get('launcher', 'none'))
    try:
        return RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    except Exception as e:  # noqa: BLE001 - reported concisely, full traceback on request
        if os.environ.get('MMSGFORMER_DEBUG'):
            raise
        raise RunError(
            f'building the runner from {config} failed: {concise_build_error(e)}\n'
            '(set MMSGFORMER_DEBUG=1 for the full traceback)'
        ) from e


# ----------------------------------------------------------------------------- entry points
def train(config: str, options: Optional[TrainOptions] = None) -> None:
    """Trains a config with MMEngine's Runner, with atomic, finite-only checkpoints and the
    divergence guard (:func:`~mmsgformer.engine.reliability.use_reliability_hooks`), also for
    configs without them.

    Args:
        config: Config file.
        options: See :class:`TrainOptions`.

    Raises:
        ConfigPathError, RunError: See the module's docstring.
        DivergenceError: The run diverged; its message is already logged.
    """
    import torch

    from .reliability import use_reliability_hooks

    options = options or TrainOptions()
    cfg = prepare_config(config, options, ['train_dataloader', 'val_dataloader'])
    if options.amp:
        use_amp(cfg, torch.cuda.is_available())
    if options.auto_scale_lr:
        enable_auto_scale_lr(cfg)
    use_reliability_hooks(cfg)
    if options.resume is not None:
        set_resume(cfg, options.resume)
    build_runner(cfg, config).train()


def test(
    config: str, checkpoint: str, options: Optional[TestOptions] = None
) -> Optional[Dict[str, Any]]:
    """Evaluates a checkpoint, or an exported ONNX model, of a config with MMEngine's Runner.

    The checkpoint is read once, safely, and its weights are checked for NaN/Inf
    (:func:`~mmsgformer.utils.safe_loading.read_checkpoint`) after the config and its data paths
    and before anything is built; the dict read is then put into the runner's model
    (:func:`run_test`), so the runner does not read the file again. A ``.onnx`` file (made by
    ``tools/deployment/export_onnx.py`` from this config) is run by ONNX Runtime in place of
    the runner's model (:func:`run_onnx_test`).

    Args:
        config: Config file.
        checkpoint: Checkpoint file of a model of ``config``, or a ``.onnx`` file exported
            from it.
        options: See :class:`TestOptions`.

    Returns:
        The evaluator's metrics.

    Raises:
        ConfigPathError, RunError, CheckpointError: See the module's docstring.
    """
    options = options or TestOptions()
    if not osp.isfile(checkpoint):
        raise RunError(f'checkpoint not found: {checkpoint}')
    exported = checkpoint.endswith('.onnx')
    if exported and options.tta:
        raise RunError(
            '--tta is not available for an ONNX model; test the .pth checkpoint with --tta instead'
        )
    cfg = prepare_config(config, options, ['test_dataloader'])  # config and data errors first
    # unreadable, unsafe or NaN/Inf weights: one error
    loaded = None if exported else read_checkpoint(checkpoint)
    task = task_of(cfg)
    if not exported:
        cfg.load_from = checkpoint
    if options.show or options.show_dir:
        enable_visualization(cfg, options.show, options.show_dir, options.wait_time)
    if options.tta:
        apply_tta(cfg, task)
    if options.out is not None:
        set_prediction_output(cfg, task, options.out)
    runner = build_runner(cfg, config)
    if options.out is not None:
        add_prediction_dump(runner, task, options.out)
    if exported:
        return run_onnx_test(runner, checkpoint)
    return run_test(runner, loaded, checkpoint)


test.__test__ = False  # not a test function for pytest, where a test module imports it


def run_test(runner, checkpoint: Mapping, filename: str) -> Optional[Dict[str, Any]]:
    """``runner.test()`` with weights from a checkpoint already read.

    The steps of MMEngine's ``Runner.test`` (0.10.x) in its order: the test loop is built, the
    ``before_run`` hooks run, the weights are loaded (``after_load_checkpoint`` hooks, as
    ``Runner.load_checkpoint`` runs them, then the state dict into the model inside any wrapper
    or test-time augmentation, strictly: :func:`~mmsgformer.models.pretrained.load_weights`;
    only the tensors of parts the config sets to None may be left unused,
    :func:`parts_set_to_none`), the loop runs, the ``after_run`` hooks run.

    Args:
        runner: A runner built by :func:`build_runner`.
        checkpoint: The checkpoint read (a dict with ``state_dict``, or a state dict).
        filename: Its file, for the log.

    Returns:
        The evaluator's metrics.

    Raises:
        CheckpointMismatchError: The checkpoint does not fit the config's model.
    """
    from mmengine.model import BaseTTAModel, is_model_wrapper

    from ..models.pretrained import load_weights

    loop = built_test_loop(runner)
    runner.call_hook('before_run')
    runner.call_hook('after_load_checkpoint', checkpoint=checkpoint)
    model, model_cfg = runner.model, runner.cfg.model
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        if isinstance(model, BaseTTAModel):
            model_cfg = model_cfg['module']
        model = model.module
    dropped = parts_set_to_none(model_cfg)
    load_weights(model, checkpoint, allow_unexpected=dropped, source=filename)
    metrics = loop.run()
    runner.call_hook('after_run')
    return metrics


def parts_set_to_none(model_cfg: Mapping, prefix: str = '') -> Tuple[str, ...]:
    """Key prefixes of the model parts a config sets to None (``roi_head.mask_head.`` for
    ``model.roi_head.mask_head=None``, a box-only Mask R-CNN): the tensors a checkpoint of the
    whole model holds for them are the ones a test may leave unused.

    Args:
        model_cfg: The model's config.
        prefix: The key prefix of ``model_cfg`` in the model.
    """
    parts: Tuple[str, ...] = ()
    for key, value in model_cfg.items():
        if value is None:
            parts += (f'{prefix}{key}.',)
        elif isinstance(value, Mapping):
            parts += parts_set_to_none(value, f'{prefix}{key}.')
    return parts


def run_onnx_test(runner, onnx_file: str) -> Optional[Dict[str, Any]]:
    """``runner.test()`` with an exported model run by ONNX Runtime as the runner's model.

    The runner's model is replaced by :class:`~mmsgformer.deployment.OnnxRuntimeModel`; the
    test loop, its dataloader and the config's evaluator are the runner's own.

    Args:
        runner: A runner built by :func:`build_runner`.
        onnx_file: The exported model.

    Returns:
        The evaluator's metrics.

    Raises:
        RunError: The file cannot serve the config (see
            :class:`~mmsgformer.deployment.ExportError`).
    """
    from mmsgformer.deployment import ExportError, OnnxRuntimeModel

    loop = built_test_loop(runner)
    try:
        runner.model = OnnxRuntimeModel(onnx_file, runner.cfg)
    except ExportError as err:
        raise RunError(str(err)) from err
    runner.call_hook('before_run')
    runner.logger.info(f'Testing ONNX model {onnx_file} with ONNX Runtime')
    metrics = loop.run()
    runner.call_hook('after_run')
    return metrics


def built_test_loop(runner):
    """The runner's test loop (built on first use), else :class:`RunError`."""
    loop = runner.test_loop
    if loop is None:
        raise RunError(
            'the config has no test loop: it needs test_dataloader, test_cfg and test_evaluator'
        )
    return loop


# ----------------------------------------------------------------------------- training
def use_amp(cfg: Config, cuda_available: bool) -> None:
    """Mixed precision: ``AmpOptimWrapper`` with a dynamic loss scale.

    Raises:
        RunError: Without a GPU (MMEngine's AmpOptimWrapper does not run on the CPU).
    """
    if not cuda_available:
        raise RunError(
            "--amp needs a GPU (MMEngine's AmpOptimWrapper does not run on the "
            'CPU); train without --amp on this machine.'
        )
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.loss_scale = 'dynamic'


def enable_auto_scale_lr(cfg: Config) -> None:
    """Lets the runner scale the learning rate by total batch size / ``base_batch_size``."""
    auto = cfg.get('auto_scale_lr')
    if not auto or 'base_batch_size' not in auto:
        raise RunError(
            '--auto-scale-lr needs auto_scale_lr = dict(enable=False, '
            'base_batch_size=N) in the config'
        )
    cfg.auto_scale_lr.enable = True


def set_resume(cfg: Config, resume: str) -> None:
    """``--resume CKPT``, or ``'auto'``: the last *complete* checkpoint of the work directory."""
    from .reliability import find_resume_checkpoint

    cfg.resume = True
    if resume != 'auto':
        cfg.load_from = resume
        return
    cfg.load_from = find_resume_checkpoint(cfg.work_dir)
    if cfg.load_from is None:
        print(f'--resume: no checkpoint in {cfg.work_dir}; training from scratch.', file=sys.stderr)


# ----------------------------------------------------------------------------- testing
def enable_visualization(
    cfg: Config, show: bool, show_dir: Optional[str], wait_time: float
) -> None:
    """Turns on the task's visualization hook for testing (mmdet/mmseg/mmpretrain flavours)."""
    hooks = cfg.get('default_hooks') or {}
    hook = hooks.get('visualization')
    if hook is None:
        raise RunError(
            "default_hooks.visualization is missing from the config; add the task's "
            'visualization hook (e.g. DetVisualizationHook) to use --show/--show-dir.'
        )
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
        transforms=[[dict(type='RandomFlip', prob=1.0), dict(type='RandomFlip', prob=0.0)], [pack]],
    )
    return pipeline


def apply_tta(cfg: Config, task: str) -> None:
    """Wraps ``cfg.model`` in ``cfg.tta_model`` and tests with ``cfg.tta_pipeline``.

    mmseg configs ship both (``SegTTAModel`` + multi-scale/flip pipelines); for detection and
    classification a horizontal-flip TTA is used when the config has none.

    Raises:
        RunError: Mask R-CNN (mmdet's DetTTAModel refuses masks), or a segmentation config
            without ``tta_model``/``tta_pipeline``.
    """
    if task == 'det' and (cfg.model.get('roi_head') or {}).get('mask_head'):
        raise RunError(
            "--tta: mmdet 3.3's DetTTAModel merges boxes only and refuses instance "
            'masks, so Mask R-CNN cannot be tested with TTA. For box-only TTA drop the '
            'mask branch: --cfg-options model.roi_head.mask_head=None '
            'model.roi_head.mask_roi_extractor=None test_evaluator.metric=bbox'
        )
    test_ds = cfg.test_dataloader.dataset
    while 'dataset' in test_ds:  # dataset wrappers
        test_ds = test_ds['dataset']
    if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        if task == 'det':
            cfg.setdefault(
                'tta_model',
                dict(
                    type='DetTTAModel',
                    tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100),
                ),
            )
            pack = deepcopy(test_ds.pipeline[-1])
            pack['meta_keys'] = tuple(
                pack.get(
                    'meta_keys', ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')
                )
            ) + ('flip', 'flip_direction')
            cfg.setdefault('tta_pipeline', _flip_tta_pipeline(test_ds.pipeline, pack))
        elif task == 'cls':
            cfg.setdefault('tta_model', dict(type='mmpretrain.AverageClsScoreTTA'))
            cfg.setdefault(
                'tta_pipeline', _flip_tta_pipeline(test_ds.pipeline, deepcopy(test_ds.pipeline[-1]))
            )
        else:
            raise RunError(
                '--tta needs `tta_model` and `tta_pipeline` in the config '
                "(mmseg's dataset bases define tta_pipeline, its default_runtime "
                'tta_model).'
            )
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
        raise RunError(f'--out must be a .pkl file for this task, got {out!r}')


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
        lines.append(
            '(the evaluator returned no metrics; see the log above, e.g. CocoMetric '
            'returns none when the model detected nothing)'
        )
    for key, value in (metrics or {}).items():
        lines.append(f'{key}: {value:.4f}' if isinstance(value, float) else f'{key}: {value}')
    return '\n'.join(lines)
