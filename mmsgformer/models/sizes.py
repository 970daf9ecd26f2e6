"""Size-oblivious helpers: the rules that let one traced graph of the model serve every size.

In eager execution every size is a plain ``int``. A tracer that keeps batch, height and width
dynamic (``torch.export``, and the ONNX export built on it) hands the model symbolic sizes
(``torch.SymInt``) and records one path through its Python code. Two kinds of code fix such a
graph to the traced size without an error, so that only a run at another size would notice:

* a branch on a size (``if pad == 0``, ``isinstance(size, int)``, a loop over a size-dependent
  number of chunks): the tracer records the branch taken and guards the size it depends on;
* a slice whose end a tracer cannot prove to lie within the sliced size (``x[:, :h]`` of a map
  padded from ``h``): the tracer fixes the input size to decide it.

So the forwards in :mod:`mmsgformer.models` ask the helpers here and branch on no size that
follows the batch, height or width themselves. Each helper states its rule:

* :func:`known_zero`, :func:`known_equal`, :func:`known_below`, :func:`known_at_most` - eager
  shortcuts (skipping empty padding, an identity resize, a kernel choice, an input check):
  true only for plain ints, so a trace always takes the general path, which is correct for
  every size;
* :func:`runs_eagerly` - checks that read values (NaN inputs) and the memory-saving autograd
  functions run in eager execution only;
* :func:`pad_map`, :func:`crop_map`, :func:`pad_tokens_front` - zero padding to a multiple and
  the crop back: where the sizes are symbolic the crop is a gather, whose output size a tracer
  knows;
* :func:`window_grid`, :func:`window_validity`, :func:`window_positions` - the padded map as
  windows, which window positions are real, and the gather from window-major order back to the
  map's tokens (a gather, not a transposition: one window per side needs no case of its own);
* :func:`upsample_cells` - a reduced map repeated over its cells and cropped, as gathers;
* :func:`chunk_bounds` - a loop over chunks of a size: one chunk where the size is symbolic.

Padded sizes are written as ``ceil_div(n, m) * m`` so that a tracer can prove the reshapes that
follow. ``tests/test_sizes.py`` captures the backbone with ``torch.export`` at dynamic batch,
height and width and runs the program at other sizes against eager execution.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from ..utils.compat import is_tracing

Size = Union[int, torch.SymInt]


# ---------------------------------------------------------------- eager shortcuts
def known_zero(size: Size) -> bool:
    """Whether ``size`` is a plain int equal to 0 (False for symbolic sizes of a trace)."""
    return isinstance(size, int) and size == 0


def known_equal(sizes: Sequence[Size], values: Sequence[int]) -> bool:
    """Whether all ``sizes`` are plain ints equal to ``values`` (False where one is symbolic)."""
    return all(isinstance(size, int) for size in sizes) and tuple(sizes) == tuple(values)


def known_below(size: Size, minimum: int) -> bool:
    """Whether ``size`` is a plain int below ``minimum`` (False for symbolic sizes: an exported
    program's dimensions carry their own minimum)."""
    return isinstance(size, int) and size < minimum


def known_at_most(size: Size, limit: int) -> bool:
    """Whether ``size`` is a plain int of at most ``limit`` (False for symbolic sizes)."""
    return isinstance(size, int) and size <= limit


def runs_eagerly() -> bool:
    """Whether the model runs eagerly rather than being recorded into a graph (by an exporter or
    a compiler). Checks that read tensor values run only then (a trace cannot raise on a value,
    and would record the check), and so do the memory-saving autograd functions (a compiler
    plans its own memory)."""
    return not is_tracing()


def ceil_div(n: Size, divisor: int) -> Size:
    """``ceil(n / divisor)`` for a non-negative size."""
    return (n + divisor - 1) // divisor


# ---------------------------------------------------------------- padding and crop
def pad_map(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pads a ``(B, H, W, ...)`` map at the bottom and right to multiples of ``multiple``."""
    pad_h = ceil_div(x.shape[1], multiple) * multiple - x.shape[1]
    pad_w = ceil_div(x.shape[2], multiple) * multiple - x.shape[2]
    if known_zero(pad_h) and known_zero(pad_w):
        return x
    trailing = (0, 0) * (x.dim() - 3)
    return F.pad(x, trailing + (0, pad_w, 0, pad_h))


def crop_map(x: torch.Tensor, hw_shape: Tuple[Size, Size]) -> torch.Tensor:
    """The top-left ``hw_shape`` of a ``(B, H', W', ...)`` map padded by :func:`pad_map`.

    A slice where the sizes are plain ints; for symbolic sizes a gather of the first ``H`` rows
    and ``W`` columns, whose output size a tracer knows to be exactly ``hw_shape`` (it cannot
    prove a slice's end within the padded size, and would fix the input size instead).
    """
    height, width = hw_shape
    if isinstance(height, int) and isinstance(width, int):
        return x[:, :height, :width]
    rows = torch.arange(height, device=x.device)
    cols = torch.arange(width, device=x.device)
    return x.index_select(1, rows).index_select(2, cols)


def pad_tokens_front(tokens: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pads ``(B, n, C)`` tokens at the front of the sequence to a multiple of
    ``multiple``."""
    pad = ceil_div(tokens.shape[1], multiple) * multiple - tokens.shape[1]
    if known_zero(pad):
        return tokens
    return F.pad(tokens, (0, 0, pad, 0))


# ---------------------------------------------------------------- windows
def window_grid(x: torch.Tensor, window: int) -> Tuple[torch.Tensor, Size, Size]:
    """A ``(B, H, W, C)`` map zero-padded to multiples of ``window`` and viewed as
    ``(B, rows, window, cols, window, C)``, with the number of window rows and columns."""
    rows, cols = ceil_div(x.shape[1], window), ceil_div(x.shape[2], window)
    grid = pad_map(x, window).reshape(x.shape[0], rows, window, cols, window, x.shape[3])
    return grid, rows, cols


def window_positions(
    hw_shape: Tuple[Size, Size], window: int, device: torch.device
) -> torch.Tensor:
    """For every token of the map (row-major), its index in the window-major order
    ``(window row, window column, row in the window, column in the window)`` of the padded
    map: a gather, not a transposition, so that a tracer needs no case for one window."""
    rows = torch.arange(hw_shape[0], device=device)
    cols = torch.arange(hw_shape[1], device=device)
    cell = (rows // window)[:, None] * ceil_div(hw_shape[1], window) + (cols // window)[None, :]
    inner = (rows % window)[:, None] * window + (cols % window)[None, :]
    return (cell * (window * window) + inner).flatten()


def window_validity(
    batch: Size,
    rows: Size,
    cols: Size,
    hw_shape: Tuple[Size, Size],
    window: int,
    device: torch.device,
    dtype: torch.dtype,
) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Key mask and query weights of the padded windows of a map; ``(None, None)`` where there
    is known to be no padding.

    Returns a boolean key mask ``(B * rows * cols, 1, 1, w * w)`` and query weights
    ``(B * rows * cols, w * w)`` in ``dtype``, ``1 / (w * w)`` for real tokens and 0 for
    padding: a window's local significance then sums to (its real tokens) / ``w * w``, so every
    real token's expected share is as in full windows, and border tokens are not favoured.
    """
    w = window
    if known_zero(rows * w - hw_shape[0]) and known_zero(cols * w - hw_shape[1]):
        return None, None
    # (window, position in the window) -> row or column of the padded map
    offsets = torch.arange(w, device=device)
    valid_rows = torch.arange(rows, device=device)[:, None] * w + offsets < hw_shape[0]
    valid_cols = torch.arange(cols, device=device)[:, None] * w + offsets < hw_shape[1]
    valid = valid_rows[:, None, :, None] & valid_cols[None, :, None, :]
    valid = valid.reshape(rows * cols, w * w).repeat(batch, 1)
    return valid[:, None, None, :], valid.to(dtype) / (w * w)


# ---------------------------------------------------------------- significance
def upsample_cells(x: torch.Tensor, hw_shape: Tuple[Size, Size], cell: int) -> torch.Tensor:
    """A ``(B, h, w)`` map of cells, each covering ``cell x cell`` positions of the padded
    ``hw_shape`` map, as ``(B, H, W)``: every position gets its cell's value. One gather per
    axis (a repeat and a crop would need a slice that a tracer cannot prove)."""
    rows = torch.arange(hw_shape[0], device=x.device) // cell
    cols = torch.arange(hw_shape[1], device=x.device) // cell
    return x.index_select(1, rows).index_select(2, cols)


# ---------------------------------------------------------------- loops
def chunk_bounds(
    length: Size, item_elements: Size, chunk_elements: int
) -> List[Tuple[int, Optional[int]]]:
    """``(start, end)`` bounds of consecutive chunks of ``range(length)`` of about
    ``chunk_elements`` elements, each item holding ``item_elements``; one chunk ``(0, None)``
    (all of it) where a size is symbolic (a traced graph has no loop over a dynamic number of
    chunks)."""
    if not (isinstance(length, int) and isinstance(item_elements, int)):
        return [(0, None)]
    step = max(1, chunk_elements // max(1, item_elements))
    return [(start, start + step) for start in range(0, length, step)]
