"""Throughput, peak memory and achieved MAC rate of SG-Former and its baselines, side by side.

The library behind ``tools/analysis_tools/benchmark.py`` (its command line documents the flags;
the functions here take its parsed options, an ``argparse.Namespace`` completed by
:func:`resolve_options`). :func:`run` measures and prints the general table,
:func:`issue_table` the fixed set of comparisons of the speed targets (see
``docs/benchmark.md``).

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


# ------------------------------------------------------------------------------- options
def parse_size(text: str, default_batches: List[int]) -> List[Tuple[int, int, int]]:
    """``HxW`` (every batch of ``default_batches``), ``HxW@B[,B...]`` or a single ``S``
    (square) as ``(H, W, batch)`` triples."""
    size, _, batch = text.partition('@')
    h, _, w = size.lower().partition('x')
    h, w = int(h), int(w or h)
    batches = [int(b) for b in batch.split(',')] if batch else default_batches
    return [(h, w, b) for b in batches]


def resolve_options(args: argparse.Namespace) -> argparse.Namespace:
    """Completes the command line's options in place: ``size_batches`` (with ``--growth``'s
    sizes), ``custom_archs`` and ``threads`` (default: the CPUs this process may use)."""
    sizes = list(args.sizes)
    if args.growth:
        for extra in ('512x1024', '1024x2048'):
            if not any(s.partition('@')[0] == extra for s in sizes):
                sizes.append(extra)
    args.size_batches = [tuple(sb) for s in sizes for sb in parse_size(s, args.batch_sizes)]
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
            if name in OFFICIAL_MODELS:
                model, with_cp = build_official(name, args.official), False
            else:
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


OFFICIAL_MODELS = dict(official_sgformer_s='s', official_sgformer_m='m', official_sgformer_b='b')
"""Model names built from the official implementation (``--official PATH``), with their arch."""


class OfficialFeatures(torch.nn.Module):
    """The official SG-Former without its classifier: returns ``(pooled features,)``.

    Its ``forward_features`` runs every stage with the stage norms (as our backbone does) and
    pools the last one; the classifier is an identity (``num_classes=0``).

    Args:
        net: The official model.
    """

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        return (self.net.forward_features(x),)


def build_official(name: str, folder: Optional[str]) -> torch.nn.Module:
    """The official implementation's model ``name`` (see ``OFFICIAL_MODELS``), randomly
    initialised, imported from ``folder`` by :func:`mmsgformer.testing.reference.import_official`
    (nothing of it is part of this project; it is only timed next to ours)."""
    if not folder:
        raise ValueError(f'{name} is the official implementation: pass --official PATH, a folder '
                         f'with the official sgformer.py and pos_embed.py (a clone of '
                         f'github.com/OliverRensu/SG-Former)')
    from mmsgformer.testing.reference import build_official as build, import_official
    return OfficialFeatures(build(import_official(folder), OFFICIAL_MODELS[name], num_classes=0))


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
    """Runs one step in this (fresh) process and reports its memory (see the module doc).

    Args:
        spec: ``options`` (the benchmark's options as a dict), ``name``, ``size`` ``(H, W, B)``
            and ``mode`` of the step.
    """
    args = argparse.Namespace(**spec['options'])
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    # import every library a model may need first, so that the baseline covers the code
    names = args.models or DEFAULT_MODELS
    for lib in required_libraries(names) + (['timm'] if set(names) & set(OFFICIAL_MODELS) else []):
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


def measure_memory_cpu(name: str, size, mode: str, args) -> Optional[dict]:
    """:func:`memory_child` of one step of model ``name`` in a fresh Python process; None (and
    the child's error on stderr) if it failed."""
    spec = dict(options=vars(args), name=name, size=list(size), mode=mode)
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [package_root] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
    cmd = [sys.executable, '-m', 'mmsgformer.analysis.benchmark', json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith('MEMORY '):
            return json.loads(line[len('MEMORY '):])
    print(f'  memory of {name} {size} {mode} failed:\n{proc.stderr[-2000:]}',
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


def measure(args: argparse.Namespace) -> Tuple[dict, List[dict]]:
    """Times every model at every size and mode (interleaved), measures peak memory and MACs.

    Args:
        args: The command line's options, completed by :func:`resolve_options`.

    Returns:
        The machine's description (with its matmul rate) and one row per (model, size, batch,
        mode): ``img_s``, ``ms_img``, ``times_s``, ``peak_mib``, ``step_mib``, ``gmac_img``,
        ``gmac_s``, ``pct_mm``, ``vs`` (ratios to the row's baselines) and more.
    """
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
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
                        memory[(entry.name, size, mode)] = measure_memory_cpu(
                            entry.name, size, mode, args)
        print(f'  memory measured in {time.time() - start:.0f} s', flush=True)

    macs = {}
    if not args.no_macs:
        start = time.time()
        for (h, w, _) in {(s[0], s[1], 0) for s in args.size_batches}:
            for entry in entries:
                if entry.eager_name not in OFFICIAL_MODELS:  # the same network as ours
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
    return info, rows


def run(args: argparse.Namespace) -> List[dict]:
    """:func:`measure`, then prints the table (and writes ``args.out``); returns the rows.

    Args:
        args: The command line's options, completed by :func:`resolve_options`.
    """
    info, rows = measure(args)
    cpu = torch.device(args.device).type == 'cpu'
    names = list(dict.fromkeys(r['model'] for r in rows))
    print(f'\nmatmul {args.matmul_size}x{args.matmul_size} {args.dtype}: '
          f'{info["matmul_gmac_s"]:.1f} GMAC/s')
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
    return rows


# ---------------------------------------------------------------------------- issue table
ISSUE_SIZES = dict(small=(224, 224, 8), large=(800, 1216, 1), memory=(800, 1333, 1))
"""(H, W, batch) of :func:`issue_table`'s runs: inference at ``small`` and ``large``, one
training step at ``memory``."""

ISSUE_TARGETS = (
    ('ours / official implementation, {model}, {small}, inference', 'official', 1.3, '>='),
    ('{model} / {base}, {small}, inference', 'small', 1.0, '>='),
    ('{model} / {base}, {large}, inference', 'large', 0.5, '>='),
    ('{model} at {small} as a fraction of the fp32 matmul rate', 'matmul', 0.8, '>='),
    ('extra peak memory of a training step at {memory}, {model} / {base}', 'memory', 1.0, '<='),
)
"""The rows of :func:`issue_table`: label, key, target and direction (issue 13's targets)."""


def _size_text(size: Tuple[int, int, int]) -> str:
    return f'{size[0]}x{size[1]}@{size[2]}'


def _part(args: argparse.Namespace, models: List[str], size: Tuple[int, int, int],
          mode: str, macs: bool) -> Dict[str, dict]:
    """:func:`measure` of ``models`` at one size and mode (no memory), rows by model name."""
    part = argparse.Namespace(**vars(args))
    part.models, part.size_batches, part.modes = models, [size], [mode]
    part.no_memory, part.no_macs, part.whole_model = True, not macs, None
    part.compile = part.compile_vs_eager = False
    return {r['model']: r for r in measure(part)[1]}


def _ratio(a: Optional[float], b: Optional[float], text: str) -> Tuple[Optional[float], str]:
    return (a / b, text.format(a, b)) if a and b else (None, 'not measured')


def issue_table(args: argparse.Namespace) -> List[dict]:
    """Measures and prints the comparisons of the speed targets (issue 13), all in one process.

    * ``args.issue_model`` (SG-Former-S) against the official implementation of the same arch
      (``args.official``, a folder with the official code; skipped without it) and against
      ``args.issue_baseline`` (mmdet's Swin-T by default), and its fraction of the float32
      matmul rate: one interleaved inference run at ``small``;
    * against the baseline: one interleaved inference run at ``large``;
    * extra training memory: one training step at ``memory`` in a fresh process
      per model (CPU only): the RSS high-water mark minus the process's RSS after building the
      model and input (``step_mib``), so weights and input are not counted.

    The three sizes are ``ISSUE_SIZES`` or ``args.issue_sizes`` (three ``HxW@B`` texts). Times
    are medians over ``args.reps`` interleaved repetitions with ``args.threads`` threads; ratios
    compare rows of the same run.

    Args:
        args: The command line's options, completed by :func:`resolve_options`.

    Returns:
        One dict per row: ``label``, ``value`` (None where not measured), ``detail``,
        ``target``, ``met``.
    """
    model, base = args.issue_model, args.issue_baseline
    sizes = dict(ISSUE_SIZES)
    if getattr(args, 'issue_sizes', None):
        sizes = dict(zip(('small', 'large', 'memory'),
                         (parse_size(text, [1])[0] for text in args.issue_sizes)))
    official = [name for name, arch in OFFICIAL_MODELS.items()
                if model == f'sgformer_{arch}'] or ['official_sgformer_s']
    info = machine_info(args)
    print(f'# {info["date"]}  {info.get("cpu") or info.get("gpu")}  device={args.device}  '
          f'threads={args.threads}  float32  torch {info["torch"]}  (issue table)', flush=True)
    small = _part(args, [model, base] + (official if args.official else []),
                  sizes['small'], 'infer', macs=True)
    large = _part(args, [model, base], sizes['large'], 'infer', macs=False)
    step = {}
    if torch.device(args.device).type == 'cpu':
        part = argparse.Namespace(**vars(args))
        part.models, part.whole_model = [model, base], None
        for name in part.models:
            step[name] = (measure_memory_cpu(name, sizes['memory'], 'train', part)
                          or {}).get('step_mib')
    ours = small[model]
    values = dict(
        official=_ratio(ours['img_s'], small[official[0]]['img_s'], 'img/s {:.2f} / {:.2f}')
        if args.official else (None, 'skipped: needs --official PATH'),
        small=_ratio(ours['img_s'], small[base]['img_s'], 'img/s {:.2f} / {:.2f}'),
        large=_ratio(large[model]['img_s'], large[base]['img_s'], 'img/s {:.3f} / {:.3f}'),
        matmul=(None, 'MACs not counted') if ours['pct_mm'] is None else (
            ours['pct_mm'] / 100,
            f'{ours["gmac_s"]:.1f} of {_matmul_rate_of(ours):.1f} GMAC/s'),
        memory=_ratio(step.get(model), step.get(base), '{:.0f} / {:.0f} MiB'))
    texts = {key: _size_text(size) for key, size in sizes.items()}
    rows = []
    for label, key, target, direction in ISSUE_TARGETS:
        value, detail = values[key]
        met = None if value is None else (value >= target if direction == '>=' else
                                          value <= target)
        shown = f'{100 * target:g}%' if key == 'matmul' else f'{target:g}'
        rows.append(dict(label=label.format(model=model, base=base, **texts), value=value,
                         detail=detail, target=f'{direction} {shown}', met=met))
    print(format_issue_table(rows))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(dict(machine=info, argv=sys.argv[1:], issue_table=rows, sizes=sizes,
                           small=small, large=large, step_mib=step), f, indent=2)
    return rows


def _matmul_rate_of(row: dict) -> float:
    """The matmul rate (GMAC/s) a row's ``pct_mm`` was computed against."""
    return row['gmac_s'] * 100 / row['pct_mm']


def format_issue_table(rows: List[dict]) -> str:
    """:func:`issue_table`'s rows as an aligned text table."""
    width = max(len(r['label']) for r in rows)
    lines = [f'\n{"":{width}}  {"measured":>8}  {"target":>7}  met  detail']
    for r in rows:
        value = '-' if r['value'] is None else (f'{100 * r["value"]:.0f}%' if 'fraction' in
                                                r['label'] else f'{r["value"]:.2f}x')
        met = '-' if r['met'] is None else 'yes' if r['met'] else 'no'
        lines.append(f'{r["label"]:{width}}  {value:>8}  {r["target"]:>7}  {met:>3}  '
                     f'{r["detail"]}')
    return '\n'.join(lines)


if __name__ == '__main__':  # a memory subprocess of measure_memory_cpu
    print('MEMORY ' + json.dumps(memory_child(json.loads(sys.argv[1]))), flush=True)
