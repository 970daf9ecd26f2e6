"""Shared pieces of ``tools/train.py`` and ``tools/test.py`` (one pair for all tasks)."""
import os
import os.path as osp
import sys
import warnings
from copy import deepcopy

from mmengine.config import Config, ConfigDict

# default_scope of a config -> our task name
TASKS = {'mmdet': 'det', 'mmseg': 'seg', 'mmpretrain': 'cls'}


def task_of(cfg) -> str:
    """'det', 'seg' or 'cls' from the config's ``default_scope`` ('' if unknown)."""
    return TASKS.get(cfg.get('default_scope', None), '')


def load_config(config: str, launcher: str = 'none', cfg_options=None,
                work_dir=None) -> Config:
    """Read ``config``, apply ``--cfg-options`` and settle ``work_dir``.

    Priority of the work directory: ``--work-dir`` > ``work_dir`` in the file >
    ``./work_dirs/<config name>``.
    """
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config))[0])
    return cfg


def build_runner(cfg, config: str):
    """Builds the config's Runner. A config error (wrapped by the registry once per nesting
    level) exits with one line naming the cause; ``MMSGFORMER_DEBUG=1`` re-raises it instead."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from .preflight import concise_build_error
    try:
        return RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    except Exception as e:  # noqa: BLE001 - reported concisely, full traceback on request
        if os.environ.get('MMSGFORMER_DEBUG'):
            raise
        print(f'error: building the runner from {config} failed: {concise_build_error(e)}\n'
              '(set MMSGFORMER_DEBUG=1 for the full traceback)', file=sys.stderr)
        sys.exit(1)


def enable_visualization(cfg, show: bool, show_dir, wait_time: float) -> None:
    """Turn on the task's visualization hook for testing (mmdet/mmseg/mmpretrain flavours)."""
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


def _flip_tta_pipeline(test_pipeline, pack):
    pipeline = deepcopy(test_pipeline)
    pipeline[-1] = dict(
        type='TestTimeAug',
        transforms=[[dict(type='RandomFlip', prob=1.),
                     dict(type='RandomFlip', prob=0.)], [pack]])
    return pipeline


def apply_tta(cfg, task: str) -> None:
    """Wrap ``cfg.model`` in ``cfg.tta_model`` and use ``cfg.tta_pipeline`` for testing.

    mmseg configs ship both (``SegTTAModel`` + multi-scale/flip pipelines); for detection
    and classification a horizontal-flip TTA is used when the config has none.
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
                tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5),
                             max_per_img=100)))
            pack = deepcopy(test_ds.pipeline[-1])
            pack['meta_keys'] = tuple(pack.get('meta_keys', (
                'img_id', 'img_path', 'ori_shape', 'img_shape',
                'scale_factor'))) + ('flip', 'flip_direction')
            cfg.setdefault('tta_pipeline',
                           _flip_tta_pipeline(test_ds.pipeline, pack))
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
