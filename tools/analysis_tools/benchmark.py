"""Throughput, peak memory and achieved MAC rate of SG-Former and its baselines, side by side.

    python tools/analysis_tools/benchmark.py                       # all defaults (long)
    python tools/analysis_tools/benchmark.py --models sgformer_s swin_t pvtv2_b2 \\
        --sizes 224x224@8 800x1333@1 --modes infer train --threads 2 --reps 3 --out r.json
    python tools/analysis_tools/benchmark.py --whole-model \\
        configs/mask_rcnn/mask-rcnn_sgformer-s_fpn_1x_coco.py \\
        --sizes 800x1333@1
    python tools/analysis_tools/benchmark.py --summary --threads 2 --official PATH
    python tools/analysis_tools/benchmark.py --onnx --threads 2   # ONNX Runtime vs PyTorch
    git worktree add /tmp/old REV && python tools/analysis_tools/benchmark.py \\
        --models sgformer_s checkout_sgformer_s --checkout /tmp/old   # this code vs REV's

One run measures every model at every size and mode. For each (size, batch, mode) all models
are warmed up, then every repetition times each model once, in an order rotated per repetition
(machine noise hits all models alike); the reported time is the median over repetitions.
``--summary`` measures the fixed comparisons of the summary table instead; ``--onnx`` exported
whole models under ONNX Runtime against PyTorch eager (export time and file size printed).

Modes: ``infer`` = eval mode under ``torch.no_grad``, one forward; ``train`` = train mode, one
forward and a backward of the sum of the outputs (backbones: sum of the four feature maps;
whole models: the training loss on synthetic targets). Gradients are set to None before each
step; no optimizer step.

Peak memory (CPU: RSS high-water mark of a fresh process per step; CUDA: the caching
allocator's peak), MACs and the matmul rate: see ``mmsgformer.analysis.benchmark`` and
docs/benchmark.md.
"""

import argparse
import dataclasses

import torch

from mmsgformer.analysis.baselines import DEFAULT_MODELS
from mmsgformer.analysis.benchmark import (
    DEFAULT_SIZES,
    DTYPES,
    BenchmarkOptions,
    run,
    run_onnx,
    run_summary,
)


def parse_args(argv=None):
    from mmengine.config import DictAction

    # Its own parser on purpose, as mmdet's tools have: each tool lists all it takes.
    p = argparse.ArgumentParser(
        description='SG-Former / Swin / PVTv2 benchmark',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    p.add_argument(
        '--models', nargs='+', default=None, help=f'backbones (default: {" ".join(DEFAULT_MODELS)})'
    )
    p.add_argument(
        '--custom', nargs='*', metavar='NAME=JSON', help='extra SG-Former archs usable in --models'
    )
    p.add_argument(
        '--whole-model',
        nargs='+',
        metavar='CONFIG',
        help='benchmark whole models built from configs instead of backbones',
    )
    p.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='overrides applied to every --whole-model config',
    )
    p.add_argument(
        '--sizes',
        nargs='+',
        default=DEFAULT_SIZES,
        help='HxW or HxW@B[,B...] (default: %(default)s)',
    )
    p.add_argument(
        '--batch-sizes',
        type=int,
        nargs='+',
        default=[1],
        help='batches for sizes given without @B (default: 1)',
    )
    p.add_argument('--modes', nargs='+', choices=['infer', 'train'], default=['infer', 'train'])
    p.add_argument(
        '--growth',
        action='store_true',
        help='add 512x1024 and report time(1024x2048) / time(512x1024)',
    )
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument(
        '--threads',
        type=int,
        default=None,
        help='torch.set_num_threads (default: the CPUs this process may use)',
    )
    p.add_argument(
        '--dtype',
        choices=list(DTYPES),
        default='float32',
        help='autocast dtype (float32: no autocast)',
    )
    p.add_argument('--compile', action='store_true', help='torch.compile every model')
    p.add_argument(
        '--compile-vs-eager',
        action='store_true',
        help='time every model eager and compiled (rows NAME+compile) side by side',
    )
    p.add_argument(
        '--compile-mode',
        default=None,
        choices=['default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs'],
        help='torch.compile mode (inductor only; reduce-overhead = CUDA graphs)',
    )
    p.add_argument(
        '--compile-backend',
        default='inductor',
        help='torch.compile backend (default %(default)s; e.g. aot_eager, eager)',
    )
    p.add_argument(
        '--with-cp',
        nargs='?',
        const='sgformer',
        default='none',
        choices=['none', 'sgformer', 'all'],
        help='gradient checkpointing: SG-Former only (bare flag) or all models that '
        'support it (mmdet PVTv2 does not)',
    )
    p.add_argument('--warmup', type=int, default=1, help='untimed steps per model (default 1)')
    p.add_argument('--reps', type=int, default=3, help='timed repetitions (median; default 3)')
    p.add_argument('--iters', type=int, default=1, help='steps per repetition (default 1)')
    p.add_argument('--no-memory', action='store_true', help='skip the peak-memory measurement')
    p.add_argument(
        '--memory-modes',
        nargs='+',
        choices=['infer', 'train'],
        default=None,
        help='modes whose CPU peak memory is measured (default: all of --modes)',
    )
    p.add_argument('--no-macs', action='store_true', help='skip MAC counting')
    p.add_argument(
        '--macs-cache',
        default='work_dirs/benchmark_macs.json',
        help='JSON cache of MAC counts ("" disables; default %(default)s)',
    )
    p.add_argument(
        '--matmul-size',
        type=int,
        default=2048,
        help='side of the square matrix product giving the machine rate (default '
        '2048; smaller only for quick checks)',
    )
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', help='write all results as JSON')
    p.add_argument(
        '--official',
        metavar='PATH',
        help='folder with the official sgformer.py (a checkout of '
        'github.com/OliverRensu/SG-Former): adds the model names '
        "official_sgformer_s/m/b and the summary's ours/official row",
    )
    p.add_argument(
        '--checkout',
        metavar='PATH',
        help='root of another checkout of this project (e.g. a git worktree of an older '
        'commit): adds the model names checkout_NAME for every SG-Former NAME, built from '
        "that checkout's mmsgformer.models and timed beside ours",
    )
    p.add_argument(
        '--summary',
        action='store_true',
        help='measure and print the summary table (see docs/benchmark.md); uses '
        '--threads, --reps, --warmup, --official, --out',
    )
    p.add_argument(
        '--onnx',
        action='store_true',
        help='ONNX Runtime against PyTorch eager on the CPU: exports SG-Former-S '
        'classification, UperNet-S and Mask R-CNN-S and times both (see '
        'docs/deployment.md); uses --threads, --reps, --warmup, --seed',
    )
    p.add_argument(
        '--summary-model',
        default='sgformer_s',
        help='the SG-Former of --summary (default %(default)s)',
    )
    p.add_argument(
        '--summary-sizes',
        nargs=3,
        metavar=('SMALL', 'LARGE', 'MEMORY'),
        help="HxW@B of --summary's runs (default 224x224@8 800x1216@1 "
        '800x1333@1; e.g. 224x224@32 800x1333@2 800x1333@2 on a GPU)',
    )
    p.add_argument(
        '--summary-baseline',
        default='swin_t',
        help="the Swin-T of --summary (default %(default)s, mmdet's; timm_swin_t without mmdet)",
    )
    args = p.parse_args(argv)
    if args.whole_model and args.models:
        p.error('--models and --whole-model are exclusive')
    if args.compile and args.compile_vs_eager:
        p.error('--compile (compiled only) and --compile-vs-eager (both) are exclusive')
    if args.compile_mode and args.compile_backend != 'inductor':
        p.error(
            f'--compile-mode applies to the inductor backend only, not {args.compile_backend!r}'
        )
    if args.onnx and (args.summary or args.whole_model or args.models):
        p.error('--onnx measures fixed models; drop --summary/--models/--whole-model')
    if args.summary and (args.whole_model or args.models):
        p.error('--summary measures fixed models; drop --models/--whole-model')
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    options = BenchmarkOptions(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(BenchmarkOptions) if f.init}
    )
    if args.onnx:
        run_onnx(options)
    elif args.summary:
        run_summary(options)
    else:
        run(options)


if __name__ == '__main__':
    main()
