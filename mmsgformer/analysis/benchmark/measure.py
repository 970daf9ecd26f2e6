"""One benchmark run: every model timed at every size and mode (interleaved), its peak memory
and MACs, as rows (:func:`measure`)."""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from typing import Dict, List, Optional, Tuple

import torch

from ..baselines import whole_model_fns
from .memory import measure_memory_cpu
from .models import OFFICIAL_MODELS, Entry, baseline_names, build_entries
from .options import DTYPES, BenchmarkOptions
from .timing import machine_info, matmul_rate, run_timing, set_mode


# --------------------------------------------------------------------------------- MACs
def macs_key(entry: Entry, h: int, w: int) -> str:
    digest = hashlib.sha1(repr(entry.model).encode()).hexdigest()[:12]
    return f'{entry.eager_name}|{h}x{w}|{digest}'


def count_entry_macs(entry: Entry, h: int, w: int, cache: dict) -> Optional[int]:
    """The network's MACs for one image (cached by name, size and module structure)."""
    from mmsgformer.analysis.complexity import count_macs

    key = macs_key(entry, h, w)
    if key not in cache:
        set_mode(entry.model, 'infer')
        x = torch.randn(1, 3, h, w, device=entry.options.device)
        if entry.task is None:
            result = count_macs(entry.model, (x,))
        else:
            infer, _ = whole_model_fns(entry.model, entry.task, 1, (h, w))
            result = count_macs(entry.model, (x,), fn=infer)
        cache[key] = result['macs']
    return cache[key]


def _count_macs(entries: List[Entry], options: BenchmarkOptions) -> Dict[tuple, int]:
    """MACs per ``(model, H, W)``, through the ``macs_cache`` file."""
    cache = {}
    if options.macs_cache and os.path.isfile(options.macs_cache):
        with open(options.macs_cache) as f:
            cache = json.load(f)
    macs = {}
    start = time.time()
    for h, w, _ in {(s[0], s[1], 0) for s in options.size_batches}:
        for entry in entries:
            if entry.eager_name not in OFFICIAL_MODELS:  # the same network as ours
                macs[(entry.name, h, w)] = count_entry_macs(entry, h, w, cache)
    if options.macs_cache:
        os.makedirs(os.path.dirname(options.macs_cache) or '.', exist_ok=True)
        with open(options.macs_cache, 'w') as f:
            json.dump(cache, f, indent=1)
    print(f'  MACs counted in {time.time() - start:.0f} s', flush=True)
    return macs


# ------------------------------------------------------------------------------- memory
def _measure_memory(entries: List[Entry], options: BenchmarkOptions) -> Dict[tuple, dict]:
    """CPU peak memory per ``(model, size, mode)`` of the eager models, one subprocess each."""
    memory = {}
    start = time.time()
    for size in options.size_batches:
        for mode in options.memory_modes or options.modes:
            if mode not in options.modes:
                continue
            for entry in entries:
                if entry.name == entry.eager_name:
                    memory[(entry.name, size, mode)] = measure_memory_cpu(
                        entry.name, size, mode, options
                    )
    print(f'  memory measured in {time.time() - start:.0f} s', flush=True)
    return memory


# ---------------------------------------------------------------------------------- run
def _matmul_rates(options: BenchmarkOptions, info: dict, when: str) -> None:
    """The float32 (and ``options.dtype``) matmul rates into ``info``, ``when`` before/after."""
    info[f'matmul_gmac_s_float32_{when}'] = matmul_rate(options, torch.float32)
    if options.dtype != 'float32':
        info[f'matmul_gmac_s_{options.dtype}_{when}'] = matmul_rate(options, DTYPES[options.dtype])


def measure(options: BenchmarkOptions) -> Tuple[dict, List[dict]]:
    """Times every model at every size and mode (interleaved), measures peak memory and MACs.

    Args:
        options: What to measure.

    Returns:
        The machine's description (with its matmul rate) and one row per (model, size, batch,
        mode): ``img_s``, ``ms_img``, ``times_s``, ``peak_mib``, ``step_mib``, ``gmac_img``,
        ``gmac_s``, ``pct_mm``, ``vs`` (ratios to the row's baselines) and more.
    """
    torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)
    if options.compile or options.compile_vs_eager:
        import torch._dynamo.config as dynamo_config

        dynamo_config.cache_size_limit = 256
    cpu = torch.device(options.device).type == 'cpu'
    info = machine_info(options)
    _matmul_rates(options, info, 'before')
    compile_info = 'vs-eager' if options.compile_vs_eager else str(options.compile)
    if options.compile or options.compile_vs_eager:
        compile_info += f' ({options.compile_backend}, mode {options.compile_mode or "default"})'
    print(
        f'# {info["date"]}  {info.get("cpu") or info.get("gpu")}  device={options.device}  '
        f'threads={info["threads"]}  dtype={options.dtype}  compile={compile_info}  '
        f'with_cp={options.with_cp}  torch {info["torch"]}',
        flush=True,
    )

    entries = build_entries(options)
    names = [e.name for e in entries]
    timings = {}
    for size in options.size_batches:
        for mode in options.modes:
            start = time.time()
            timings[(size, mode)] = run_timing(entries, size, mode, options)
            print(
                f'  timed {size[0]}x{size[1]}@{size[2]} {mode} in {time.time() - start:.0f} s',
                flush=True,
            )

    _matmul_rates(options, info, 'after')
    rate_key = f'matmul_gmac_s_{options.dtype}'
    mm_rate = max(info[rate_key + '_before'], info[rate_key + '_after'])
    info['matmul_gmac_s'] = mm_rate

    memory = _measure_memory(entries, options) if cpu and not options.no_memory else {}
    macs = {} if options.no_macs else _count_macs(entries, options)

    rows = []
    for (size, mode), result in timings.items():
        h, w, batch = size
        for entry in entries:
            r = result[entry.name]
            sec_img = statistics.median(r['times']) / batch
            mac = macs.get((entry.name, h, w))
            # a training step is counted as 3x the forward MACs (forward + two backward
            # products), the usual convention
            step_macs = None if mac is None else mac * (3 if mode == 'train' else 1)
            mem = memory.get((entry.name, size, mode)) or {}
            peak = r.get('peak_mib', mem.get('peak_mib'))
            rows.append(
                dict(
                    model=entry.name,
                    size=f'{h}x{w}',
                    batch=batch,
                    mode=mode,
                    img_s=1 / sec_img,
                    ms_img=sec_img * 1e3,
                    times_s=r['times'],
                    peak_mib=peak,
                    step_mib=mem.get('step_mib'),
                    compile_s=r.get('compile_s'),
                    gmac_img=None if mac is None else mac / 1e9,
                    gmac_s=None if step_macs is None else step_macs / sec_img / 1e9,
                    pct_mm=None if step_macs is None else 100 * step_macs / sec_img / 1e9 / mm_rate,
                    with_cp=entry.with_cp,
                    vs={},
                )
            )
    index = {(r['model'], r['size'], r['batch'], r['mode']): r for r in rows}
    for r in rows:
        for base in baseline_names(r['model'], names):
            b = index[(base, r['size'], r['batch'], r['mode'])]
            r['vs'][base] = dict(
                throughput=r['img_s'] / b['img_s'],
                memory=(r['peak_mib'] / b['peak_mib'] if r['peak_mib'] and b['peak_mib'] else None),
            )
    return info, rows
