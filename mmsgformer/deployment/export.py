"""Exports a config's model to one ONNX file with dynamic batch, height and width.

:func:`export_onnx` is what ``tools/deployment/export_onnx.py`` does::

    from mmsgformer.deployment import export_onnx

    config = 'configs/sgformer/sgformer-s_16xb64_in1k.py'
    export_onnx(config, 'sgformer_s.pth', out='sgformer_s.onnx')

The file contract (inputs, outputs, what the graph does) is in ``docs/deployment.md``.
"""

from __future__ import annotations

import os
import os.path as osp
import tempfile
import warnings
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.config import Config

from .errors import ExportError

MIN_OPSET = 16
"""The oldest opset written: the exporter translates to opset 18 and converts down to 16 and
17; older ones it cannot convert to (it would keep 18)."""
DEFAULT_OPSET = 18
MIN_INPUT_SIZE = 64
"""The smallest input side every exported model takes: SG-Former downsamples by 32 and its
smallest maps keep at least 2 pixels a side (a side of 1 would be fixed while tracing)."""
EXAMPLE_SIZES: Dict[str, Tuple[int, int]] = {
    'cls': (226, 226),
    'seg': (258, 258),
    'det': (320, 320),
}
"""The ``(H, W)`` of the example batch traced per task (the exported sizes stay dynamic).

Classification and segmentation trace sizes whose SG-Former maps (1/4 to 1/32) are multiples of
neither the 7x7 windows nor the key-reduction ratios, so that every padding path is traced
with padding; detection pads to 32 in the graph itself."""
SYMBOLIC_DIMS: Dict[str, Tuple[int, ...]] = {
    'input': (0, 2, 3),
    'scores': (0,),
    'seg_map': (0, 1, 2),
    'dets': (0,),
    'labels': (0,),
    'masks': (0, 2, 3),
}
"""The dimensions of each contract tensor that must stay symbolic in the file."""


def check_opset(opset: int) -> None:
    """Raises :class:`ExportError` for an opset the exporter cannot write."""
    if opset < MIN_OPSET:
        raise ExportError(
            f'opset {opset} is too old: the exporter writes opset {MIN_OPSET} or '
            f"newer (it translates to opset 18 and cannot convert the graph's "
            f'operators further down); pass --opset {MIN_OPSET} or newer'
        )


def prepare_for_export(model: nn.Module) -> nn.Module:
    """SyncBN as BN, activation checkpointing off, eval mode; returns the model."""
    from mmengine.model import revert_sync_batchnorm

    model = revert_sync_batchnorm(model)
    for module in model.modules():
        if getattr(module, 'with_cp', False):
            module.with_cp = False
    model.eval()
    return model


def export_module(model: nn.Module, task: str) -> nn.Module:
    """The task's export module around ``model`` (see :mod:`.wrappers`, :mod:`.detection`)."""
    if task == 'cls':
        from .wrappers import ClassifierExport

        return ClassifierExport(model)
    if task == 'seg':
        from .wrappers import SegmentorExport

        return SegmentorExport(model)
    if task == 'det':
        from .detection import DetectorExport

        return DetectorExport(model)
    raise ExportError(
        f'unknown task {task!r}: export supports classification (mmpretrain), '
        f'segmentation (mmseg) and detection (mmdet) configs; set default_scope'
    )


def dynamic_shapes() -> Tuple[Dict[int, torch.export.Dim]]:
    """Batch, height and width of the export module's one input as ``torch.export``
    dimensions (by position: the modules name their argument as they like)."""
    side = dict(min=MIN_INPUT_SIZE)
    return (
        {
            0: torch.export.Dim('batch', min=1),
            2: torch.export.Dim('height', **side),
            3: torch.export.Dim('width', **side),
        },
    )


def fixed_dims(path: str, output_names: Sequence[str]) -> Dict[str, Tuple[int, ...]]:
    """``{tensor: dims}`` of the contract dimensions that the file fixes to a number.

    Args:
        path: The ONNX file.
        output_names: The outputs it must have.
    """
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    tensors = {value.name: value for value in list(graph.input) + list(graph.output)}
    absent = [name for name in ('input', *output_names) if name not in tensors]
    if absent:
        raise ExportError(
            f'the exported graph lacks {absent}; this is a bug of the export '
            f'module, please report it'
        )
    fixed = {}
    for name in ('input', *output_names):
        dims = tensors[name].type.tensor_type.shape.dim
        bad = tuple(i for i in SYMBOLIC_DIMS.get(name, ()) if not dims[i].dim_param)
        if bad:
            fixed[name] = bad
    return fixed


def written_opset(path: str) -> int:
    """The default-domain opset of an ONNX file."""
    import onnx

    imports = onnx.load(path, load_external_data=False).opset_import
    return next(entry.version for entry in imports if entry.domain in ('', 'ai.onnx'))


def verify_export(path: str, output_names: Sequence[str], opset: int) -> None:
    """``onnx.checker``, the opset asked for and the symbolic contract dimensions, else
    :class:`ExportError`."""
    import onnx

    onnx.checker.check_model(path, full_check=True)
    written = written_opset(path)
    if written != opset:
        raise ExportError(
            f'the graph could not be converted to opset {opset} (the exporter '
            f'kept opset {written}); pass --opset {written}'
        )
    fixed = fixed_dims(path, output_names)
    if fixed:
        raise ExportError(
            f'the exported graph fixes dimensions {fixed} that must stay '
            f'dynamic: the model code branches on a size while tracing'
        )


INPUT_DIM_NAMES = {0: 'batch', 2: 'height', 3: 'width'}
"""The names the file gives the symbolic dimensions of ``input``, wherever they appear."""


def name_input_dims(graph) -> None:
    """Renames the exporter's symbols of ``input``'s batch, height and width (``s85``...) to
    :data:`INPUT_DIM_NAMES` in every shape of ``graph`` (an ``onnx.GraphProto``) that holds them.
    """
    dims = next(v for v in graph.input if v.name == 'input').type.tensor_type.shape.dim
    names = {dims[i].dim_param: name for i, name in INPUT_DIM_NAMES.items() if dims[i].dim_param}
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in names:
                dim.dim_param = names[dim.dim_param]


def finish_file(path: str, properties: Dict[str, str]) -> None:
    """Names the input dimensions (:func:`name_input_dims`) and adds ``metadata_props`` to the
    ONNX file (rewritten in place)."""
    import onnx

    proto = onnx.load(path)
    name_input_dims(proto.graph)
    existing = {prop.key: prop.value for prop in proto.metadata_props}
    onnx.helper.set_model_props(proto, {**existing, **properties})
    onnx.save(proto, path)


def size_oblivious_tracing():
    """Context in which ``torch.export`` treats no size as a case of its own for being 1 (a
    reshape's view-or-copy choice would otherwise fix it), which does not change what the graph
    computes; :class:`ExportError` on a torch without it."""
    try:
        from torch.fx.experimental import _config as shape_config
    except ImportError:
        shape_config = None
    if not hasattr(shape_config, 'backed_size_oblivious'):
        raise ExportError(
            f'ONNX export needs the torch pinned in requirements.txt (2.14.1); torch '
            f'{torch.__version__} cannot trace sizes size-obliviously: install the deploy '
            f'extra (pip install -e ".[deploy]") in an environment with that torch'
        )
    return shape_config.patch(backed_size_oblivious=True)


def trace_to_onnx(module: nn.Module, example: torch.Tensor, path: str, opset: int) -> None:
    """``torch.export`` with dynamic batch, height and width, then the ONNX translation.

    The graph is captured here rather than inside ``torch.onnx.export``, which would fall back
    to fixed sizes where the model's code fixes a size while tracing; that is an
    :class:`ExportError` naming the first broken constraints instead.
    """
    from torch._dynamo.exc import UserError
    from torch.fx.experimental.symbolic_shapes import ConstraintViolationError

    with torch.no_grad(), size_oblivious_tracing():
        try:
            program = torch.export.export(
                module, (example,), dynamic_shapes=dynamic_shapes(), strict=False
            )
        except (ConstraintViolationError, UserError, AssertionError) as err:
            # torch 2.14 can fail with "Cannot create Dim ..." while it words the violation
            if not any(word in str(err) for word in ('onstraint', 'Cannot create Dim')):
                raise
            reasons = '\n'.join(str(err).splitlines()[:4])
            raise ExportError(
                f'the model fixes the input size while tracing, so the file '
                f'cannot take every size (TORCH_LOGS=+dynamic shows where):\n'
                f'{reasons}'
            ) from err
        torch.onnx.export(
            program,
            f=path,
            dynamo=True,
            opset_version=opset,
            input_names=['input'],
            output_names=list(module.output_names),
            external_data=False,
            verbose=False,
        )


def export_onnx(
    config: Union[str, os.PathLike, Config],
    checkpoint: Optional[str] = None,
    out: str = 'model.onnx',
    opset: int = DEFAULT_OPSET,
    example_size: Optional[Tuple[int, int]] = None,
    cfg_options: Optional[dict] = None,
) -> str:
    """Exports a config's model to ``out`` (see ``docs/deployment.md`` for the contract).

    The file is written to a temporary file next to ``out`` and moved there only once it
    passed ``onnx.checker`` and the check that batch, height and width are symbolic: no
    half-written file is left on an error.

    Args:
        config: Config file (or config) of a classifier, segmentor or detector of ours, or of
            a config inheriting one.
        checkpoint: A whole-model checkpoint of that config, loaded strictly
            (:func:`~mmsgformer.models.pretrained.load_weights`); None exports random weights
            (with a warning).
        out: The ONNX file to write.
        opset: ONNX opset, at least :data:`MIN_OPSET`.
        example_size: ``(H, W)`` of the traced example (default per task,
            :data:`EXAMPLE_SIZES`; every size from :data:`MIN_INPUT_SIZE` on runs).
        cfg_options: ``{dotted.key: value}`` config overrides.

    Returns:
        ``out``.

    Raises:
        ExportError: Opset too old, unknown task, or a graph that fails the checks.
        CheckpointError, CheckpointMismatchError: A checkpoint that cannot be read or does not
            fit the config (see :func:`~mmsgformer.models.pretrained.load_weights`).
    """
    from mmsgformer.apis import build_model, load_weights
    from mmsgformer.utils.config import load_config, task_of

    check_opset(opset)
    cfg = config if isinstance(config, Config) else load_config(os.fspath(config), cfg_options)
    try:
        task = task_of(cfg)
    except ValueError as err:
        raise ExportError(f'unknown task: {err}') from err
    model = build_model(cfg)
    if checkpoint is None:
        warnings.warn('no checkpoint: exporting RANDOM weights')
    else:
        load_weights(model, checkpoint)
    module = export_module(prepare_for_export(model), task)
    height, width = example_size or EXAMPLE_SIZES[task]
    if min(height, width) < MIN_INPUT_SIZE:
        raise ExportError(
            f'example size {(height, width)} is below the minimum input side {MIN_INPUT_SIZE}'
        )
    example = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(0)) * 255
    folder = osp.dirname(osp.abspath(out))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix='.onnx.part', dir=folder)
    os.close(handle)
    try:
        trace_to_onnx(module, example, temporary, opset)
        finish_file(
            temporary, {'mmsgformer.task': task, 'mmsgformer.min_input_size': str(MIN_INPUT_SIZE)}
        )
        verify_export(temporary, module.output_names, opset)
        os.replace(temporary, out)
    finally:
        if osp.exists(temporary):
            os.remove(temporary)
    return out
