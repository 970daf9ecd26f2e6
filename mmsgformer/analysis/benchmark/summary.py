"""The summary table: SG-Former against the official implementation and against Swin-T, its
share of the machine's matrix-product rate and its training memory, all measured in one process.

:func:`run_summary` measures the runs (:func:`measure_summary_runs`) and compares them
(:func:`compare`): one row per entry of :data:`COMPARISONS`, each saying what is compared, its
target and how its value is read off the runs. A new comparison is a new entry there; one that
needs a measurement of its own adds it to :class:`SummaryRuns` and
:func:`measure_summary_runs`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch

from .measure import measure
from .memory import measure_memory_cpu
from .models import OFFICIAL_MODELS
from .options import BenchmarkOptions, Size, parse_size, size_text
from .report import save_results
from .timing import machine_info

SUMMARY_SIZES = dict(small=(224, 224, 8), large=(800, 1216, 1), memory=(800, 1333, 1))
"""(H, W, batch) of the summary's runs: inference at ``small`` and ``large``, one training step
at ``memory``."""


@dataclass
class SummaryRuns:
    """What the summary measured: rows of :func:`~.measure.measure` by model name.

    Args:
        model: The SG-Former compared.
        baseline: The baseline it is compared with (Swin-T).
        official: The official implementation's model of the same arch, None when not measured.
        sizes: ``small``, ``large`` and ``memory`` sizes.
        small: Inference at ``small`` of the model, the baseline and the official model, one
            interleaved run with MACs counted.
        large: Inference at ``large`` of the model and the baseline, one interleaved run.
        step_mib: Extra peak memory of one training step at ``memory`` (CPU only).
    """

    model: str
    baseline: str
    official: Optional[str]
    sizes: Dict[str, Size]
    small: Dict[str, dict]
    large: Dict[str, dict] = field(default_factory=dict)
    step_mib: Dict[str, Optional[float]] = field(default_factory=dict)


Value = Tuple[Optional[float], str]
"""A comparison's value (None where not measured) and the detail shown beside it."""


@dataclass(frozen=True)
class Comparison:
    """One row of the summary.

    Args:
        label: What is compared; formatted with ``model``, ``base`` and the ``small``,
            ``large`` and ``memory`` sizes.
        target: The value aimed at.
        direction: ``'>='`` or ``'<='``: how the value must compare with the target.
        value: Reads the value off the runs.
        percent: Show value and target as percentages.
    """

    label: str
    target: float
    direction: str
    value: Callable[[SummaryRuns], Value]
    percent: bool = False


def _ratio(a: Optional[float], b: Optional[float], text: str) -> Value:
    return (a / b, text.format(a, b)) if a and b else (None, 'not measured')


def _matmul_rate_of(row: dict) -> float:
    """The matmul rate (GMAC/s) a row's ``pct_mm`` was computed against."""
    return row['gmac_s'] * 100 / row['pct_mm']


def ours_vs_official(runs: SummaryRuns) -> Value:
    if runs.official is None:
        return None, 'skipped: needs --official PATH'
    return _ratio(
        runs.small[runs.model]['img_s'], runs.small[runs.official]['img_s'], 'img/s {:.2f} / {:.2f}'
    )


def throughput_vs_baseline(size: str, text: str) -> Callable[[SummaryRuns], Value]:
    """The throughput ratio model / baseline of the ``size`` run (``'small'`` or ``'large'``)."""

    def value(runs: SummaryRuns) -> Value:
        rows = getattr(runs, size)
        return _ratio(rows[runs.model]['img_s'], rows[runs.baseline]['img_s'], text)

    return value


def matmul_share(runs: SummaryRuns) -> Value:
    ours = runs.small[runs.model]
    if ours['pct_mm'] is None:
        return None, 'MACs not counted'
    return ours['pct_mm'] / 100, f'{ours["gmac_s"]:.1f} of {_matmul_rate_of(ours):.1f} GMAC/s'


def training_memory(runs: SummaryRuns) -> Value:
    return _ratio(
        runs.step_mib.get(runs.model), runs.step_mib.get(runs.baseline), '{:.0f} / {:.0f} MiB'
    )


COMPARISONS = (
    Comparison(
        'ours / official implementation, {model}, {small}, inference', 1.3, '>=', ours_vs_official
    ),
    Comparison(
        '{model} / {base}, {small}, inference',
        1.0,
        '>=',
        throughput_vs_baseline('small', 'img/s {:.2f} / {:.2f}'),
    ),
    Comparison(
        '{model} / {base}, {large}, inference',
        0.5,
        '>=',
        throughput_vs_baseline('large', 'img/s {:.3f} / {:.3f}'),
    ),
    Comparison(
        '{model} at {small} as a fraction of the fp32 matmul rate',
        0.8,
        '>=',
        matmul_share,
        percent=True,
    ),
    Comparison(
        'extra peak memory of a training step at {memory}, {model} / {base}',
        1.0,
        '<=',
        training_memory,
    ),
)
"""The rows of the summary, in order."""


def _part(
    options: BenchmarkOptions, models: List[str], size: Size, mode: str, macs: bool
) -> Dict[str, dict]:
    """:func:`~.measure.measure` of ``models`` at one size and mode (no memory), rows by model
    name."""
    part = options.replace(
        models=models,
        sizes=[size_text(size)],
        batch_sizes=[1],
        growth=False,
        modes=[mode],
        no_memory=True,
        no_macs=not macs,
        whole_model=None,
        compile=False,
        compile_vs_eager=False,
    )
    return {r['model']: r for r in measure(part)[1]}


def summary_sizes(options: BenchmarkOptions) -> Dict[str, Size]:
    """:data:`SUMMARY_SIZES`, or ``options.summary_sizes`` (three ``HxW@B`` texts)."""
    if options.summary_sizes:
        return dict(
            zip(
                ('small', 'large', 'memory'),
                (parse_size(text, [1])[0] for text in options.summary_sizes),
            )
        )
    return dict(SUMMARY_SIZES)


def measure_summary_runs(options: BenchmarkOptions) -> SummaryRuns:
    """The runs of the summary, in this process (memory: one fresh subprocess per model)."""
    model, base = options.summary_model, options.summary_baseline
    sizes = summary_sizes(options)
    official = [name for name, arch in OFFICIAL_MODELS.items() if model == f'sgformer_{arch}'] or [
        'official_sgformer_s'
    ]
    runs = SummaryRuns(
        model,
        base,
        official[0] if options.official else None,
        sizes,
        small=_part(
            options,
            [model, base] + (official if options.official else []),
            sizes['small'],
            'infer',
            macs=True,
        ),
    )
    runs.large = _part(options, [model, base], sizes['large'], 'infer', macs=False)
    if torch.device(options.device).type == 'cpu':
        part = options.replace(models=[model, base], whole_model=None)
        for name in part.models:
            runs.step_mib[name] = (
                measure_memory_cpu(name, sizes['memory'], 'train', part) or {}
            ).get('step_mib')
    return runs


def compare(runs: SummaryRuns) -> List[dict]:
    """One row per entry of :data:`COMPARISONS`: ``label``, ``value`` (None where not
    measured), ``detail``, ``target``, ``met`` (None where not measured), ``percent``."""
    texts = {key: size_text(size) for key, size in runs.sizes.items()}
    rows = []
    for comparison in COMPARISONS:
        value, detail = comparison.value(runs)
        target, direction = comparison.target, comparison.direction
        met = None if value is None else (value >= target if direction == '>=' else value <= target)
        shown = f'{100 * target:g}%' if comparison.percent else f'{target:g}'
        rows.append(
            dict(
                label=comparison.label.format(model=runs.model, base=runs.baseline, **texts),
                value=value,
                detail=detail,
                target=f'{direction} {shown}',
                met=met,
                percent=comparison.percent,
            )
        )
    return rows


def run_summary(options: BenchmarkOptions) -> List[dict]:
    """Measures and prints the summary table, all in one process.

    * ``options.summary_model`` (SG-Former-S) against the official implementation of the same
      arch (``options.official``, a folder with the official code; skipped without it) and
      against ``options.summary_baseline`` (mmdet's Swin-T by default), and its fraction of the
      float32 matmul rate: one interleaved inference run at ``small``;
    * against the baseline: one interleaved inference run at ``large``;
    * extra training memory: one training step at ``memory`` in a fresh process per model (CPU
      only): the RSS high-water mark minus the process's RSS after building the model and
      input (``step_mib``), so weights and input are not counted.

    The three sizes are :data:`SUMMARY_SIZES` or ``options.summary_sizes``. Times are medians
    over ``options.reps`` interleaved repetitions with ``options.threads`` threads; ratios
    compare rows of the same run.

    Args:
        options: The benchmark's options.

    Returns:
        The rows of :func:`compare`.
    """
    info = machine_info(options)
    print(
        f'# {info["date"]}  {info.get("cpu") or info.get("gpu")}  device={options.device}  '
        f'threads={options.threads}  float32  torch {info["torch"]}  (summary)',
        flush=True,
    )
    runs = measure_summary_runs(options)
    rows = compare(runs)
    print(format_summary(rows))
    if options.out:
        save_results(
            options.out,
            dict(
                machine=info,
                argv=sys.argv[1:],
                summary=rows,
                sizes=runs.sizes,
                small=runs.small,
                large=runs.large,
                step_mib=runs.step_mib,
            ),
        )
    return rows


def format_summary(rows: List[dict]) -> str:
    """:func:`run_summary`'s rows as an aligned text table."""
    width = max(len(r['label']) for r in rows)
    lines = [f'\n{"":{width}}  {"measured":>8}  {"target":>7}  met  detail']
    for r in rows:
        value = (
            '-'
            if r['value'] is None
            else (f'{100 * r["value"]:.0f}%' if r['percent'] else f'{r["value"]:.2f}x')
        )
        met = '-' if r['met'] is None else 'yes' if r['met'] else 'no'
        lines.append(f'{r["label"]:{width}}  {value:>8}  {r["target"]:>7}  {met:>3}  {r["detail"]}')
    return '\n'.join(lines)
