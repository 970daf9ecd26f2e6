"""Throughput, peak memory and achieved MAC rate of SG-Former and its baselines, side by side.

    python tools/analysis_tools/benchmark.py                       # all defaults (long)
    python tools/analysis_tools/benchmark.py --models sgformer_s swin_t pvtv2_b2 \\
        --sizes 224x224@8 800x1333@1 --modes infer train --threads 2 --reps 3 --out r.json
    python tools/analysis_tools/benchmark.py --whole-model configs/maskrcnn_sgformer_s_coco.py \\
        --sizes 800x1333@1

One run measures every model at every size and mode. For each (size, batch, mode) all models
are warmed up, then every repetition times each model once, in an order rotated per repetition
(machine noise hits all models alike); the reported time is the median over repetitions.

Modes: ``infer`` = eval mode under ``torch.no_grad``, one forward; ``train`` = train mode, one
forward and a backward of the sum of the outputs (backbones: sum of the four feature maps;
whole models: the training loss on synthetic targets). Gradients are set to None before each
step; no optimizer step.

Peak memory: CPU - every (model, size, batch, mode) runs once in a fresh subprocess (after the
timing, not beside it) that reads the kernel's RSS high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs`` after the model and input are built); "peak MiB" = that high-water mark
minus the RSS of the same process after its imports, before building anything, i.e. weights +
input + everything the step allocates (activations, gradients, workspaces, allocator slack).
CUDA - ``torch.cuda.max_memory_allocated`` during one step minus what was allocated before it,
plus the model's parameter, buffer and input bytes (the same quantity, from the caching
allocator's view). ``--compile`` is not applied in the CPU memory subprocesses.

``--compile-vs-eager`` times every model twice in the same interleaved run: eager and
``torch.compile``-d (rows ``NAME+compile``, sharing the eager model's weights), and prints the
compiled rows' ratio to their eager twin (and to the compiled baselines); memory is measured for
the eager rows only.

MACs: counted once per model and size (batch 1, times the batch) by ``complexity.count_macs``
(MMEngine's FlopAnalyzer plus SDPA and broadcasting-matmul handlers; the network's MACs, i.e.
without SG-Former's significance recomputation); cached in ``--macs-cache``. "GMAC/s" = MACs
per image / seconds per image; "% mm" = that divided by the machine's rate for a 2048x2048
matrix product in the benchmark's dtype, measured in the same run (before and after; the
larger is used).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import hashlib
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

import torch

from mmsgformer.analysis.baselines import (BASELINES, DEFAULT_MODELS, build_backbone,
                                           build_from_config, is_sgformer, load_config,
                                           parse_custom, required_libraries, supports_cp,
                                           whole_model_fns)

DEFAULT_SIZES = ['224x224', '512x512', '800x1333', '1024x2048']
DTYPES = dict(float32=torch.float32, bfloat16=torch.bfloat16, float16=torch.float16)


# ------------------------------------------------------------------------------------ args
def parse_size(text: str, default_batches: List[int]) -> List[Tuple[int, int, int]]:
    """``HxW`` (every batch of --batch-sizes), ``HxW@B`` or a single ``S`` (square)."""
    size, _, batch = text.partition('@')
    h, _, w = size.lower().partition('x')
    h, w = int(h), int(w or h)
    batches = [int(b) for b in batch.split(',')] if batch else default_batches
    return [(h, w, b) for b in batches]


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description='SG-Former / Swin / PVTv2 benchmark',
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__)
    p.add_argument('--models', nargs='+', default=None,
                   help=f'backbones (default: {" ".join(DEFAULT_MODELS)})')
    p.add_argument('--custom', nargs='*', metavar='NAME=JSON',
                   help='extra SG-Former archs usable in --models')
    p.add_argument('--whole-model', nargs='+', metavar='CONFIG',
                   help='benchmark whole models built from configs instead of backbones')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='overrides applied to every --whole-model config')
    p.add_argument('--sizes', nargs='+', default=DEFAULT_SIZES,
                   help='HxW or HxW@B[,B...] (default: %(default)s)')
    p.add_argument('--batch-sizes', type=int, nargs='+', default=[1],
                   help='batches for sizes given without @B (default: 1)')
    p.add_argument('--modes', nargs='+', choices=['infer', 'train'], default=['infer', 'train'])
    p.add_argument('--growth', action='store_true',
                   help='add 512x1024 and report time(1024x2048) / time(512x1024)')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--threads', type=int, default=None,
                   help='torch.set_num_threads (default: the CPUs this process may use)')
    p.add_argument('--dtype', choices=list(DTYPES), default='float32',
                   help='autocast dtype (float32: no autocast)')
    p.add_argument('--compile', action='store_true', help='torch.compile every model')
    p.add_argument('--compile-vs-eager', action='store_true',
                   help='time every model eager and compiled (rows NAME+compile) side by side')
    p.add_argument('--compile-mode', default=None,
                   choices=['default', 'reduce-overhead', 'max-autotune',
                            'max-autotune-no-cudagraphs'],
                   help='torch.compile mode (inductor only; reduce-overhead = CUDA graphs)')
    p.add_argument('--compile-backend', default='inductor',
                   help='torch.compile backend (default %(default)s; e.g. aot_eager, eager)')
    p.add_argument('--with-cp', nargs='?', const='sgformer', default='none',
                   choices=['none', 'sgformer', 'all'],
                   help='gradient checkpointing: SG-Former only (bare flag) or all models that '
                        'support it (mmdet PVTv2 does not)')
    p.add_argument('--warmup', type=int, default=1, help='untimed steps per model (default 1)')
    p.add_argument('--reps', type=int, default=3, help='timed repetitions (median; default 3)')
    p.add_argument('--iters', type=int, default=1, help='steps per repetition (default 1)')
    p.add_argument('--no-memory', action='store_true', help='skip the peak-memory measurement')
    p.add_argument('--memory-modes', nargs='+', choices=['infer', 'train'], default=None,
                   help='modes whose CPU peak memory is measured (default: all of --modes)')
    p.add_argument('--no-macs', action='store_true', help='skip MAC counting')
    p.add_argument('--macs-cache', default=os.path.join('work_dirs', 'benchmark_macs.json'),
                   help='JSON cache of MAC counts ("" disables; default %(default)s)')
    p.add_argument('--matmul-size', type=int, default=2048,
                   help='side of the square matrix product giving the machine rate (default '
                        '2048; smaller only for quick checks)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', help='write all results as JSON')
    p.add_argument('--memory-child', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.whole_model and args.models:
        p.error('--models and --whole-model are exclusive')
    if args.compile and args.compile_vs_eager:
        p.error('--compile (compiled only) and --compile-vs-eager (both) are exclusive')
    if args.compile_mode and args.compile_backend != 'inductor':
        p.error(f'--compile-mode applies to the inductor backend only, not '
                f'{args.compile_backend!r}')
    sizes = list(args.sizes)
    if args.growth:
        if not any(s.partition('@')[0] == '512x1024' for s in sizes):
            sizes.append('512x1024')
        if not any(s.partition('@')[0] == '1024x2048' for s in sizes):
            sizes.append('1024x2048')
    args.size_batches = [sb for s in sizes for sb in parse_size(s, args.batch_sizes)]
    args.custom_archs = parse_custom(args.custom)
    if args.threads is None:
        args.threads = (len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
                        else os.cpu_count())
    return args


# ---------------------------------------------------------------------------------- models
def compile_fn(fn, args):
    """``torch.compile`` with the command line's backend and mode, static shapes."""
    return torch.compile(fn, dynamic=False, backend=args.compile_backend, mode=args.compile_mode)


class Entry:
    """One benchmarked model: its module and the per-mode step functions."""

    def __init__(self, name: str, args, model=None, task: Optional[str] = None) -> None:
        self.eager_name = name  # the model's name (without COMPILED for a compiled twin)
        self.name = name
        self.task = task
        self.args = args
        if model is None:
            with_cp = (args.with_cp == 'all' or
                       args.with_cp == 'sgformer' and is_sgformer(name, args.custom_archs))
            model = build_backbone(name, args.custom_archs, with_cp=with_cp)
            self.with_cp = with_cp and supports_cp(name)
        else:
            self.with_cp = False
        self.model = model.to(args.device)
        self.compiled = compile_fn(self.model, args) if args.compile else None

    def compiled_twin(self) -> 'Entry':
        """The same model (shared weights) timed through ``torch.compile``."""
        twin = copy.copy(self)
        twin.name = self.name + COMPILED
        twin.compiled = compile_fn(self.model, self.args)
        return twin

    def callables(self, batch: int, hw: Tuple[int, int]):
        """``(infer, loss)`` of an input batch."""
        if self.task is None:
            fn = self.model if self.compiled is None else self.compiled

            def loss(x):
                return sum(o.float().sum() for o in fn(x))
            return fn, loss
        infer, loss = whole_model_fns(self.model, self.task, batch, hw)
        if self.compiled is not None:  # compile the network inside (backbone etc. stay eager)
            infer, loss = compile_fn(infer, self.args), compile_fn(loss, self.args)
        return infer, loss


def autocast_ctx(args):
    if args.dtype == 'float32':
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(args.device).type, dtype=DTYPES[args.dtype])


def make_step(entry: Entry, mode: str, x: torch.Tensor, args):
    """A function running one inference or training step of ``entry`` on ``x``."""
    infer, loss = entry.callables(x.shape[0], tuple(x.shape[-2:]))
    model = entry.model
    if mode == 'infer':
        def step():
            with torch.no_grad(), autocast_ctx(args):
                infer(x)
    else:
        def step():
            for p in model.parameters():
                p.grad = None
            with autocast_ctx(args):
                value = loss(x)
            value.backward()
    return step


def set_mode(model, mode: str) -> None:
    model.train(mode == 'train')  # mmdet's Swin.train() returns None: no chaining


def sync(device: str) -> None:
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------ machine
def matmul_rate(args, dtype: torch.dtype, reps: int = 5) -> float:
    """GMAC/s of an ``n x n`` matrix product (``--matmul-size``) in ``dtype`` (median)."""
    n = args.matmul_size
    a = torch.randn(n, n, device=args.device, dtype=dtype)
    b = torch.randn(n, n, device=args.device, dtype=dtype)
    for _ in range(2):
        torch.mm(a, b)
    times = []
    for _ in range(reps):
        sync(args.device)
        start = time.perf_counter()
        torch.mm(a, b)
        sync(args.device)
        times.append(time.perf_counter() - start)
    return n ** 3 / statistics.median(times) / 1e9


def machine_info(args) -> dict:
    info = dict(device=args.device, threads=torch.get_num_threads(), torch=torch.__version__,
                python=platform.python_version(), platform=platform.platform(),
                date=time.strftime('%Y-%m-%d %H:%M:%S'))
    if torch.device(args.device).type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name()
    else:
        try:
            with open('/proc/cpuinfo') as f:
                info['cpu'] = next(line.split(':', 1)[1].strip() for line in f
                                   if line.startswith('model name'))
        except (OSError, StopIteration):
            info['cpu'] = platform.processor()
    try:
        info['loadavg'] = os.getloadavg()
    except OSError:
        pass
    return info


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
        x = torch.randn(1, 3, h, w, device=entry.args.device)
        if entry.task is None:
            result = count_macs(entry.model, (x,))
        else:
            infer, _ = whole_model_fns(entry.model, entry.task, 1, (h, w))
            result = count_macs(entry.model, (x,), fn=infer)
        cache[key] = result['macs']
    return cache[key]


# ------------------------------------------------------------------------------- memory
def _status_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise KeyError(field)


def memory_child(spec: dict) -> dict:
    """Runs one step in this (fresh) process and reports its memory (see the module doc)."""
    args = parse_args(spec['argv'])
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    # import every library a model may need first, so that the baseline covers the code
    for lib in required_libraries(args.models or DEFAULT_MODELS):
        importlib.import_module(lib)
    import mmsgformer.models  # noqa: F401
    if args.whole_model:
        import mmpretrain.models  # noqa: F401
        import mmseg.models  # noqa: F401
    gc.collect()
    base_kib = _status_kib('VmRSS')
    entry = build_entries(args, only=spec['name'])[0]
    h, w, batch = spec['size']
    x = torch.randn(batch, 3, h, w, device=args.device)
    set_mode(entry.model, spec['mode'])
    step = make_step(entry, spec['mode'], x, args)
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
    return dict(peak_mib=(peak_kib - base_kib) / 1024, step_mib=(peak_kib - before_kib) / 1024,
                hwm_reset=exact)


def measure_memory_cpu(entry: Entry, size, mode: str, args) -> Optional[dict]:
    argv = [a for a in sys.argv[1:]]
    spec = dict(argv=argv, name=entry.name, size=list(size), mode=mode)
    cmd = [sys.executable, os.path.abspath(__file__), '--memory-child', json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith('MEMORY '):
            return json.loads(line[len('MEMORY '):])
    print(f'  memory of {entry.name} {size} {mode} failed:\n{proc.stderr[-2000:]}',
          file=sys.stderr)
    return None


# ------------------------------------------------------------------------------ timing
COMPILED = '+compile'
"""Name suffix of the compiled twins of ``--compile-vs-eager``."""


def build_entries(args, only: Optional[str] = None) -> List[Entry]:
    """The models to time; ``only`` (a memory subprocess) builds that one eager model."""
    entries = []
    if args.whole_model:
        for config in args.whole_model:
            name = os.path.splitext(os.path.basename(config))[0]
            if only is not None and name != only:
                continue
            model, task = build_from_config(load_config(config, args.cfg_options))
            entries.append(Entry(name, args, model=model, task=task))
    else:
        for name in args.models or DEFAULT_MODELS:
            if only is None or name == only:
                entries.append(Entry(name, args))
    if args.compile_vs_eager and only is None:
        entries = [twin for entry in entries for twin in (entry, entry.compiled_twin())]
    return entries


def run_timing(entries: List[Entry], size, mode: str, args) -> Dict[str, dict]:
    h, w, batch = size
    x = torch.randn(batch, 3, h, w, device=args.device)
    cuda = torch.device(args.device).type == 'cuda'
    steps, out = {}, {}
    for entry in entries:
        set_mode(entry.model, mode)
        steps[entry.name] = make_step(entry, mode, x, args)
        out[entry.name] = dict(times=[])
    for entry in entries:  # warm-up (the first call includes compilation)
        compiled = entry.compiled is not None
        for i in range(max(args.warmup, 1 if compiled else 0)):
            sync(args.device)
            start = time.perf_counter()
            steps[entry.name]()
            sync(args.device)
            if i == 0 and compiled:
                out[entry.name]['compile_s'] = time.perf_counter() - start
    for rep in range(args.reps):
        shift = rep % len(entries)
        for entry in entries[shift:] + entries[:shift]:
            if cuda:
                torch.cuda.reset_peak_memory_stats()
                allocated = torch.cuda.memory_allocated()
            sync(args.device)
            start = time.perf_counter()
            for _ in range(args.iters):
                steps[entry.name]()
            sync(args.device)
            out[entry.name]['times'].append((time.perf_counter() - start) / args.iters)
            if cuda:
                static = sum(t.numel() * t.element_size() for t in
                             list(entry.model.parameters()) + list(entry.model.buffers()))
                peak = (torch.cuda.max_memory_allocated() - allocated + static
                        + x.numel() * x.element_size())
                out[entry.name]['peak_mib'] = max(out[entry.name].get('peak_mib', 0),
                                                  peak / 2 ** 20)
    for entry in entries:
        set_mode(entry.model, 'infer')
    return out


# ------------------------------------------------------------------------------- report
def baseline_names(name: str, names: List[str]) -> List[str]:
    """What a row is compared with: an SG-Former's baselines; a compiled twin's eager model
    (and, for an SG-Former, the compiled baselines)."""
    if name.endswith(COMPILED):
        eager = name[:-len(COMPILED)]
        return [eager] + [b + COMPILED for b in BASELINES.get(eager, []) if b + COMPILED in names]
    return [b for b in BASELINES.get(name, []) if b in names]


def print_table(rows: List[dict]) -> None:
    header = ['model', 'size', 'batch', 'mode', 'img/s', 'ms/img', 'peak MiB', 'GMAC/img',
              'GMAC/s', '% mm', 'vs baseline (img/s ratio; peak-memory ratio)']
    table = []
    for r in rows:
        def f(v, fmt):
            return '-' if v is None else format(v, fmt)
        ratios = '; '.join(f'{b} {v["throughput"]:.2f}x thr, '
                           + (f'{v["memory"]:.2f}x mem' if v.get('memory') else '- mem')
                           for b, v in r['vs'].items()) or '-'
        table.append([r['model'], r['size'], str(r['batch']), r['mode'],
                      f(r['img_s'], '.2f'), f(r['ms_img'], '.1f'), f(r['peak_mib'], '.0f'),
                      f(r['gmac_img'], '.2f'), f(r['gmac_s'], '.1f'),
                      f(r['pct_mm'], '.0f'), ratios])
    widths = [max(len(c) for c in col) for col in zip(header, *table)]
    line = '  '.join('{:<%d}' % w for w in widths)
    print(line.format(*header))
    print('  '.join('-' * w for w in widths))
    for row in table:
        print(line.format(*row))


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.memory_child:
        print('MEMORY ' + json.dumps(memory_child(json.loads(args.memory_child))), flush=True)
        return
    if args.compile or args.compile_vs_eager:
        import torch._dynamo.config as dynamo_config
        dynamo_config.cache_size_limit = 256
    cpu = torch.device(args.device).type == 'cpu'
    info = machine_info(args)
    info['matmul_gmac_s_float32_before'] = matmul_rate(args, torch.float32)
    if args.dtype != 'float32':
        info[f'matmul_gmac_s_{args.dtype}_before'] = matmul_rate(args, DTYPES[args.dtype])
    compile_info = 'vs-eager' if args.compile_vs_eager else str(args.compile)
    if args.compile or args.compile_vs_eager:
        compile_info += f' ({args.compile_backend}, mode {args.compile_mode or "default"})'
    print(f'# {info["date"]}  {info.get("cpu") or info.get("gpu")}  device={args.device}  '
          f'threads={info["threads"]}  dtype={args.dtype}  compile={compile_info}  '
          f'with_cp={args.with_cp}  torch {info["torch"]}', flush=True)

    entries = build_entries(args)
    names = [e.name for e in entries]
    cache = {}
    if not args.no_macs and args.macs_cache and os.path.isfile(args.macs_cache):
        with open(args.macs_cache) as f:
            cache = json.load(f)

    timings = {}
    for size in args.size_batches:
        for mode in args.modes:
            start = time.time()
            timings[(size, mode)] = run_timing(entries, size, mode, args)
            print(f'  timed {size[0]}x{size[1]}@{size[2]} {mode} in '
                  f'{time.time() - start:.0f} s', flush=True)

    info['matmul_gmac_s_float32_after'] = matmul_rate(args, torch.float32)
    rate_key = f'matmul_gmac_s_{args.dtype}'
    if args.dtype != 'float32':
        info[rate_key + '_after'] = matmul_rate(args, DTYPES[args.dtype])
    mm_rate = max(info[rate_key + '_before'], info[rate_key + '_after'])
    info['matmul_gmac_s'] = mm_rate

    memory = {}
    if cpu and not args.no_memory:
        start = time.time()
        for size in args.size_batches:
            for mode in args.memory_modes or args.modes:
                if mode not in args.modes:
                    continue
                for entry in entries:
                    if entry.name == entry.eager_name:
                        memory[(entry.name, size, mode)] = measure_memory_cpu(entry, size,
                                                                              mode, args)
        print(f'  memory measured in {time.time() - start:.0f} s', flush=True)

    macs = {}
    if not args.no_macs:
        start = time.time()
        for (h, w, _) in {(s[0], s[1], 0) for s in args.size_batches}:
            for entry in entries:
                macs[(entry.name, h, w)] = count_entry_macs(entry, h, w, cache)
        if args.macs_cache:
            os.makedirs(os.path.dirname(args.macs_cache) or '.', exist_ok=True)
            with open(args.macs_cache, 'w') as f:
                json.dump(cache, f, indent=1)
        print(f'  MACs counted in {time.time() - start:.0f} s', flush=True)

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
            rows.append(dict(
                model=entry.name, size=f'{h}x{w}', batch=batch, mode=mode, img_s=1 / sec_img,
                ms_img=sec_img * 1e3, times_s=r['times'], peak_mib=peak,
                step_mib=mem.get('step_mib'), compile_s=r.get('compile_s'),
                gmac_img=None if mac is None else mac / 1e9,
                gmac_s=None if step_macs is None else step_macs / sec_img / 1e9,
                pct_mm=None if step_macs is None else 100 * step_macs / sec_img / 1e9 / mm_rate,
                with_cp=entry.with_cp, vs={}))
    index = {(r['model'], r['size'], r['batch'], r['mode']): r for r in rows}
    for r in rows:
        for base in baseline_names(r['model'], names):
            b = index[(base, r['size'], r['batch'], r['mode'])]
            r['vs'][base] = dict(
                throughput=r['img_s'] / b['img_s'],
                memory=(r['peak_mib'] / b['peak_mib']
                        if r['peak_mib'] and b['peak_mib'] else None))

    print(f'\nmatmul {args.matmul_size}x{args.matmul_size} {args.dtype}: {mm_rate:.1f} GMAC/s')
    print_table(rows)
    if args.compile or args.compile_vs_eager:
        print('\ncompile time (first call, s): ' + ', '.join(
            f'{r["model"]} {r["size"]}@{r["batch"]} {r["mode"]} {r["compile_s"]:.1f}'
            for r in rows if r['compile_s'] is not None))
    growth = {}
    for r in rows:
        if r['size'] == '1024x2048':
            small = [s for s in rows if s['size'] == '512x1024' and s['model'] == r['model']
                     and s['mode'] == r['mode'] and s['batch'] == r['batch']]
            if small:
                growth[f'{r["model"]} {r["mode"]} @{r["batch"]}'] = r['ms_img'] / small[0]['ms_img']
    if growth:
        print('\ncost growth, time(1024x2048) / time(512x1024) (4x the pixels; 4.0 = linear):')
        for key, value in growth.items():
            print(f'  {key}: {value:.2f}')
    print('\nimg/s, ms/img: median over repetitions. peak MiB: ' +
          ('torch.cuda.max_memory_allocated during a step + weights + input' if not cpu else
           'RSS high-water mark of a fresh process running one step, minus its RSS after '
           'imports (weights + input + step)') +
          '. GMAC/img: forward MACs per image; GMAC/s and % mm: achieved MAC rate (train = 3x '
          'forward MACs) and its fraction of the 2048x2048 matmul rate.')
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(dict(machine=info, args=dict(
                models=names, sizes=[list(s) for s in args.size_batches], modes=args.modes,
                dtype=args.dtype, compile=args.compile,
                compile_vs_eager=args.compile_vs_eager, with_cp=args.with_cp,
                warmup=args.warmup, reps=args.reps, iters=args.iters,
                whole_model=args.whole_model, argv=sys.argv[1:]),
                results=rows, growth=growth), f, indent=2)


if __name__ == '__main__':
    main()
