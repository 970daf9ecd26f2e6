"""The size-oblivious rules of mmsgformer.models.sizes: one captured graph serves every size."""

import pytest
import torch
from conftest import TINY_ARCH

from mmsgformer.models import SGFormer

try:
    from torch.fx.experimental import _config as shape_config
except ImportError:  # torch without the size-oblivious tracing the ONNX export needs
    shape_config = None

requires_size_oblivious = pytest.mark.skipif(
    not hasattr(shape_config, 'backed_size_oblivious'),
    reason=f'torch {torch.__version__} cannot trace sizes size-obliviously (ONNX export needs it)',
)

EXPORT_MIN_SIDE = 64
"""The smallest side the export takes (its smallest maps keep 2 pixels a side)."""


@requires_size_oblivious
def test_exported_backbone_runs_at_other_sizes_like_eager():
    """``torch.export`` at dynamic batch, height and width, traced at one odd size: the captured
    program gives eager execution's features at other odd sizes and batches (a branch on a size
    or a slice a tracer cannot prove would fix the traced size, and export would refuse)."""
    torch.manual_seed(0)
    model = SGFormer(arch=TINY_ARCH, drop_path_rate=0.0).eval()
    dims = {
        0: torch.export.Dim('batch', min=1),
        2: torch.export.Dim('height', min=EXPORT_MIN_SIDE),
        3: torch.export.Dim('width', min=EXPORT_MIN_SIDE),
    }
    example = torch.randn(2, 3, 97, 131)
    with torch.no_grad(), shape_config.patch(backed_size_oblivious=True):
        program = torch.export.export(model, (example,), dynamic_shapes=(dims,), strict=False)
    captured = program.module()
    for batch, height, width in [(3, 65, 71), (2, 230, 99)]:
        x = torch.randn(batch, 3, height, width)
        with torch.no_grad():
            expected = model(x)
            features = captured(x)
        assert len(features) == len(expected) == 4
        for out, ref in zip(features, expected):
            assert out.shape == ref.shape
            torch.testing.assert_close(out, ref)
