# The runtime shared by the task bases (maskrcnn_sgformer_coco.py, upernet_sgformer_ade20k.py,
# sgformer_in1k.py): MMEngine's hooks with mmsgformer's crash-safe checkpoints and divergence
# guard, the environment, logging and what to load. Each task base imports it and sets what is
# its task's own (visualization hook and visualizer, logging and checkpoint intervals); the
# values are those the `default_runtime.py` of mmdet 3.3.0, mmseg 1.2.2 and mmpretrain 1.2.0
# share.
custom_imports = dict(imports=['mmsgformer'], allow_failed_imports=False)
# MMEngine skips custom_imports in pure-Python configs: import mmsgformer while the config is
# parsed, before anything reads a checkpoint (MMEngine's Inferencers do so before building the
# model); the import lets torch read MMEngine checkpoints (docs/checkpoints.md).
__import__('mmsgformer')

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # MMEngine's CheckpointHook, written atomically and only with finite weights
    # (mmsgformer/engine/hooks.py).
    checkpoint=dict(type='mmsgformer.AtomicCheckpointHook', interval=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
# Stops a run whose loss or weights become NaN/Inf (docs/reliability.md).
custom_hooks = [dict(type='mmsgformer.DivergenceGuardHook')]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]

log_level = 'INFO'
load_from = None
resume = False
