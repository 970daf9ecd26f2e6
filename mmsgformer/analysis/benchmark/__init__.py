"""Throughput, peak memory and achieved MAC rate of SG-Former and its baselines, side by side.

The library behind ``tools/analysis_tools/benchmark.py`` (its command line documents the
options, :class:`~.options.BenchmarkOptions` here): :func:`~.report.run` measures and prints the
general table, :func:`~.summary.run_summary` the summary table of the fixed comparisons (see
``docs/benchmark.md``).

* :mod:`.options` - :class:`BenchmarkOptions`, sizes and dtypes;
* :mod:`.models` - the models timed (:class:`~.models.Entry`; named backbones, whole models of
  configs, the official implementation, compiled twins) and what each is compared with;
* :mod:`.timing` - one step, interleaved repetitions, the machine's matrix-product rate;
* :mod:`.memory` - CPU peak memory of one step in a fresh process;
* :mod:`.measure` - one run of everything: timing, memory and MACs as rows;
* :mod:`.report` - the general table and its JSON file;
* :mod:`.summary` - the summary table (:data:`~.summary.COMPARISONS`);
* :mod:`.onnx_runtime` - exported whole models under ONNX Runtime against PyTorch eager
  (:func:`~.onnx_runtime.run_onnx`, ``--onnx``).

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
allocator's view). ``compile`` is not applied in the CPU memory subprocesses.

``compile_vs_eager`` times every model twice in the same interleaved run: eager and
``torch.compile``-d (rows ``NAME+compile``, sharing the eager model's weights), and prints the
compiled rows' ratio to their eager twin (and to the compiled baselines); memory is measured for
the eager rows only.

MACs: counted once per model and size (batch 1, times the batch) by ``complexity.count_macs``
(MMEngine's FlopAnalyzer plus SDPA and broadcasting-matmul handlers; the network's MACs, i.e.
without SG-Former's significance recomputation); cached in ``macs_cache``. "GMAC/s" = MACs
per image / seconds per image; "% mm" = that divided by the machine's rate for a 2048x2048
matrix product in the benchmark's dtype, measured in the same run (before and after; the
larger is used).
"""

from .models import OFFICIAL_MODELS, build_official
from .onnx_runtime import ONNX_RUNS, run_onnx
from .options import DEFAULT_SIZES, DTYPES, BenchmarkOptions, parse_size
from .report import run
from .summary import COMPARISONS, SUMMARY_SIZES, format_summary, run_summary

__all__ = [
    'BenchmarkOptions',
    'DEFAULT_SIZES',
    'DTYPES',
    'parse_size',
    'run',
    'run_summary',
    'format_summary',
    'COMPARISONS',
    'SUMMARY_SIZES',
    'OFFICIAL_MODELS',
    'build_official',
    'ONNX_RUNS',
    'run_onnx',
]
