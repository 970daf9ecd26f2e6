"""Pictures of SG-Former's significance maps and token allocation.

The library behind ``tools/visualize_significance.py``.

For each image (run through the config's test pipeline and data preprocessor, see
:mod:`mmsgformer.apis.pipeline`) :func:`visualize_image` writes, per stage with a
significance map:

* ``stage<k>_significance.png`` - the image with the stage's significance (relative to uniform
  attention) as a heat-map, title and colour bar;
* ``stage<k>_allocation.png`` - the image coloured by how many tokens were merged into each
  token's key in the following significance-guided block (discrete colour bar);
* ``summary.png`` - all stages side by side (significance above, allocation below);
* ``raw/stage<k>_*.png`` - the same overlays without text, exactly at the original image size.

What the colours mean and how the geometry is followed: ``docs/significance.md``.
"""

from __future__ import annotations

import math
import os
import os.path as osp
import textwrap
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..apis.pipeline import Geometry, run_pipeline

SIGNIFICANCE_CMAP = 'turbo'
ALLOCATION_CMAP = 'viridis'
OUTSIDE_DIM = 0.35  # brightness of image parts the network did not see


def uniform_significance(hw: Tuple[int, int], sr_ratio: int, window: int) -> np.ndarray:
    """Significance ``(H, W)`` that uniform attention would give (see the module docstring)."""
    h, w = hw
    reduced_keys = math.ceil(h / sr_ratio) * math.ceil(w / sr_ratio)
    return np.full((h, w), 1.0 / window**2 + 1.0 / reduced_keys)


def to_image(stage_map: np.ndarray, stride: int, geometry: Geometry, mode: str) -> np.ndarray:
    """Samples a stage map (one ``stride x stride`` input cell per token) at the original pixels.

    ``mode`` is 'bilinear' (between token centres) or 'nearest' (the token's cell).
    """
    import torch
    import torch.nn.functional as F

    h, w = stage_map.shape
    ys, xs = geometry.input_coords()
    gy = torch.from_numpy(2 * ys / (stride * h) - 1).float()
    gx = torch.from_numpy(2 * xs / (stride * w) - 1).float()
    grid = torch.stack(torch.meshgrid(gy, gx, indexing='ij')[::-1], dim=-1)[None]
    values = torch.from_numpy(np.ascontiguousarray(stage_map, dtype=np.float64)).float()
    out = F.grid_sample(
        values[None, None], grid, mode=mode, padding_mode='border', align_corners=False
    )
    return out[0, 0].numpy()


def select_records(records: List[dict], block: int) -> Dict[int, Tuple[dict, Optional[dict]]]:
    """Per stage: the chosen hybrid-scale record and the record whose allocation is shown
    (the chosen one, else the closest earlier one with an allocation)."""
    by_stage: Dict[int, List[dict]] = {}
    for record in records:
        by_stage.setdefault(int(record['stage']), []).append(record)
    chosen = {}
    for stage, recs in sorted(by_stage.items()):
        index = block if -len(recs) <= block < len(recs) else (-1 if block < 0 else len(recs) - 1)
        index %= len(recs)
        alloc = next((r for r in reversed(recs[: index + 1]) if 'allocation' in r), None)
        chosen[stage] = (recs[index], alloc)
    return chosen


# ---------------------------------------------------------------------------------- drawing
def blend(image: np.ndarray, colours: np.ndarray, seen: np.ndarray, alpha: float) -> np.ndarray:
    """Image with ``colours`` (RGB float in [0, 1]) laid over the seen part, the rest dimmed."""
    img = image.astype(np.float32) / 255.0
    out = np.where(seen[..., None], (1 - alpha) * img + alpha * colours, OUTSIDE_DIM * img)
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


class StagePanel:
    """Everything drawn for one stage: coloured overlays, colour scales and texts."""

    def __init__(
        self,
        stage: int,
        stride: int,
        sig_record: dict,
        alloc_record: Optional[dict],
        image: np.ndarray,
        geometry: Geometry,
        sr_ratio: int,
        window: int,
        merge_sizes: Sequence[int],
        alpha: float,
    ) -> None:
        from matplotlib import colormaps
        from matplotlib.colors import BoundaryNorm, ListedColormap, Normalize

        self.stage, self.stride = stage, stride
        self.block = int(sig_record['block'])
        seen = geometry.seen()
        sig = sig_record['significance'][0].float().cpu().numpy()
        relative = sig / uniform_significance(sig.shape, sr_ratio, window)
        self.map_hw = sig.shape
        upsampled = to_image(relative, stride, geometry, 'bilinear')
        visible = upsampled[seen] if seen.any() else upsampled.ravel()
        low, high = float(visible.min()), float(visible.max())
        if high - low < 1e-6 * max(1.0, abs(high)):
            low, high = low - 1e-3, high + 1e-3
        self.sig_norm = Normalize(low, high)
        self.sig_cmap = colormaps[SIGNIFICANCE_CMAP]
        self.significance = blend(
            image, self.sig_cmap(self.sig_norm(upsampled))[..., :3], seen, alpha
        )
        self.sig_range = (float(relative.min()), float(relative.max()))

        self.allocation = None
        if alloc_record is not None:
            alloc = alloc_record['allocation'][0].cpu().numpy()
            sizes = sorted(
                set(int(v) for v in merge_sizes) | set(np.unique(alloc).tolist()), reverse=True
            )  # coarse first
            self.alloc_block = int(alloc_record['block']) + 1
            self.merge_sizes = sizes
            self.alloc_share = [float((alloc == s).mean()) for s in sizes]
            index = np.searchsorted(-np.asarray(sizes), -alloc)  # position in `sizes`
            upsampled = to_image(index.astype(np.float64), stride, geometry, 'nearest')
            upsampled = np.rint(upsampled).astype(int)
            base = colormaps[ALLOCATION_CMAP]
            self.alloc_cmap = ListedColormap(
                base(np.linspace(0.05, 0.95, len(sizes))) if len(sizes) > 1 else base([0.5])
            )
            self.alloc_norm = BoundaryNorm(np.arange(len(sizes) + 1) - 0.5, len(sizes))
            self.allocation = blend(
                image, self.alloc_cmap(self.alloc_norm(upsampled))[..., :3], seen, alpha
            )

    # texts -------------------------------------------------------------------------------
    def sig_title(self) -> str:
        return (
            f'Stage {self.stage + 1} (stride {self.stride}, {self.map_hw[0]}x'
            f'{self.map_hw[1]} tokens): significance of hybrid-scale block {self.block}'
        )

    SIG_LABEL = 'significance / uniform attention\n(1 = average; colour range: min-max of map)'

    def alloc_title(self) -> str:
        return (
            f'Stage {self.stage + 1} (stride {self.stride}): token allocation of block '
            f'{self.alloc_block} (significance-guided)'
        )

    ALLOC_LABEL = "tokens merged into each token's key\n(fewer = finer = more attention)"

    def alloc_ticklabels(self) -> List[str]:
        return [f'{s} per key: {100 * p:.0f}%' for s, p in zip(self.merge_sizes, self.alloc_share)]

    # colour bars -------------------------------------------------------------------------
    def sig_colorbar(self, fig, **kwargs):
        from matplotlib.cm import ScalarMappable

        bar = fig.colorbar(ScalarMappable(self.sig_norm, self.sig_cmap), **kwargs)
        bar.set_label(self.SIG_LABEL, fontsize=8)
        bar.ax.tick_params(labelsize=8)
        return bar

    def alloc_colorbar(self, fig, **kwargs):
        from matplotlib.cm import ScalarMappable

        bar = fig.colorbar(
            ScalarMappable(self.alloc_norm, self.alloc_cmap),
            ticks=np.arange(len(self.merge_sizes)),
            **kwargs,
        )
        bar.ax.set_yticklabels(self.alloc_ticklabels(), fontsize=8)
        bar.set_label(self.ALLOC_LABEL, fontsize=8)
        bar.ax.invert_yaxis()  # coarse at the top
        return bar


def display_scale(hw: Tuple[int, int]) -> float:
    """Scale of the image in the per-stage figures: small images enlarged, huge ones shrunk."""
    longest = max(hw)
    if longest < 480:
        return 480.0 / longest
    if longest > 1600:
        return 1600.0 / longest
    return 1.0


def figure_size(hw: Tuple[int, int]) -> Tuple[int, int]:
    """``(width, height)`` in pixels of a per-stage figure of an image of size ``hw``."""
    scale = display_scale(hw)
    width, height = round(hw[1] * scale), round(hw[0] * scale)
    return width + FIG_LEFT + FIG_RIGHT, height + FIG_TOP + FIG_BOTTOM


FIG_LEFT, FIG_RIGHT, FIG_TOP, FIG_BOTTOM, DPI = 10, 250, 70, 10, 100


def save_stage_figure(path: str, overlay: np.ndarray, title: str, colorbar) -> None:
    """The overlay at display scale, a title above and a colour bar at the right."""
    import matplotlib.pyplot as plt

    hw = overlay.shape[:2]
    fig_w, fig_h = figure_size(hw)
    width, height = fig_w - FIG_LEFT - FIG_RIGHT, fig_h - FIG_TOP - FIG_BOTTOM
    fig = plt.figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI)
    ax = fig.add_axes((FIG_LEFT / fig_w, FIG_BOTTOM / fig_h, width / fig_w, height / fig_h))
    ax.imshow(overlay, interpolation='nearest' if display_scale(hw) >= 1 else 'antialiased')
    ax.set_axis_off()
    cax = fig.add_axes(
        ((FIG_LEFT + width + 12) / fig_w, FIG_BOTTOM / fig_h, 16 / fig_w, height / fig_h)
    )
    colorbar(fig, cax=cax)
    chars = max(40, int(fig_w / 6.5))
    fig.text(
        0.5,
        1 - 6 / fig_h,
        '\n'.join(textwrap.wrap(title, chars)[:4]),
        ha='center',
        va='top',
        fontsize=9,
    )
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def save_summary(path: str, image_name: str, weights: str, panels: List[StagePanel]) -> None:
    import matplotlib.pyplot as plt

    h, w = panels[0].significance.shape[:2]
    cols, rows = len(panels), 2
    panel_w = 4.0
    panel_h = max(1.5, min(8.0, panel_w * h / w))
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * (panel_w + 1.9), rows * (panel_h + 0.9) + 0.9), squeeze=False
    )
    for col, panel in enumerate(panels):
        ax = axes[0, col]
        ax.imshow(panel.significance)
        ax.set_title('\n'.join(textwrap.wrap(panel.sig_title(), 40)), fontsize=9)
        ax.set_axis_off()
        panel.sig_colorbar(fig, ax=ax, fraction=0.046, pad=0.03)
        ax = axes[1, col]
        ax.set_axis_off()
        if panel.allocation is not None:
            ax.imshow(panel.allocation)
            ax.set_title('\n'.join(textwrap.wrap(panel.alloc_title(), 40)), fontsize=9)
            panel.alloc_colorbar(fig, ax=ax, fraction=0.046, pad=0.03)
        else:
            ax.text(
                0.5,
                0.5,
                'no significance-guided block follows',
                ha='center',
                va='center',
                transform=ax.transAxes,
                fontsize=9,
            )
    fig.suptitle(
        f'SG-Former significance (top) and token allocation (bottom): {image_name}\n{weights}',
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def write_png(path: str, rgb: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(path, np.ascontiguousarray(rgb[..., ::-1])):
        raise OSError(f'could not write {path}')


# ---------------------------------------------------------------------------------- images
def visualize_image(
    model,
    transforms: list,
    path: str,
    index: int,
    out_dir: str,
    weights: str,
    block: int = -1,
    alpha: float = 0.5,
) -> List[str]:
    """Writes the significance and allocation pictures of one image into ``out_dir``.

    Args:
        model: A model with an SGFormer ``backbone`` and a ``data_preprocessor`` (eval mode).
        transforms: The built test pipeline (:func:`mmsgformer.apis.build_test_transforms`).
        path: Image file.
        index: Image index (the sample id in the pipeline).
        out_dir: Output folder of this image.
        weights: Where the weights came from, shown in the titles.
        block: Which hybrid-scale block of each stage to show (index among the stage's
            hybrid-scale blocks, Python style).
        alpha: Opacity of the colours over the image.

    Returns:
        The files written.
    """
    import torch
    from mmengine.dataset import pseudo_collate

    from mmsgformer.models.attention import LOCAL_WINDOW, REALLOCATION_SPECS

    packed, geometry, image = run_pipeline(transforms, path, index)
    with torch.no_grad():
        data = model.data_preprocessor(pseudo_collate([packed]), False)
        _, records = model.backbone.forward_with_significance(data['inputs'])
    if not records:
        raise RuntimeError('the backbone returned no significance maps (no hybrid-scale blocks)')
    input_hw = tuple(data['inputs'].shape[-2:])
    backbone = model.backbone
    sr_ratios = backbone.arch['sr_ratios']
    name = osp.basename(path)
    suffix = '' if weights.startswith('weights') else f' [{weights}]'
    os.makedirs(osp.join(out_dir, 'raw'), exist_ok=True)
    written, panels = [], []
    for stage, (sig_record, alloc_record) in select_records(records, block).items():
        stride = 4 * 2**stage
        expected = tuple(math.ceil(v / stride) for v in input_hw)
        actual = tuple(sig_record['significance'].shape[-2:])
        if actual != expected:
            raise RuntimeError(
                f'stage {stage + 1} map is {actual}, expected {expected} for an input of {input_hw}'
            )
        spec = REALLOCATION_SPECS.get(sr_ratios[stage])
        panel = StagePanel(
            stage,
            stride,
            sig_record,
            alloc_record,
            image,
            geometry,
            sr_ratios[stage],
            LOCAL_WINDOW,
            spec.merge_sizes if spec else (),
            alpha,
        )
        panels.append(panel)
        tag = f'stage{stage + 1}'
        files = [
            (
                f'{tag}_significance.png',
                panel.significance,
                f'{name}: {panel.sig_title()}{suffix}',
                panel.sig_colorbar,
            )
        ]
        if panel.allocation is not None:
            files.append(
                (
                    f'{tag}_allocation.png',
                    panel.allocation,
                    f'{name}: {panel.alloc_title()}{suffix}',
                    panel.alloc_colorbar,
                )
            )
        for filename, overlay, title, colorbar in files:
            figure = osp.join(out_dir, filename)
            save_stage_figure(figure, overlay, title, colorbar)
            raw = osp.join(out_dir, 'raw', filename)
            write_png(raw, overlay)
            written += [figure, raw]
    summary = osp.join(out_dir, 'summary.png')
    save_summary(summary, name, weights, panels)
    written.append(summary)
    return written


def output_names(paths: Sequence[str]) -> List[str]:
    """One folder name per image: the file name without extension, made unique."""
    names, seen = [], set()
    for path in paths:
        base = osp.splitext(osp.basename(path))[0] or 'image'
        name, n = base, 1
        while name in seen:
            n += 1
            name = f'{base}_{n}'
        seen.add(name)
        names.append(name)
    return names


def visualize_significance(
    model,
    transforms: list,
    images: Sequence[str],
    out: str,
    weights: str,
    block: int = -1,
    alpha: float = 0.5,
) -> List[str]:
    """:func:`visualize_image` for several images, each into ``out/<image name>/``.

    Args:
        model: See :func:`visualize_image`.
        transforms: See :func:`visualize_image`.
        images: Image files (:func:`mmsgformer.apis.expand_images` turns a folder or glob into
            them).
        out: Output folder.
        weights: See :func:`visualize_image`.
        block: See :func:`visualize_image`.
        alpha: See :func:`visualize_image`.

    Returns:
        The files written.
    """
    if not hasattr(model.backbone, 'forward_with_significance'):
        raise TypeError(
            f'the backbone {type(model.backbone).__name__} has no '
            f'forward_with_significance (only SGFormer has significance maps)'
        )
    written = []
    for index, (path, name) in enumerate(zip(images, output_names(images))):
        written += visualize_image(
            model, transforms, path, index, osp.join(out, name), weights, block, alpha
        )
    return written
