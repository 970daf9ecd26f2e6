"""Distributed training and testing without CUDA (gloo), with MMEngine 0.10.x unpatched.

MMEngine's own path assumes GPUs in three places; we work around each one from our tools,
before the :class:`~mmengine.runner.Runner` is built, without touching installed packages:

1. ``mmengine.dist.init_dist`` calls ``torch.cuda.set_device(local_rank)`` for the pytorch,
   slurm and mpi launchers, which raises on a machine without an NVIDIA driver (even with
   ``backend='gloo'``). :func:`init_cpu_dist` creates the gloo process group itself from the
   launcher's environment variables; the Runner then finds ``is_distributed()`` true and skips
   its own ``init_dist``.
2. ``Runner.wrap_model`` passes ``device_ids=[LOCAL_RANK]`` to DDP, which DDP rejects for a
   module on the CPU. :class:`CPUDistributedDataParallel` (a registered model wrapper, chosen
   through ``cfg.model_wrapper_cfg`` by :func:`prepare_cfg_for_cpu_dist`) drops
   ``device_ids`` when the module lives on the CPU.
3. ``torch.nn.SyncBatchNorm`` (``norm_cfg=dict(type='SyncBN')``, the default of mmseg's
   bases) raises "SyncBatchNorm expected input tensor to be on GPU" in a CPU process group,
   and mmcv's ``MMSyncBN`` is CUDA-only. On the CPU the wrapper converts both to plain
   BatchNorm (per-process batch statistics), like MMEngine already does for non-distributed
   runs. On GPUs nothing changes: SyncBN stays SyncBN.

Exit: with torch 2.14 a gloo rank can abort after all its work is done ("terminate called
without an active exception", SIGABRT, so torchrun reports a failed run). Every backward pass
stashes a Python object in thread-local state, DDP's all-reduce work captures that state, and
gloo's worker thread releases the finished work a moment after waking the main thread. If the
interpreter is already shutting down then, the decref cannot take the GIL and the thread dies
inside a C++ destructor. :func:`init_cpu_dist` registers :func:`destroy_cpu_dist` at exit: it
destroys the group and leaves the GIL free for a short moment (``_GLOO_RELEASE_WAIT_S``) so the
workers drop finished work while the interpreter is intact. Under a busy machine this took the
failure rate of a 2-rank test from about 1 in 4 runs to 0 in 20.

With CUDA available, :func:`setup_distributed` does nothing and MMEngine's usual NCCL path is
used.
"""

import atexit
import datetime
import os
import subprocess
import time
import warnings
from typing import Optional

import torch
import torch.distributed as torch_dist
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm

from ..registry import MODEL_WRAPPERS, register_in_root

_DDP_TYPES = ('MMDistributedDataParallel', 'mmengine.MMDistributedDataParallel')
# How long the exit hook leaves the GIL to gloo's worker threads (see the module docstring).
_GLOO_RELEASE_WAIT_S = 0.5


def _module_device(module: torch.nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device('cpu')


def _count_sync_bn(module: torch.nn.Module) -> int:
    types = [torch.nn.SyncBatchNorm]
    try:
        from mmcv.ops import SyncBatchNorm as MMSyncBN

        types.append(MMSyncBN)
    except ImportError:  # mmcv without ops
        pass
    return sum(isinstance(m, tuple(types)) for m in module.modules())


@register_in_root(MODEL_WRAPPERS)
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that also works for modules on the CPU (gloo).

    For a CPU module it ignores ``device_ids``/``output_device`` (DDP requires them to be
    None there) and reverts SyncBN layers to BatchNorm (SyncBN cannot run on the CPU). For a
    CUDA module it behaves exactly like ``MMDistributedDataParallel``.
    """

    def __init__(self, module, device_ids=None, **kwargs):
        if _module_device(module).type == 'cpu':
            n_sync = _count_sync_bn(module)
            if n_sync:
                warnings.warn(
                    f'CPU distributed run: converting {n_sync} SyncBatchNorm layers '
                    'to BatchNorm (statistics are per process, not synchronised).'
                )
                module = revert_sync_batchnorm(module)
            device_ids = None
            kwargs.pop('output_device', None)
        super().__init__(module=module, device_ids=device_ids, **kwargs)


def init_cpu_dist(launcher: str, backend: str = 'gloo', timeout: Optional[float] = None) -> None:
    """Create the default process group for ``launcher`` without touching CUDA.

    Reads the same environment variables as ``mmengine.dist.init_dist`` (torchrun's RANK,
    WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT; slurm's SLURM_*; Open MPI's OMPI_COMM_WORLD_*)
    and exports RANK/WORLD_SIZE/LOCAL_RANK/MASTER_* so later code sees a torchrun-like
    environment.
    """
    if torch_dist.is_initialized():
        return
    env = os.environ
    if launcher == 'pytorch':
        rank, world_size = int(env['RANK']), int(env['WORLD_SIZE'])
        env.setdefault('LOCAL_RANK', '0')
    elif launcher == 'slurm':
        rank, world_size = int(env['SLURM_PROCID']), int(env['SLURM_NTASKS'])
        env['LOCAL_RANK'] = env.get('SLURM_LOCALID', '0')
        if 'MASTER_ADDR' not in env:
            node_list = env['SLURM_NODELIST']
            env['MASTER_ADDR'] = subprocess.getoutput(
                f'scontrol show hostname {node_list} | head -n1'
            )
        env.setdefault('MASTER_PORT', '29500')
    elif launcher == 'mpi':
        rank = int(env['OMPI_COMM_WORLD_RANK'])
        world_size = int(env['OMPI_COMM_WORLD_SIZE'])
        env['LOCAL_RANK'] = env['OMPI_COMM_WORLD_LOCAL_RANK']
        if 'MASTER_ADDR' not in env:
            raise KeyError('The environment variable MASTER_ADDR is not set')
        env.setdefault('MASTER_PORT', '29500')
    else:
        raise ValueError(f'Invalid launcher type: {launcher}')
    env['RANK'], env['WORLD_SIZE'] = str(rank), str(world_size)
    kwargs = {}
    if timeout is not None:
        kwargs['timeout'] = datetime.timedelta(seconds=timeout)
    torch_dist.init_process_group(
        backend=backend, init_method='env://', rank=rank, world_size=world_size, **kwargs
    )
    atexit.register(destroy_cpu_dist)


def destroy_cpu_dist() -> None:
    """Destroy the default process group while the interpreter is still intact.

    Safe to call more than once and when no group exists; :func:`init_cpu_dist` registers it
    with :mod:`atexit`, so every run of our tools ends with it.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
        time.sleep(_GLOO_RELEASE_WAIT_S)  # releases the GIL: gloo's threads drop finished work


def prepare_cfg_for_cpu_dist(cfg) -> None:
    """Point ``cfg`` at gloo and at :class:`CPUDistributedDataParallel` (in place)."""
    env_cfg = cfg.get('env_cfg') or {}
    dist_cfg = dict(env_cfg.get('dist_cfg') or {})
    dist_cfg['backend'] = 'gloo'
    env_cfg['dist_cfg'] = dist_cfg
    cfg['env_cfg'] = env_cfg

    wrapper = cfg.get('model_wrapper_cfg')
    if wrapper is None:
        cfg['model_wrapper_cfg'] = dict(
            type='CPUDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False),
        )
    elif wrapper.get('type', 'MMDistributedDataParallel') in _DDP_TYPES:
        wrapper['type'] = 'CPUDistributedDataParallel'
    else:
        warnings.warn(
            f'model_wrapper_cfg type {wrapper.get("type")!r} is kept as is; it must '
            'accept a CPU module (DDP needs device_ids=None on the CPU).'
        )


def setup_distributed(cfg, launcher: str) -> bool:
    """Prepare ``cfg`` (and the process group) for ``launcher``; call before the Runner.

    Returns True when a CPU (gloo) process group was created here. With CUDA available, or
    for ``launcher='none'``, nothing is done and MMEngine's own code path is used.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return False
    dist_cfg = (cfg.get('env_cfg') or {}).get('dist_cfg') or {}
    init_cpu_dist(launcher, backend='gloo', timeout=dist_cfg.get('timeout'))
    prepare_cfg_for_cpu_dist(cfg)
    return True
