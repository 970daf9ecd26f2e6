"""Small, deterministic synthetic datasets of coloured shapes (the demos and the tests use them).

* :func:`generate_coco_shapes` - instance segmentation in COCO format (``CocoDataset`` reads it
  unchanged): classes ``circle``, ``square``, ``triangle``;
* :func:`generate_ade_shapes` - semantic segmentation in ADE20K's folder layout and label
  convention (mmseg's ADE20K pipelines run on it unchanged): ``background``, ``circle``,
  ``square``, ``triangle``, ``cross``.

Both are fully determined by their arguments: every image has its own
``numpy.random.Generator`` seeded from ``(seed, split, index)``, so the same call always writes
byte-identical files. The command lines are ``tools/dataset_generators/generate_*_shapes.py``.
"""

from __future__ import annotations

import json
import os
import os.path as osp
from typing import List, Sequence, Tuple

import cv2
import numpy as np

COCO_SHAPES_CLASSES = ('circle', 'square', 'triangle')
"""Category names of ``coco_shapes`` (category ids 1, 2, 3)."""
ADE_SHAPES_CLASSES = ('background', 'circle', 'square', 'triangle', 'cross')
"""Class names of ``ade_shapes`` (train ids 0..4; PNG value = train id + 1)."""
ADE_SHAPES_PALETTE = [[50, 50, 50], [230, 25, 75], [60, 180, 75], [0, 130, 200], [255, 225, 25]]
"""Display colours of :data:`ADE_SHAPES_CLASSES`."""

_COCO_SPLIT_IDS = {'train': 1, 'val': 2}
_ADE_SPLITS = (('training', 'train'), ('validation', 'val'))


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    """``points`` (Nx2) rotated by ``angle`` radians about the origin."""
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


# ------------------------------------------------------------------------------- coco_shapes
def _coco_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random textured background (gradient, stripes or checkerboard + noise), RGB uint8."""
    kind = rng.integers(3)
    c0 = rng.uniform(0, 255, size=3)
    c1 = rng.uniform(0, 255, size=3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 0:  # linear gradient in a random direction
        ang = rng.uniform(0, np.pi)
        t = np.cos(ang) * xx + np.sin(ang) * yy
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    elif kind == 1:  # stripes
        ang = rng.uniform(0, np.pi)
        period = rng.uniform(6, 24)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (np.cos(ang) * xx + np.sin(ang) * yy) / period)
    else:  # checkerboard
        cell = int(rng.integers(6, 20))
        t = (((xx // cell) + (yy // cell)) % 2).astype(np.float32)
    img = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    # damp the background contrast a little so objects stay the salient thing
    img = 0.6 * img + 0.4 * img.mean()
    img += rng.normal(0, 12, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _coco_polygon(
    rng: np.random.Generator, label: int, cx: float, cy: float, size: float
) -> np.ndarray:
    """Vertices (float, Nx2) of a shape of extent ``size`` centred at ``(cx, cy)``."""
    r = size / 2.0
    rot = rng.uniform(0, 2 * np.pi)
    if label == 0:  # circle (or slight ellipse) as a 32-gon
        ang = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        ry = r * rng.uniform(0.8, 1.0)
        pts = np.stack([r * np.cos(ang), ry * np.sin(ang)], 1)
    elif label == 1:  # square
        s = r / np.sqrt(2) * 1.25
        pts = np.array([[-s, -s], [s, -s], [s, s], [-s, s]])
    else:  # triangle (roughly equilateral)
        ang = np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
        ang = ang + rng.uniform(-0.15, 0.15, size=3)
        pts = np.stack([r * np.cos(ang), r * np.sin(ang)], 1)
    return _rotate(pts, rot) + np.array([cx, cy])


def _saturated_colour(rng: np.random.Generator, background_mean: np.ndarray) -> Tuple[int, ...]:
    """A saturated colour that differs clearly from the background mean."""
    for _ in range(20):
        hsv = np.uint8([[[rng.integers(0, 180), rng.integers(150, 256), rng.integers(150, 256)]]])
        col = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64)
        if np.abs(col - background_mean).sum() > 150:
            break
    return tuple(int(v) for v in col)


def _coco_image(
    rng: np.random.Generator, w: int, h: int, max_objects: int, min_size: int, max_size: int
) -> Tuple[np.ndarray, List[tuple]]:
    """An RGB image and its objects ``(label, polygon Nx2 int32, mask HxW uint8)``.

    Objects keep a 3-pixel gap, so no polygon is occluded and every mask is exactly the
    rasterised polygon written to the annotations.
    """
    img = _coco_background(rng, h, w)
    bg_mean = img.reshape(-1, 3).mean(0)
    n = int(rng.integers(1, max_objects + 1))
    occupied = np.zeros((h, w), dtype=bool)
    objects = []
    for _ in range(n):
        for _attempt in range(30):
            label = int(rng.integers(len(COCO_SHAPES_CLASSES)))
            size = rng.uniform(min_size, max_size)
            cx = rng.uniform(size / 2 + 1, w - size / 2 - 1)
            cy = rng.uniform(size / 2 + 1, h - size / 2 - 1)
            poly = np.round(_coco_polygon(rng, label, cx, cy, size)).astype(np.int32)
            poly[:, 0] = np.clip(poly[:, 0], 0, w - 1)
            poly[:, 1] = np.clip(poly[:, 1], 0, h - 1)
            mask = np.zeros((h, w), dtype=np.uint8)
            cv2.fillPoly(mask, [poly], 1)
            grown = cv2.dilate(mask, np.ones((7, 7), np.uint8)).astype(bool)
            if mask.sum() < 30 or (grown & occupied).any():
                continue
            occupied |= mask.astype(bool)
            cv2.fillPoly(img, [poly], _saturated_colour(rng, bg_mean))
            objects.append((label, poly, mask))
            break
    return img, objects


def _coco_split(
    out_dir: str,
    split: str,
    num: int,
    img_size: Sequence[int],
    max_objects: int,
    min_size: int,
    max_size: int,
    seed: int,
) -> Tuple[int, int]:
    """Writes one split's images and annotation file; returns (images, instances)."""
    w, h = img_size
    img_dir = osp.join(out_dir, split)
    os.makedirs(img_dir, exist_ok=True)
    images, annotations = [], []
    for idx in range(num):
        rng = np.random.default_rng([seed, _COCO_SPLIT_IDS[split], idx])
        img, objects = _coco_image(rng, w, h, max_objects, min_size, max_size)
        file_name = f'{idx:06d}.png'
        cv2.imwrite(osp.join(img_dir, file_name), img[..., ::-1])
        images.append(dict(id=idx + 1, file_name=file_name, width=w, height=h))
        for label, poly, mask in objects:
            ys, xs = np.nonzero(mask)
            x0, y0 = int(xs.min()), int(ys.min())
            bw, bh = int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=idx + 1,
                    category_id=label + 1,
                    segmentation=[[float(v) for v in poly.reshape(-1)]],
                    area=float(mask.sum()),
                    bbox=[x0, y0, bw, bh],
                    iscrowd=0,
                )
            )
    coco = dict(
        info=dict(description='mmsgformer coloured shapes demo dataset', version='1.0', seed=seed),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=[
            dict(id=i + 1, name=name, supercategory='shape')
            for i, name in enumerate(COCO_SHAPES_CLASSES)
        ],
    )
    ann_dir = osp.join(out_dir, 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    with open(osp.join(ann_dir, f'instances_{split}.json'), 'w') as f:
        json.dump(coco, f)
    return len(images), len(annotations)


def generate_coco_shapes(
    out_dir: str,
    num_train: int = 600,
    num_val: int = 120,
    img_size: Sequence[int] = (160, 128),
    max_objects: int = 4,
    min_size: int = 20,
    max_size: int = 56,
    seed: int = 0,
) -> dict[str, Tuple[int, int]]:
    """Writes ``coco_shapes``: images of 1..``max_objects`` filled shapes in COCO format.

    Every image shows non-overlapping shapes (:data:`COCO_SHAPES_CLASSES`) in random saturated
    colours, sizes and rotations on a textured background (a colour gradient, stripes or a
    checkerboard plus pixel noise). Instance masks are stored as COCO polygons and are exact:
    each shape is rasterised from the very polygon written to the annotations. Layout::

        out_dir/annotations/instances_train.json   out_dir/train/000000.png ...
        out_dir/annotations/instances_val.json     out_dir/val/000000.png ...

    Args:
        out_dir: Dataset root to create (existing files of the same names are overwritten).
        num_train: Number of training images.
        num_val: Number of validation images.
        img_size: Image ``(width, height)``.
        max_objects: Objects per image are drawn from ``1..max_objects``.
        min_size: Smallest object extent in pixels.
        max_size: Largest object extent in pixels (below the image's shorter side minus 2).
        seed: Seed of the whole dataset.

    Returns:
        ``{'train': (images, instances), 'val': (images, instances)}``.
    """
    if max_size >= min(img_size) - 2:
        raise ValueError(
            f'max_size={max_size} does not fit into images of {tuple(img_size)}: '
            f'use a max_size below {min(img_size) - 2} or larger images'
        )
    return {
        split: _coco_split(out_dir, split, num, img_size, max_objects, min_size, max_size, seed)
        for split, num in (('train', num_train), ('val', num_val))
    }


# -------------------------------------------------------------------------------- ade_shapes
def _ade_background(rng: np.random.Generator, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Smoothly shaded, lightly textured background; returns (float BGR image, mean colour)."""
    c0 = rng.uniform(20, 235, size=3)
    c1 = np.clip(c0 + rng.uniform(-60, 60, size=3), 0, 255)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    t = np.cos(angle) * xx + np.sin(angle) * yy
    t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    img = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    # low-frequency blotches, then fine noise
    blot = cv2.resize(
        rng.normal(0, 18, size=(6, 6, 3)).astype(np.float32),
        (size, size),
        interpolation=cv2.INTER_CUBIC,
    )
    img = img + blot
    return img, img.reshape(-1, 3).mean(0)


def _distinct_colour(rng: np.random.Generator, bg_mean: np.ndarray) -> np.ndarray:
    """A random colour far enough from the background to be visible."""
    for _ in range(100):
        col = rng.uniform(0, 255, size=3)
        if np.linalg.norm(col - bg_mean) > 90:
            return col
    return 255 - bg_mean


def _ade_polygon(
    rng: np.random.Generator, cls_name: str, cx: float, cy: float, r: float
) -> np.ndarray:
    """Vertices (float Nx2) of a square, triangle or cross centred at ``(cx, cy)``, size ~r."""
    rot = rng.uniform(0, 2 * np.pi)
    if cls_name == 'square':
        ang = rot + np.arange(4) * np.pi / 2
        pts = np.stack([np.cos(ang), np.sin(ang)], 1) * r
    elif cls_name == 'triangle':
        # roughly equilateral, with some jitter of the vertex angles
        ang = rot + np.arange(3) * 2 * np.pi / 3 + rng.uniform(-0.25, 0.25, size=3)
        pts = np.stack([np.cos(ang), np.sin(ang)], 1) * r
    elif cls_name == 'cross':
        w = r * rng.uniform(0.28, 0.4)
        base = np.array(
            [
                [-w, -r],
                [w, -r],
                [w, -w],
                [r, -w],
                [r, w],
                [w, w],
                [w, r],
                [-w, r],
                [-w, w],
                [-r, w],
                [-r, -w],
                [-w, -w],
            ]
        )
        pts = _rotate(base, rot)
    else:
        raise ValueError(f'no polygon for class {cls_name!r}')
    return pts + np.array([cx, cy])


def _ade_sample(rng: np.random.Generator, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """A BGR uint8 image and its uint8 label map in ADE20K's convention."""
    img, bg_mean = _ade_background(rng, size)
    label = np.full((size, size), 1, np.uint8)  # PNG value 1 = background
    shift = 4  # sub-pixel precision for cv2 drawing
    num_shapes = rng.integers(1, 4)
    for _ in range(num_shapes):
        cls_id = int(rng.integers(1, len(ADE_SHAPES_CLASSES)))  # PNG value cls_id + 1
        cls_name = ADE_SHAPES_CLASSES[cls_id]
        r = rng.uniform(0.14, 0.3) * size
        cx, cy = rng.uniform(r * 0.6, size - r * 0.6, size=2)
        col = _distinct_colour(rng, bg_mean)
        mask = np.zeros((size, size), np.uint8)
        if cls_name == 'circle':
            center = (int(round(cx * 2**shift)), int(round(cy * 2**shift)))
            cv2.circle(mask, center, int(round(r * 0.85 * 2**shift)), 255, -1, cv2.LINE_AA, shift)
        else:
            pts = np.round(_ade_polygon(rng, cls_name, cx, cy, r) * 2**shift).astype(np.int32)
            cv2.fillPoly(mask, [pts], 255, cv2.LINE_AA, shift)
        alpha = mask.astype(np.float32)[..., None] / 255.0
        # shading inside the shape so that it is not a flat colour
        shade = rng.uniform(-25, 25) * np.linspace(-1, 1, size, dtype=np.float32)[None, :, None]
        img = img * (1 - alpha) + (col[None, None] + shade) * alpha
        label[mask >= 128] = cls_id + 1
    img = img + rng.normal(0, 6, size=img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    # one-pixel "unlabeled" band (PNG value 0) where the label changes, as in ADE20K
    kernel = np.ones((2, 2), np.uint8)
    edge = cv2.dilate(label, kernel) != cv2.erode(label, kernel)
    label[edge] = 0
    return img, label


def _ade_split_complete(out_dir: str, folder: str, num: int) -> bool:
    img_dir = osp.join(out_dir, 'images', folder)
    ann_dir = osp.join(out_dir, 'annotations', folder)
    if not (osp.isdir(img_dir) and osp.isdir(ann_dir)):
        return False
    return (
        len([f for f in os.listdir(img_dir) if f.endswith('.jpg')]) == num
        and len([f for f in os.listdir(ann_dir) if f.endswith('.png')]) == num
    )


def generate_ade_shapes(
    out_dir: str,
    num_train: int = 400,
    num_val: int = 100,
    img_size: int = 64,
    seed: int = 0,
    force: bool = False,
) -> int:
    """Writes ``ade_shapes``: semantic segmentation laid out as ADE20K (``ADEChallengeData2016``).

    Images are noisy, gradient-shaded backgrounds with 1-3 shapes of random colour, size,
    position and rotation (a later shape occludes earlier ones in image and label alike); the
    class of a shape is its geometry, never its colour. Label PNGs follow ADE20K's convention
    (read them with ``reduce_zero_label=True``): value 0 is a one-pixel "unlabeled" band on
    every region boundary (the ignore index after reduction), values 1..5 are
    :data:`ADE_SHAPES_CLASSES` (train ids 0..4) - the background is a real, evaluated class.
    Layout::

        out_dir/images/training/shapes_train_00000.jpg
        out_dir/annotations/training/shapes_train_00000.png
        out_dir/images/validation/shapes_val_00000.jpg ...

    A dataset already in ``out_dir`` is kept when it was made with the same parameters
    (recorded in ``out_dir/ade_shapes.json``) and no file is missing.

    Args:
        out_dir: Dataset root (gets ``images/`` and ``annotations/``).
        num_train: Number of training images.
        num_val: Number of validation images.
        img_size: Side of the square images in pixels (>= 32).
        seed: Seed of the whole dataset.
        force: Regenerate even if the dataset is complete.

    Returns:
        The number of images written (0 if the dataset was already complete).
    """
    if img_size < 32:
        raise ValueError(f'img_size must be >= 32 (the shapes need room), got {img_size}')
    counts = {'training': num_train, 'validation': num_val}
    params = dict(
        num_train=num_train,
        num_val=num_val,
        img_size=img_size,
        seed=seed,
        classes=list(ADE_SHAPES_CLASSES),
    )
    meta_file = osp.join(out_dir, 'ade_shapes.json')
    if not force and osp.isfile(meta_file):
        with open(meta_file) as f:
            same = json.load(f) == params
        if same and all(_ade_split_complete(out_dir, f, counts[f]) for f, _ in _ADE_SPLITS):
            return 0
    written = 0
    for split_id, (folder, tag) in enumerate(_ADE_SPLITS):
        img_dir = osp.join(out_dir, 'images', folder)
        ann_dir = osp.join(out_dir, 'annotations', folder)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for old in os.listdir(img_dir) + os.listdir(ann_dir):
            if old.startswith(f'shapes_{tag}_'):
                path = osp.join(img_dir if old.endswith('.jpg') else ann_dir, old)
                if osp.isfile(path):
                    os.remove(path)
        for idx in range(counts[folder]):
            rng = np.random.default_rng([seed, split_id, idx])
            img, label = _ade_sample(rng, img_size)
            name = f'shapes_{tag}_{idx:05d}'
            cv2.imwrite(osp.join(img_dir, name + '.jpg'), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(osp.join(ann_dir, name + '.png'), label)
            written += 1
    with open(meta_file, 'w') as f:
        json.dump(params, f)
    return written
