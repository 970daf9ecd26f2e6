"""Timing: one step of a model (:func:`make_step`), interleaved repetitions of every model
(:func:`run_timing`), and the machine's matrix-product rate (:func:`matmul_rate`)."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from typing import Dict, List

import torch

from .models import Entry
from .options import DTYPES, BenchmarkOptions, Size


def autocast_ctx(options: BenchmarkOptions):
    """Autocast to ``options.dtype`` on the options' device (nothing for float32)."""
    if options.dtype == 'float32':
        return contextlib.nullcontext()
    return torch.autocast(
        device_type=torch.device(options.device).type, dtype=DTYPES[options.dtype]
    )


def make_step(entry: Entry, mode: str, x: torch.Tensor, options: BenchmarkOptions):
    """A function running one inference or training step of ``entry`` on ``x``."""
    infer, loss = entry.callables(x.shape[0], tuple(x.shape[-2:]))
    model = entry.model
    if mode == 'infer':

        def step():
            with torch.no_grad(), autocast_ctx(options):
                infer(x)
    else:

        def step():
            for p in model.parameters():
                p.grad = None
            with autocast_ctx(options):
                value = loss(x)
            value.backward()

    return step


def set_mode(model, mode: str) -> None:
    model.train(mode == 'train')  # mmdet's Swin.train() returns None: no chaining


def sync(device: str) -> None:
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------ machine
def matmul_rate(options: BenchmarkOptions, dtype: torch.dtype, reps: int = 5) -> float:
    """GMAC/s of an ``n x n`` matrix product (``options.matmul_size``) in ``dtype`` (median)."""
    n = options.matmul_size
    a = torch.randn(n, n, device=options.device, dtype=dtype)
    b = torch.randn(n, n, device=options.device, dtype=dtype)
    for _ in range(2):
        torch.mm(a, b)
    times = []
    for _ in range(reps):
        sync(options.device)
        start = time.perf_counter()
        torch.mm(a, b)
        sync(options.device)
        times.append(time.perf_counter() - start)
    return n**3 / statistics.median(times) / 1e9


def machine_info(options: BenchmarkOptions) -> dict:
    """The device (CPU or GPU name), threads, torch and Python versions, date and load."""
    info = dict(
        device=options.device,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        python=platform.python_version(),
        platform=platform.platform(),
        date=time.strftime('%Y-%m-%d %H:%M:%S'),
    )
    if torch.device(options.device).type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name()
    else:
        try:
            with open('/proc/cpuinfo') as f:
                info['cpu'] = next(
                    line.split(':', 1)[1].strip() for line in f if line.startswith('model name')
                )
        except (OSError, StopIteration):
            info['cpu'] = platform.processor()
    try:
        info['loadavg'] = os.getloadavg()
    except OSError:
        pass
    return info


# ------------------------------------------------------------------------------ timing
def run_timing(
    entries: List[Entry], size: Size, mode: str, options: BenchmarkOptions
) -> Dict[str, dict]:
    """Times one step of every entry at ``size`` in ``mode``, interleaved.

    All entries are warmed up, then every repetition times each entry once, in an order rotated
    per repetition. On CUDA the caching allocator's peak of each step is recorded too.

    Returns:
        Per entry name: ``times`` (seconds per step, one per repetition), and where measured
        ``compile_s`` (the first call of a compiled model) and ``peak_mib`` (CUDA).
    """
    h, w, batch = size
    x = torch.randn(batch, 3, h, w, device=options.device)
    cuda = torch.device(options.device).type == 'cuda'
    steps, out = {}, {}
    for entry in entries:
        set_mode(entry.model, mode)
        steps[entry.name] = make_step(entry, mode, x, options)
        out[entry.name] = dict(times=[])
    for entry in entries:  # warm-up (the first call includes compilation)
        compiled = entry.compiled is not None
        for i in range(max(options.warmup, 1 if compiled else 0)):
            sync(options.device)
            start = time.perf_counter()
            steps[entry.name]()
            sync(options.device)
            if i == 0 and compiled:
                out[entry.name]['compile_s'] = time.perf_counter() - start
    for rep in range(options.reps):
        shift = rep % len(entries)
        for entry in entries[shift:] + entries[:shift]:
            if cuda:
                torch.cuda.reset_peak_memory_stats()
                allocated = torch.cuda.memory_allocated()
            sync(options.device)
            start = time.perf_counter()
            for _ in range(options.iters):
                steps[entry.name]()
            sync(options.device)
            out[entry.name]['times'].append((time.perf_counter() - start) / options.iters)
            if cuda:
                static = sum(
                    t.numel() * t.element_size()
                    for t in list(entry.model.parameters()) + list(entry.model.buffers())
                )
                peak = (
                    torch.cuda.max_memory_allocated()
                    - allocated
                    + static
                    + x.numel() * x.element_size()
                )
                out[entry.name]['peak_mib'] = max(out[entry.name].get('peak_mib', 0), peak / 2**20)
    for entry in entries:
        set_mode(entry.model, 'infer')
    return out
