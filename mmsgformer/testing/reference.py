"""Reference outputs of the official SG-Former implementation, and how ours compares with them.

The official code (``sgformer.py`` and ``pos_embed.py`` of https://github.com/OliverRensu/SG-Former)
is not part of this repository. :func:`make_reference` runs it, from a folder the user points to,
on a small architecture whose weights are randomly perturbed, and returns what
``tests/data/sgformer_reference.pth`` holds: the weights in the official layout, the input images
and the official per-stage outputs and logits with the model in float32 and in float64.
:func:`load_reference` reads such a file for one precision. :func:`measure_rounding` compares, on
a real-size architecture, our float32 model and the official float32 model with the official
float64 model (how far float32 rounding alone moves the outputs).

The official files are imported as they are, never modified; :func:`import_official` patches
at run time only what today's libraries lack: it gives ``sgformer.py`` its ``pos_embed`` module
for the duration of the import, gives ``pos_embed.py`` the alias ``np.float`` (gone since numpy
1.24) and silences the deprecation warnings of the timm import paths ``sgformer.py`` uses. The
official model runs on the CPU as it is (it hard-codes no device); its layers are built for
224x224 inputs, the only size used here.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
import os.path as osp
import sys
import types
import warnings
from functools import partial
from typing import Dict, List, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models import SGFormer
from ..models.official_keys import convert_official_state_dict

StateDict = Dict[str, torch.Tensor]

OFFICIAL_FILES = ('sgformer.py', 'pos_embed.py')
"""Files of the official repository the reference is made with."""

IMAGE_SIZE = 224
"""The only input size the official layers are built for."""

REFERENCE_ARCH = dict(
    embed_dims=[8, 16, 32, 64],
    num_heads=[2, 2, 2, 4],
    depths=[2, 2, 2, 1],
    mlp_ratios=[2, 2, 2, 2],
    sr_ratios=[8, 4, 2, 1],
)
"""The reference file's architecture: every block kind (hybrid-scale and significance-guided in
stages 1-3, global in stage 4) at the smallest widths, so that the file stays small."""

REFERENCE_NUM_CLASSES = 10
REFERENCE_BATCH = 2
PERTURBATION_STD = 0.02
"""Standard deviation of the Gaussian noise added to every weight, norms and ``pos_embed``
included, so that a weight loaded into the wrong place changes the outputs."""

PRECISIONS = {'float32': torch.float32, 'float64': torch.float64}


# ---------------------------------------------------------------------------- the official code
@functools.lru_cache(maxsize=None)
def import_official(official_dir: str) -> types.ModuleType:
    """Imports the official ``sgformer.py`` from ``official_dir`` (once per folder).

    Args:
        official_dir: A folder holding the official repository's ``sgformer.py`` and
            ``pos_embed.py`` (e.g. a clone of it).

    Returns:
        The module, with its ``SGFormer`` class and ``sgformer_s/m/b`` constructors.
    """
    paths = {name: osp.join(official_dir, name) for name in OFFICIAL_FILES}
    missing = [path for path in paths.values() if not osp.isfile(path)]
    if missing:
        raise FileNotFoundError(
            f'{missing} not found; pass the folder of a clone of '
            f'https://github.com/OliverRensu/SG-Former (it needs {", ".join(OFFICIAL_FILES)})'
        )
    previous = sys.modules.get('pos_embed')
    pos_embed = _module_from_file('pos_embed', paths['pos_embed.py'])  # sgformer.py imports it
    pos_embed.np = _NumpyWithFloatAlias('numpy')
    try:
        with warnings.catch_warnings():
            # timm.models.layers / timm.models.registry: deprecated import paths, still working
            warnings.simplefilter('ignore', FutureWarning)
            warnings.simplefilter('ignore', DeprecationWarning)
            return _module_from_file('sgformer_official', paths['sgformer.py'])
    finally:
        if previous is None:
            del sys.modules['pos_embed']
        else:
            sys.modules['pos_embed'] = previous


class _NumpyWithFloatAlias(types.ModuleType):
    """numpy plus ``np.float`` (removed in numpy 1.24), which the official ``pos_embed.py``
    uses; given to that module only."""

    float = float

    def __getattr__(self, name: str):
        return getattr(np, name)


def _module_from_file(name: str, path: str) -> types.ModuleType:
    """Imports ``path`` as module ``name`` (entered in ``sys.modules``, as timm's
    ``register_model`` in the official file expects)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def official_sha256(official_dir: str) -> str:
    """SHA-256 of the official ``sgformer.py`` (recorded in the reference file)."""
    with open(osp.join(official_dir, 'sgformer.py'), 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def build_official(
    official: types.ModuleType, arch: Union[str, dict], num_classes: int = 1000
) -> nn.Module:
    """The official model in eval mode: ``'s'``/``'m'``/``'b'`` through the official
    constructors, or a dict like :data:`REFERENCE_ARCH` with the released models' settings (stem
    stride 4, ``qkv_bias=True``, LayerNorm eps 1e-6)."""
    if isinstance(arch, str):
        model = getattr(official, f'sgformer_{arch}')(num_classes=num_classes)
    else:
        model = official.SGFormer(
            patch_size=4,
            qkv_bias=True,
            num_classes=num_classes,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            **arch,
        )
    return model.eval()


@torch.no_grad()
def perturb_(
    model: nn.Module, generator: torch.Generator, std: float = PERTURBATION_STD
) -> nn.Module:
    """Adds Gaussian noise of ``std`` to every parameter and buffer of ``model`` in place."""
    for tensor in model.state_dict().values():
        if tensor.is_floating_point():
            tensor.add_(torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype) * std)
    return model


@torch.no_grad()
def run_official(model: nn.Module, inputs: torch.Tensor) -> Tuple[List[torch.Tensor], torch.Tensor]:
    """The official model's stage outputs (after ``norm1``..``norm4``, as NCHW maps) and logits.

    The stage outputs are read with forward hooks on the official norms; the model is not
    changed.
    """
    outputs: List[torch.Tensor] = []

    def keep(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        batch, tokens, channels = out.shape
        side = int(round(tokens**0.5))
        outputs.append(out.reshape(batch, side, side, channels).permute(0, 3, 1, 2).contiguous())

    handles = [getattr(model, f'norm{i}').register_forward_hook(keep) for i in range(1, 5)]
    try:
        logits = model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return outputs, logits


# ---------------------------------------------------------------------------- our model
def ours_from_official(
    arch: Union[str, dict], state_dict: StateDict, dtype: torch.dtype = torch.float32
) -> Tuple[SGFormer, StateDict]:
    """Our backbone (eval mode, ``dtype``) with official weights, and the classifier head.

    Args:
        arch: ``'s'``/``'m'``/``'b'`` or an arch dict of :class:`SGFormer`.
        state_dict: Weights in the official layout.
        dtype: Precision of the model and the head.

    Returns:
        The backbone and ``{'head.weight': ..., 'head.bias': ...}``.
    """
    model = SGFormer(arch=arch).eval()
    backbone, head = convert_official_state_dict(state_dict)
    model.load_state_dict(backbone, strict=True)
    return model.to(dtype), {k: v.to(dtype) for k, v in head.items()}


def classify(last_stage: torch.Tensor, head: StateDict) -> torch.Tensor:
    """The official classifier on our last stage map: mean over positions, then ``head``."""
    return F.linear(last_stage.mean((2, 3)), head['head.weight'], head['head.bias'])


@torch.no_grad()
def run_ours(
    model: SGFormer, head: StateDict, inputs: torch.Tensor
) -> Tuple[List[torch.Tensor], torch.Tensor]:
    """Our model's stage outputs and logits, like :func:`run_official`."""
    outputs = list(model(inputs))
    return outputs, classify(outputs[-1], head)


# ---------------------------------------------------------------------------- inputs
def random_images(num: int, generator: torch.Generator) -> torch.Tensor:
    """``(num, 3, 224, 224)`` uint8 images: smooth random colour fields plus pixel noise."""
    coarse = torch.rand(num, 3, 8, 8, generator=generator)
    smooth = F.interpolate(
        coarse, size=(IMAGE_SIZE, IMAGE_SIZE), mode='bilinear', align_corners=False
    )
    noise = torch.rand(num, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    return (smooth * 200 + noise * 55).to(torch.uint8)


def images_to_inputs(images: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Network inputs ``(images - 128) / 64``, exact in float32 and float64 alike."""
    return (images.to(dtype) - 128) / 64


# ---------------------------------------------------------------------------- the reference file
def make_reference(official_dir: str, seed: int = 0) -> dict:
    """Runs the official code on :data:`REFERENCE_ARCH` and returns the reference file's content.

    Args:
        official_dir: Folder with the official ``sgformer.py`` and ``pos_embed.py``.
        seed: Seed of the weight perturbation and the images.

    Returns:
        ``arch`` (with ``num_classes``), ``state_dict`` (official layout, float32), ``images``
        (uint8; the inputs are :func:`images_to_inputs` of them), ``outputs``:
        ``{'float32' | 'float64': {'stage_outputs': [4 NCHW maps], 'logits': ...}}`` (the
        official model run in that precision on the same weights and images) and ``meta``
        (provenance).
    """
    official = import_official(official_dir)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the official initialisation draws from the global generator
    model = perturb_(build_official(official, REFERENCE_ARCH, REFERENCE_NUM_CLASSES), generator)
    images = random_images(REFERENCE_BATCH, generator)
    outputs = {}
    for name, dtype in PRECISIONS.items():
        stages, logits = run_official(
            copy.deepcopy(model).to(dtype), images_to_inputs(images, dtype)
        )
        outputs[name] = dict(stage_outputs=stages, logits=logits)
    import timm  # the official code's dependency, needed only here

    return dict(
        arch=dict(REFERENCE_ARCH, num_classes=REFERENCE_NUM_CLASSES, qkv_bias=True, norm_eps=1e-6),
        state_dict={k: v.detach().clone() for k, v in model.state_dict().items()},
        images=images,
        outputs=outputs,
        meta=dict(
            official_sgformer_py_sha256=official_sha256(official_dir),
            seed=seed,
            perturbation_std=PERTURBATION_STD,
            torch=str(torch.__version__),
            timm=str(timm.__version__),
            made_by='tools/model_converters/make_reference.py',
        ),
    )


def load_reference(path: str, dtype: torch.dtype = torch.float32) -> dict:
    """The content of a reference file for one precision.

    Args:
        path: A file written by ``tools/model_converters/make_reference.py``.
        dtype: ``torch.float32`` or ``torch.float64``: which official run to return.

    Returns:
        ``arch``, ``state_dict`` (float32, official layout), ``inputs`` (in ``dtype``),
        ``stage_outputs`` and ``logits`` of the official model run in ``dtype``, ``meta``.
    """
    names = {v: k for k, v in PRECISIONS.items()}
    if dtype not in names:
        raise ValueError(f'the reference holds float32 and float64 runs, not {dtype}')
    data = torch.load(path, map_location='cpu', weights_only=True)
    run = data['outputs'][names[dtype]]
    return dict(
        arch=data['arch'],
        state_dict=data['state_dict'],
        inputs=images_to_inputs(data['images'], dtype),
        stage_outputs=run['stage_outputs'],
        logits=run['logits'],
        meta=data['meta'],
    )


# ---------------------------------------------------------------------------- float32 rounding
def measure_rounding(
    official_dir: str, arch: str = 's', num_images: int = 16, batch_size: int = 4, seed: int = 0
) -> Dict[str, dict]:
    """How far float32 moves the outputs of a real-size model from the official float64 ones.

    Builds the official ``arch`` with perturbed weights (:func:`perturb_`), runs it in float64
    (the yardstick) and float32, and our model with the same weights in float32 and float64, on
    :func:`random_images`.

    Args:
        official_dir: Folder with the official ``sgformer.py`` and ``pos_embed.py``.
        arch: ``'s'``, ``'m'`` or ``'b'``.
        num_images: Images compared (224x224).
        batch_size: Images per forward pass.
        seed: Seed of the perturbation and the images.

    Returns:
        ``{run: {'stages': [(max, mean) abs difference per stage], 'logits': (max, mean),
        'top1_agreement': fraction}}`` for the runs ``'official float32'``, ``'ours float32'``
        and ``'ours float64'``, each against the official float64 run, plus ``'magnitude'``:
        the mean absolute value of the official float64 stage outputs and logits.
    """
    official = import_official(official_dir)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the official initialisation draws from the global generator
    model = perturb_(build_official(official, arch), generator)
    images = random_images(num_images, generator)
    ours = {
        dtype: ours_from_official(arch, model.state_dict(), dtype) for dtype in PRECISIONS.values()
    }
    runners = {
        'official float64': (partial(run_official, copy.deepcopy(model).double()), torch.float64),
        'official float32': (partial(run_official, model), torch.float32),
        'ours float32': (partial(run_ours, *ours[torch.float32]), torch.float32),
        'ours float64': (partial(run_ours, *ours[torch.float64]), torch.float64),
    }
    results = {
        name: _run_batched(runner, images, dtype, batch_size)
        for name, (runner, dtype) in runners.items()
    }
    truth_stages, truth_logits = results.pop('official float64')
    report: Dict[str, dict] = {
        'magnitude': dict(
            stages=[s.abs().mean().item() for s in truth_stages],
            logits=truth_logits.abs().mean().item(),
        )
    }
    for name, (stages, logits) in results.items():
        report[name] = dict(
            stages=[_abs_difference(s, t) for s, t in zip(stages, truth_stages)],
            logits=_abs_difference(logits, truth_logits),
            top1_agreement=(logits.argmax(1) == truth_logits.argmax(1)).double().mean().item(),
        )
    return report


def _run_batched(
    runner, images: torch.Tensor, dtype: torch.dtype, batch_size: int
) -> Tuple[List[torch.Tensor], torch.Tensor]:
    stages: List[List[torch.Tensor]] = [[] for _ in range(4)]
    logits = []
    for batch in images.split(batch_size):
        outs, batch_logits = runner(images_to_inputs(batch, dtype))
        for kept, out in zip(stages, outs):
            kept.append(out.double())
        logits.append(batch_logits.double())
    return [torch.cat(s) for s in stages], torch.cat(logits)


def _abs_difference(a: torch.Tensor, b: torch.Tensor) -> Tuple[float, float]:
    difference = (a - b).abs()
    return difference.max().item(), difference.mean().item()


def format_rounding(report: Dict[str, dict], arch: str, num_images: int) -> str:
    """:func:`measure_rounding`'s result as a Markdown table."""
    header = ['', 'stage 1', 'stage 2', 'stage 3', 'stage 4', 'logits', 'top-1 agreement']
    lines = [
        f'SG-Former-{arch.upper()}, perturbed random weights, {num_images} images '
        f'224x224, torch {torch.__version__}; abs difference to the official float64 run',
        '',
        '| ' + ' | '.join(header) + ' |',
        '|' + '---|' * len(header),
    ]
    magnitude = report['magnitude']
    cells = [f'{v:.3g}' for v in magnitude['stages']] + [f'{magnitude["logits"]:.3g}', '']
    lines.append('| mean abs value (official float64) | ' + ' | '.join(cells) + ' |')
    for name, row in report.items():
        if name == 'magnitude':
            continue
        for stat, index in (('max', 0), ('mean', 1)):
            cells = [f'{pair[index]:.1e}' for pair in row['stages'] + [row['logits']]]
            agreement = f'{row["top1_agreement"]:.1%}' if stat == 'max' else ''
            lines.append(f'| {name}, {stat} | ' + ' | '.join(cells) + f' | {agreement} |')
    return '\n'.join(lines)
