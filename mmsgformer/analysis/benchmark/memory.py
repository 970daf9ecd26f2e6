"""Peak memory of one step on the CPU: each step in a fresh Python process
(``python -m mmsgformer.analysis.benchmark``, see :func:`memory_child`), so that neither the
other models nor the timing inflate the RSS high-water mark it reads."""

from __future__ import annotations

import gc
import importlib
import json
import os
import subprocess
import sys
from typing import Optional

import torch

from ..baselines import DEFAULT_MODELS, required_libraries
from .models import OFFICIAL_MODELS, build_entries, import_checkout
from .options import BenchmarkOptions, Size
from .timing import make_step, set_mode


def _status_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise KeyError(field)


def memory_child(spec: dict) -> dict:
    """Runs one step in this (fresh) process and reports its memory.

    ``peak_mib`` is the RSS high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``
    after the model and input are built) minus the RSS after the imports, before anything is
    built: weights + input + everything the step allocates. ``step_mib`` is the high-water mark
    minus the RSS just before the step (weights and input not counted).

    Args:
        spec: ``options`` (:meth:`BenchmarkOptions.to_dict`), ``name``, ``size`` ``(H, W, B)``
            and ``mode`` of the step.
    """
    options = BenchmarkOptions(**spec['options'])
    torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)
    # import every library a model may need first, so that the baseline covers the code
    names = options.models or DEFAULT_MODELS
    for lib in required_libraries(names) + (['timm'] if set(names) & set(OFFICIAL_MODELS) else []):
        importlib.import_module(lib)
    import mmsgformer.models  # noqa: F401

    if options.checkout:
        import_checkout(options.checkout)
    if options.whole_model:
        import mmpretrain.models  # noqa: F401
        import mmseg.models  # noqa: F401
    gc.collect()
    base_kib = _status_kib('VmRSS')
    entry = build_entries(options, only=spec['name'])[0]
    h, w, batch = spec['size']
    x = torch.randn(batch, 3, h, w, device=options.device)
    set_mode(entry.model, spec['mode'])
    step = make_step(entry, spec['mode'], x, options)
    gc.collect()
    before_kib = _status_kib('VmRSS')
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # resets VmHWM to the current RSS
        exact = True
    except OSError:
        exact = False  # VmHWM then also covers model building
    step()
    peak_kib = _status_kib('VmHWM')
    return dict(
        peak_mib=(peak_kib - base_kib) / 1024,
        step_mib=(peak_kib - before_kib) / 1024,
        hwm_reset=exact,
    )


def measure_memory_cpu(
    name: str, size: Size, mode: str, options: BenchmarkOptions
) -> Optional[dict]:
    """:func:`memory_child` of one step of model ``name`` in a fresh Python process; None (and
    the child's error on stderr) if it failed."""
    spec = dict(options=options.to_dict(), name=name, size=list(size), mode=mode)
    package_root = os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    )
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [package_root] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]
        ),
    )
    cmd = [sys.executable, '-m', 'mmsgformer.analysis.benchmark', json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith('MEMORY '):
            return json.loads(line[len('MEMORY ') :])
    print(f'  memory of {name} {size} {mode} failed:\n{proc.stderr[-2000:]}', file=sys.stderr)
    return None
