"""The general benchmark: :func:`run` measures (:func:`~.measure.measure`), prints the table
(:func:`print_table`), the compile times and the cost growth, and writes the JSON file."""

from __future__ import annotations

import json
import os
import sys
from typing import Dict, List

import torch

from .measure import measure
from .options import BenchmarkOptions


def save_results(path: str, record: dict) -> None:
    """Writes a run's ``record`` as indented JSON to ``path`` (its folder is created)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(record, f, indent=2)


def print_table(rows: List[dict]) -> None:
    """The rows of :func:`~.measure.measure` as an aligned text table."""
    header = [
        'model',
        'size',
        'batch',
        'mode',
        'img/s',
        'ms/img',
        'peak MiB',
        'GMAC/img',
        'GMAC/s',
        '% mm',
        'vs baseline (img/s ratio; peak-memory ratio)',
    ]
    table = []
    for r in rows:

        def f(v, fmt):
            return '-' if v is None else format(v, fmt)

        ratios = (
            '; '.join(
                f'{b} {v["throughput"]:.2f}x thr, '
                + (f'{v["memory"]:.2f}x mem' if v.get('memory') else '- mem')
                for b, v in r['vs'].items()
            )
            or '-'
        )
        table.append(
            [
                r['model'],
                r['size'],
                str(r['batch']),
                r['mode'],
                f(r['img_s'], '.2f'),
                f(r['ms_img'], '.1f'),
                f(r['peak_mib'], '.0f'),
                f(r['gmac_img'], '.2f'),
                f(r['gmac_s'], '.1f'),
                f(r['pct_mm'], '.0f'),
                ratios,
            ]
        )
    widths = [max(len(c) for c in col) for col in zip(header, *table)]
    line = '  '.join('{:<%d}' % w for w in widths)
    print(line.format(*header))
    print('  '.join('-' * w for w in widths))
    for row in table:
        print(line.format(*row))


def cost_growth(rows: List[dict]) -> Dict[str, float]:
    """time(1024x2048) / time(512x1024) per model, mode and batch measured at both sizes."""
    growth = {}
    for r in rows:
        if r['size'] == '1024x2048':
            small = [
                s
                for s in rows
                if s['size'] == '512x1024'
                and s['model'] == r['model']
                and s['mode'] == r['mode']
                and s['batch'] == r['batch']
            ]
            if small:
                growth[f'{r["model"]} {r["mode"]} @{r["batch"]}'] = r['ms_img'] / small[0]['ms_img']
    return growth


def run(options: BenchmarkOptions) -> List[dict]:
    """:func:`~.measure.measure`, then prints the table (and writes ``options.out``); returns
    the rows.

    Args:
        options: What to measure.
    """
    info, rows = measure(options)
    cpu = torch.device(options.device).type == 'cpu'
    names = list(dict.fromkeys(r['model'] for r in rows))
    print(
        f'\nmatmul {options.matmul_size}x{options.matmul_size} {options.dtype}: '
        f'{info["matmul_gmac_s"]:.1f} GMAC/s'
    )
    print_table(rows)
    if options.compile or options.compile_vs_eager:
        print(
            '\ncompile time (first call, s): '
            + ', '.join(
                f'{r["model"]} {r["size"]}@{r["batch"]} {r["mode"]} {r["compile_s"]:.1f}'
                for r in rows
                if r['compile_s'] is not None
            )
        )
    growth = cost_growth(rows)
    if growth:
        print('\ncost growth, time(1024x2048) / time(512x1024) (4x the pixels; 4.0 = linear):')
        for key, value in growth.items():
            print(f'  {key}: {value:.2f}')
    print(
        '\nimg/s, ms/img: median over repetitions. peak MiB: '
        + (
            'torch.cuda.max_memory_allocated during a step + weights + input'
            if not cpu
            else 'RSS high-water mark of a fresh process running one step, minus its RSS after '
            'imports (weights + input + step)'
        )
        + '. GMAC/img: forward MACs per image; GMAC/s and % mm: achieved MAC rate (train = 3x '
        'forward MACs) and its fraction of the 2048x2048 matmul rate.'
    )
    if options.out:
        save_results(
            options.out,
            dict(
                machine=info,
                args=dict(
                    models=names,
                    sizes=[list(s) for s in options.size_batches],
                    modes=options.modes,
                    dtype=options.dtype,
                    compile=options.compile,
                    compile_vs_eager=options.compile_vs_eager,
                    with_cp=options.with_cp,
                    warmup=options.warmup,
                    reps=options.reps,
                    iters=options.iters,
                    whole_model=options.whole_model,
                    argv=sys.argv[1:],
                ),
                results=rows,
                growth=growth,
            ),
        )
    return rows
