"""ONNX Runtime against PyTorch eager on the CPU: the ``--onnx`` mode of the benchmark.

:func:`run_onnx` exports the whole model of each entry of :data:`ONNX_RUNS` (random weights;
:func:`mmsgformer.deployment.export_onnx`), prints the export time and the file size, and times
the file under ONNX Runtime against the export module in PyTorch eager (``torch.no_grad``) on
the same input, interleaved, the median of ``options.reps`` repetitions after
``options.warmup`` untimed steps. The goal of each row is ONNX Runtime >= 1.0x PyTorch.
"""

from __future__ import annotations

import os
import os.path as osp
import statistics
import tempfile
import time
from typing import Callable, Dict, List, NamedTuple

import torch

from .options import BenchmarkOptions

ONNX_GOAL = 1.0
"""ONNX Runtime's images per second over PyTorch eager's that each row aims at."""


class OnnxRun(NamedTuple):
    """One row: the whole model of a text config (a path under ``configs/``) at
    ``(height, width)``, ``batch`` images."""

    title: str
    config: str
    height: int
    width: int
    batch: int


ONNX_RUNS = [
    OnnxRun('SG-Former-S classification', 'sgformer/sgformer-s_16xb64_in1k.py', 224, 224, 8),
    OnnxRun(
        'UperNet-S segmentation',
        'upernet/upernet_sgformer-s_8xb2-160k_ade20k-512x512.py',
        512,
        512,
        1,
    ),
    OnnxRun(
        'Mask R-CNN-S detection', 'mask_rcnn/mask-rcnn_sgformer-s_fpn_1x_coco.py', 800, 1216, 1
    ),
]


def interleaved_medians(
    steps: Dict[str, Callable[[], object]], options: BenchmarkOptions
) -> Dict[str, float]:
    """Median seconds per call of each step: warm-up, then repetitions in rotated order."""
    for step in steps.values():
        for _ in range(options.warmup):
            step()
    times: Dict[str, List[float]] = {name: [] for name in steps}
    names = list(steps)
    for rep in range(options.reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def measure_onnx_run(run: OnnxRun, folder: str, options: BenchmarkOptions) -> dict:
    """Exports one run's model into ``folder`` and times it under both runtimes."""
    import onnxruntime as ort

    from mmsgformer.apis import build_model
    from mmsgformer.deployment import export_onnx
    from mmsgformer.deployment.export import export_module, prepare_for_export
    from mmsgformer.utils.config import load_config, task_of, text_config_root

    torch.manual_seed(options.seed)
    cfg = load_config(osp.join(text_config_root(), run.config))
    out = osp.join(folder, osp.basename(run.config).replace('.py', '.onnx'))
    start = time.perf_counter()
    export_onnx(cfg, out=out)
    export_s = time.perf_counter() - start
    module = export_module(prepare_for_export(build_model(cfg)), task_of(cfg))
    settings = ort.SessionOptions()
    settings.intra_op_num_threads = options.threads or (os.cpu_count() or 1)
    engine = ort.InferenceSession(out, settings, providers=['CPUExecutionProvider'])
    x = torch.rand(run.batch, 3, run.height, run.width) * 255
    array = x.numpy()

    def eager() -> object:
        with torch.no_grad():
            return module(x)

    medians = interleaved_medians(
        {'pytorch': eager, 'onnxruntime': lambda: engine.run(None, {'input': array})}, options
    )
    return dict(
        title=run.title,
        size=f'{run.height}x{run.width}@{run.batch}',
        export_s=export_s,
        mib=osp.getsize(out) / 2**20,
        pytorch_ips=run.batch / medians['pytorch'],
        onnx_ips=run.batch / medians['onnxruntime'],
    )


def format_onnx_row(row: dict) -> str:
    """One printed row: ratio against the goal, both rates, export time and file size."""
    ratio = row['onnx_ips'] / row['pytorch_ips']
    verdict = 'meets' if ratio >= ONNX_GOAL else 'misses'
    return (
        f'| ONNX Runtime / PyTorch eager, {row["title"]}, {row["size"]} | {ratio:.2f}x '
        f'({row["onnx_ips"]:.2f} / {row["pytorch_ips"]:.2f} img/s; {verdict} the goal '
        f'>= {ONNX_GOAL:.1f}x) | export {row["export_s"]:.0f} s, {row["mib"]:.1f} MiB |'
    )


def run_onnx(options: BenchmarkOptions) -> List[dict]:
    """Measures and prints every row of :data:`ONNX_RUNS` (see the module's docstring)."""
    if options.threads:
        torch.set_num_threads(options.threads)
    print('| comparison | result | export |\n|---|---|---|')
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for run in ONNX_RUNS:
            rows.append(measure_onnx_run(run, folder, options))
            print(format_onnx_row(rows[-1]), flush=True)
    return rows
