"""Ground truth beside predictions for several images, readable at a glance.

:func:`predict_images` runs a detector (mmdet) on image files
(:func:`mmsgformer.apis.inference_model`); :func:`ground_truth_of` reads the
annotations of images that belong to the config's test dataset; :func:`draw_prediction_grid`
draws one ground-truth / prediction pair per image (small images are enlarged: the panels have a
fixed size on the page, so boxes, masks and labels stay legible).
"""

from __future__ import annotations

import os
import os.path as osp
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from ..apis import inference_model
from ..engine.preflight import dataset_path_problems

PANEL_INCHES = (4.8, 3.84)
"""Width and height of one panel (a 160x128 image is drawn 3x enlarged at 100 dpi)."""
TITLE_INCHES = 0.45  # above every panel
GAP_INCHES = 0.15  # between panels
HEADING_INCHES = 0.55  # above everything, when there is a title
DPI = 100


@dataclass
class Instances:
    """Objects of one image: boxes ``(N, 4)`` x1y1x2y2, labels ``(N,)``, masks ``(N, H, W)``
    (bool, or None) and scores ``(N,)`` (None for ground truth)."""

    boxes: np.ndarray
    labels: np.ndarray
    masks: Optional[np.ndarray] = None
    scores: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class ImageResult:
    """One image with its ground truth (None when unknown) and the model's predictions."""

    path: str
    image: np.ndarray  # RGB uint8
    predictions: Instances
    ground_truth: Optional[Instances] = None


def _polygons_to_mask(polygons: Sequence[Sequence[float]], hw) -> np.ndarray:
    import cv2

    mask = np.zeros(hw, np.uint8)
    for poly in polygons:
        pts = np.round(np.asarray(poly, np.float64).reshape(-1, 2)).astype(np.int32)
        cv2.fillPoly(mask, [pts], 1)
    return mask.astype(bool)


def ground_truth_of(dataset, paths: Sequence[str], hws: Sequence) -> List[Optional[Instances]]:
    """The annotated objects of each image in ``paths`` that ``dataset`` holds (else None).

    Args:
        dataset: A built mmdet dataset (e.g. ``CocoDataset``) whose data infos have
            ``img_path`` and ``instances`` (``bbox``, ``bbox_label``, optional polygon ``mask``).
        paths: Image files (matched by absolute path, else by file name).
        hws: ``(height, width)`` of each image (for the masks).
    """
    by_path, by_name = {}, {}
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        by_path[osp.abspath(info['img_path'])] = info
        by_name.setdefault(osp.basename(info['img_path']), info)
    found: List[Optional[Instances]] = []
    for path, hw in zip(paths, hws):
        info = by_path.get(osp.abspath(path)) or by_name.get(osp.basename(path))
        if info is None:
            found.append(None)
            continue
        objects = [o for o in info.get('instances', []) if not o.get('ignore_flag', 0)]
        boxes = np.array([o['bbox'] for o in objects], np.float64).reshape(-1, 4)
        labels = np.array([o['bbox_label'] for o in objects], np.int64)
        masks = None
        if objects and all(isinstance(o.get('mask'), list) for o in objects):
            masks = np.stack([_polygons_to_mask(o['mask'], hw) for o in objects])
        found.append(Instances(boxes, labels, masks))
    return found


def test_dataset_ground_truth(cfg, results: Sequence['ImageResult']) -> None:
    """Fills in ``ground_truth`` of the results whose images belong to the config's test set.

    Nothing happens when the test dataset's files are missing.

    Args:
        cfg: The detector's config (its ``test_dataloader.dataset``).
        results: Results of :func:`predict_images` (changed in place).
    """
    from mmdet.registry import DATASETS

    if dataset_path_problems(cfg, ['test_dataloader']):
        return
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    found = ground_truth_of(
        dataset, [r.path for r in results], [r.image.shape[:2] for r in results]
    )
    for result, gt in zip(results, found):
        result.ground_truth = gt


def predict_images(model, paths: Sequence[str], score_thr: float) -> List[ImageResult]:
    """Runs an mmdet detector on image files and keeps predictions scoring ``>= score_thr``.

    Args:
        model: A detector with ``model.cfg`` (see :func:`mmsgformer.apis.init_model`).
        paths: Image files.
        score_thr: Lowest score kept.
    """
    import mmcv

    results = []
    for path in paths:
        pred = inference_model(model, path).pred_instances
        keep = (pred.scores >= score_thr).cpu().numpy()
        masks = pred.masks.cpu().numpy()[keep].astype(bool) if 'masks' in pred else None
        results.append(
            ImageResult(
                path=path,
                image=mmcv.imread(path, channel_order='rgb'),
                predictions=Instances(
                    pred.bboxes.cpu().numpy()[keep],
                    pred.labels.cpu().numpy()[keep],
                    masks,
                    pred.scores.cpu().numpy()[keep],
                ),
            )
        )
    return results


def class_names(model, cfg) -> List[str]:
    """The model's class names: its ``dataset_meta`` (from the checkpoint), else the config's
    test dataset ``metainfo``."""
    classes = (getattr(model, 'dataset_meta', None) or {}).get('classes') or (
        (cfg.test_dataloader.dataset.get('metainfo') or {}).get('classes')
    )
    if not classes:
        raise ValueError(
            'class names unknown: the checkpoint has no meta.dataset_meta and the '
            'config no test_dataloader.dataset.metainfo.classes; add the latter'
        )
    return list(classes)


def class_colours(num_classes: int) -> np.ndarray:
    """One distinct RGB colour in [0, 1] per class (matplotlib's tab10/tab20)."""
    from matplotlib import colormaps

    cmap = colormaps['tab10' if num_classes <= 10 else 'tab20']
    return np.array([cmap(i % cmap.N)[:3] for i in range(num_classes)])


def _draw_panel(
    ax,
    image: np.ndarray,
    objects: Optional[Instances],
    classes: Sequence[str],
    colours: np.ndarray,
    title: str,
) -> None:
    from matplotlib.patches import Rectangle

    shown = image.astype(np.float32) / 255.0
    if objects is not None and objects.masks is not None:
        for mask, label in zip(objects.masks, objects.labels):
            shown[mask] = 0.5 * shown[mask] + 0.5 * colours[label]
    ax.imshow(shown, interpolation='nearest')
    ax.set_title(title, fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])
    if objects is None:
        ax.text(
            0.5,
            0.5,
            'no annotation for this image',
            transform=ax.transAxes,
            ha='center',
            va='center',
            fontsize=11,
            color='white',
            backgroundcolor='black',
        )
        return
    for i, (box, label) in enumerate(zip(objects.boxes, objects.labels)):
        x1, y1, x2, y2 = box
        colour = colours[label]
        ax.add_patch(
            Rectangle(
                (x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=2
            )
        )
        text = (
            classes[label]
            if objects.scores is None
            else f'{classes[label]} {objects.scores[i]:.2f}'
        )
        inside = y1 < 0.08 * image.shape[0]  # no room above the box: the label goes inside
        ax.text(
            x1 - 0.5,
            y1 + 0.5 if inside else y1 - 1.5,
            text,
            fontsize=10,
            color='white',
            va='top' if inside else 'bottom',
            clip_on=True,
            bbox=dict(facecolor=colour, edgecolor='none', pad=1.5, alpha=0.9),
        )


def draw_prediction_grid(
    results: Sequence[ImageResult],
    classes: Sequence[str],
    out_file: str,
    score_thr: float,
    pairs_per_row: int = 2,
    title: Optional[str] = None,
) -> str:
    """One picture: for every image its ground truth beside the prediction.

    Args:
        results: Images with predictions (and ground truth), e.g. from :func:`predict_images`.
        classes: Class names, indexed by label.
        out_file: PNG to write (its folder is created).
        score_thr: The score threshold the predictions were filtered with (shown in titles).
        pairs_per_row: Ground-truth/prediction pairs side by side in one row.
        title: Heading of the picture.

    Returns:
        ``out_file``.
    """
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    if not results:
        raise ValueError('no images to draw')
    colours = class_colours(len(classes))
    pairs_per_row = max(1, min(pairs_per_row, len(results)))
    rows = -(-len(results) // pairs_per_row)
    cols = 2 * pairs_per_row
    (panel_w, panel_h), heading = PANEL_INCHES, HEADING_INCHES if title else 0.0
    fig_w = cols * panel_w + (cols + 1) * GAP_INCHES
    fig_h = heading + rows * (TITLE_INCHES + panel_h) + GAP_INCHES
    fig, axes = plt.subplots(rows, cols, squeeze=False, figsize=(fig_w, fig_h))
    fig.subplots_adjust(
        left=GAP_INCHES / fig_w,
        right=1 - GAP_INCHES / fig_w,
        bottom=GAP_INCHES / fig_h,
        top=1 - (heading + TITLE_INCHES) / fig_h,
        wspace=GAP_INCHES / panel_w,
        hspace=TITLE_INCHES / panel_h,
    )
    for ax in axes.ravel():
        ax.set_axis_off()
    for i, result in enumerate(results):
        row, col = divmod(i, pairs_per_row)
        name = osp.basename(result.path)
        gt = result.ground_truth
        for ax, objects, what in (
            (axes[row, 2 * col], gt, 'ground truth' + (f' ({len(gt)})' if gt is not None else '')),
            (
                axes[row, 2 * col + 1],
                result.predictions,
                f'prediction ({len(result.predictions)} with score >= {score_thr:g})',
            ),
        ):
            ax.set_axis_on()
            _draw_panel(ax, result.image, objects, classes, colours, f'{name}: {what}')
    if title:
        fig.suptitle(title, fontsize=13, y=1 - 0.15 / fig_h, va='top')
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    fig.savefig(out_file, dpi=DPI)
    plt.close(fig)
    return out_file
