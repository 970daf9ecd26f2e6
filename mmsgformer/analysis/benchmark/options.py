"""What a benchmark run measures: :class:`BenchmarkOptions` (``tools/analysis_tools/benchmark.py``
documents each as a flag)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch

from ..baselines import parse_custom

DEFAULT_SIZES = ['224x224', '512x512', '800x1333', '1024x2048']
DTYPES = dict(float32=torch.float32, bfloat16=torch.bfloat16, float16=torch.float16)
GROWTH_SIZES = ('512x1024', '1024x2048')
"""The sizes ``growth`` adds: time(1024x2048) / time(512x1024) is the cost growth."""

Size = Tuple[int, int, int]
"""``(H, W, batch)``."""


def parse_size(text: str, default_batches: List[int]) -> List[Size]:
    """``HxW`` (every batch of ``default_batches``), ``HxW@B[,B...]`` or a single ``S``
    (square) as ``(H, W, batch)`` triples."""
    size, _, batch = text.partition('@')
    h, _, w = size.lower().partition('x')
    h, w = int(h), int(w or h)
    batches = [int(b) for b in batch.split(',')] if batch else default_batches
    return [(h, w, b) for b in batches]


def size_text(size: Size) -> str:
    """``(H, W, B)`` as ``'HxW@B'`` (what :func:`parse_size` reads)."""
    return f'{size[0]}x{size[1]}@{size[2]}'


def default_device() -> str:
    return 'cuda' if torch.cuda.is_available() else 'cpu'


@dataclass
class BenchmarkOptions:
    """The options of a benchmark run.

    Args:
        models: Backbone names (default: ``baselines.DEFAULT_MODELS``).
        custom: Extra SG-Former archs usable in ``models``, as ``'NAME=JSON'``.
        whole_model: Benchmark the whole models of these configs instead of backbones.
        cfg_options: Overrides applied to every ``whole_model`` config.
        sizes: ``HxW`` or ``HxW@B[,B...]`` (see :func:`parse_size`).
        batch_sizes: Batches of the sizes given without ``@B``.
        modes: ``'infer'`` and/or ``'train'``.
        growth: Add 512x1024 and 1024x2048 and report the cost growth between them.
        device: ``'cpu'`` or ``'cuda'`` (default: cuda when present).
        threads: ``torch.set_num_threads`` (default: the CPUs this process may use).
        dtype: Autocast dtype, a key of :data:`DTYPES` (``float32``: no autocast).
        compile: ``torch.compile`` every model.
        compile_vs_eager: Time every model eager and compiled (rows ``NAME+compile``).
        compile_mode: ``torch.compile`` mode (inductor only).
        compile_backend: ``torch.compile`` backend.
        with_cp: Gradient checkpointing: ``'none'``, ``'sgformer'`` or ``'all'`` (every model
            that supports it).
        warmup: Untimed steps per model.
        reps: Timed repetitions (the median is reported).
        iters: Steps per repetition.
        no_memory: Skip the peak-memory measurement.
        memory_modes: Modes whose CPU peak memory is measured (default: all of ``modes``).
        no_macs: Skip MAC counting.
        macs_cache: JSON cache of MAC counts (``''``: none).
        matmul_size: Side of the square matrix product giving the machine's rate.
        seed: Seed of the weights and inputs.
        out: Write every result to this JSON file.
        official: Folder with the official ``sgformer.py``: adds the ``official_sgformer_*``
            models and the summary's ours/official row.
        checkout: Root of another checkout of this project: adds the models ``checkout_NAME``
            for every SG-Former ``NAME``, that checkout's code (see
            :func:`~mmsgformer.analysis.benchmark.models.import_checkout`), each compared with
            ours.
        summary_model: The SG-Former of the summary.
        summary_baseline: The Swin-T of the summary.
        summary_sizes: ``HxW@B`` of the summary's three runs (small, large, memory; default
            :data:`~mmsgformer.analysis.benchmark.summary.SUMMARY_SIZES`).

    Derived when the options are made: ``size_batches`` (every ``(H, W, batch)``, with
    ``growth``'s sizes), ``custom_archs`` (``custom`` parsed) and ``threads`` (when None).
    """

    models: Optional[List[str]] = None
    custom: Optional[List[str]] = None
    whole_model: Optional[List[str]] = None
    cfg_options: Optional[Dict[str, Any]] = None
    sizes: List[str] = field(default_factory=lambda: list(DEFAULT_SIZES))
    batch_sizes: List[int] = field(default_factory=lambda: [1])
    modes: List[str] = field(default_factory=lambda: ['infer', 'train'])
    growth: bool = False
    device: str = field(default_factory=default_device)
    threads: Optional[int] = None
    dtype: str = 'float32'
    compile: bool = False
    compile_vs_eager: bool = False
    compile_mode: Optional[str] = None
    compile_backend: str = 'inductor'
    with_cp: str = 'none'
    warmup: int = 1
    reps: int = 3
    iters: int = 1
    no_memory: bool = False
    memory_modes: Optional[List[str]] = None
    no_macs: bool = False
    macs_cache: str = 'work_dirs/benchmark_macs.json'
    matmul_size: int = 2048
    seed: int = 0
    out: Optional[str] = None
    official: Optional[str] = None
    checkout: Optional[str] = None
    summary_model: str = 'sgformer_s'
    summary_baseline: str = 'swin_t'
    summary_sizes: Optional[List[str]] = None
    size_batches: List[Size] = field(init=False)
    custom_archs: Dict[str, dict] = field(init=False)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f'dtype {self.dtype!r} is not one of {list(DTYPES)}')
        sizes = list(self.sizes)
        if self.growth:
            for extra in GROWTH_SIZES:
                if not any(s.partition('@')[0] == extra for s in sizes):
                    sizes.append(extra)
        self.size_batches = [tuple(sb) for s in sizes for sb in parse_size(s, self.batch_sizes)]
        self.custom_archs = parse_custom(self.custom)
        if self.threads is None:
            self.threads = (
                len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
            )

    def to_dict(self) -> Dict[str, Any]:
        """The options given (not the derived ones): ``BenchmarkOptions(**to_dict())`` makes
        them again, e.g. in a memory subprocess."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    def replace(self, **changes: Any) -> 'BenchmarkOptions':
        """A copy with ``changes`` (the derived options follow them)."""
        return BenchmarkOptions(**{**self.to_dict(), **changes})
