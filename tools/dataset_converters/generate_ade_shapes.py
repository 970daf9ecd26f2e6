#!/usr/bin/env python
"""Generate ``ade_shapes``: a small, deterministic semantic-segmentation dataset laid out as
ADE20K (``ADEChallengeData2016``) so that mmseg's ADE20K pipelines run on it unchanged.

Layout written under ``--out-dir`` (default ``data/ade_shapes``)::

    images/training/shapes_train_00000.jpg       annotations/training/shapes_train_00000.png
    images/validation/shapes_val_00000.jpg       annotations/validation/shapes_val_00000.png

Label PNGs follow ADE20K's convention, i.e. they are meant to be read with
``reduce_zero_label=True``:

    PNG value 0      "unlabeled": a one-pixel band on every region boundary (where the
                     anti-aliased image is ambiguous), mapped to the ignore index 255;
    PNG value 1..5   background, circle, square, triangle, cross -> train ids 0..4.

So, unlike ADE20K's "other" pixels, the background here is a real class that is trained and
evaluated; only the thin boundary band is ignored. The class names and palette are in
``CLASSES``/``PALETTE`` below and are repeated in ``configs/demo/upernet_sgformer_tiny_shapes.py``.

Images are noisy, gradient-shaded backgrounds with 1-3 shapes of random colour, size, position
and rotation (shapes may overlap; a later shape occludes earlier ones in image and label alike).
The class of a shape is its geometry, never its colour. The same ``--seed`` gives byte-identical
files (each image has its own random stream derived from the seed, split and index).

Example::

    python tools/dataset_converters/generate_ade_shapes.py --out-dir data/ade_shapes \\
        --num-train 400 --num-val 100 --img-size 64 --seed 0
"""
import argparse
import json
import os
import os.path as osp

import cv2
import numpy as np

CLASSES = ('background', 'circle', 'square', 'triangle', 'cross')
PALETTE = [[50, 50, 50], [230, 25, 75], [60, 180, 75], [0, 130, 200], [255, 225, 25]]
SPLITS = (('training', 'train'), ('validation', 'val'))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Generate the ade_shapes demo dataset in ADE20K folder layout')
    parser.add_argument('--out-dir', default='data/ade_shapes',
                        help='dataset root (gets images/ and annotations/)')
    parser.add_argument('--num-train', type=int, default=400)
    parser.add_argument('--num-val', type=int, default=100)
    parser.add_argument('--img-size', type=int, default=64,
                        help='side of the square images in pixels (>= 32)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--force', action='store_true',
                        help='regenerate even if the dataset already looks complete')
    return parser.parse_args(argv)


def _background(rng, size):
    """Smoothly shaded, lightly textured background; returns (BGR uint8 image, mean colour)."""
    c0 = rng.uniform(20, 235, size=3)
    c1 = np.clip(c0 + rng.uniform(-60, 60, size=3), 0, 255)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    t = (np.cos(angle) * xx + np.sin(angle) * yy)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    img = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    # low-frequency blotches, then fine noise
    blot = cv2.resize(rng.normal(0, 18, size=(6, 6, 3)).astype(np.float32), (size, size),
                      interpolation=cv2.INTER_CUBIC)
    img = img + blot
    return img, img.reshape(-1, 3).mean(0)


def _shape_color(rng, bg_mean):
    """A random colour far enough from the background to be visible."""
    for _ in range(100):
        col = rng.uniform(0, 255, size=3)
        if np.linalg.norm(col - bg_mean) > 90:
            return col
    return 255 - bg_mean


def _polygon(rng, cls_name, cx, cy, r):
    """Vertices (float Nx2) of a polygonal shape centred at (cx, cy) with size ~r."""
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
        base = np.array([[-w, -r], [w, -r], [w, -w], [r, -w], [r, w], [w, w], [w, r],
                         [-w, r], [-w, w], [-r, w], [-r, -w], [-w, -w]])
        c, s = np.cos(rot), np.sin(rot)
        pts = base @ np.array([[c, s], [-s, c]])
    else:
        raise ValueError(cls_name)
    return pts + np.array([cx, cy])


def make_sample(rng, size):
    """Returns (BGR uint8 image, uint8 label map in ADE convention)."""
    img, bg_mean = _background(rng, size)
    label = np.full((size, size), 1, np.uint8)  # PNG value 1 = background
    shift = 4  # sub-pixel precision for cv2 drawing
    num_shapes = rng.integers(1, 4)
    for _ in range(num_shapes):
        cls_id = int(rng.integers(1, len(CLASSES)))  # train id 1..4 -> PNG value cls_id + 1
        cls_name = CLASSES[cls_id]
        r = rng.uniform(0.14, 0.3) * size
        cx, cy = rng.uniform(r * 0.6, size - r * 0.6, size=2)
        col = _shape_color(rng, bg_mean)
        mask = np.zeros((size, size), np.uint8)
        if cls_name == 'circle':
            center = (int(round(cx * 2**shift)), int(round(cy * 2**shift)))
            cv2.circle(mask, center, int(round(r * 0.85 * 2**shift)), 255, -1, cv2.LINE_AA, shift)
        else:
            pts = np.round(_polygon(rng, cls_name, cx, cy, r) * 2**shift).astype(np.int32)
            cv2.fillPoly(mask, [pts], 255, cv2.LINE_AA, shift)
        alpha = mask.astype(np.float32)[..., None] / 255.
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


def _split_complete(out_dir, folder, num):
    img_dir = osp.join(out_dir, 'images', folder)
    ann_dir = osp.join(out_dir, 'annotations', folder)
    if not (osp.isdir(img_dir) and osp.isdir(ann_dir)):
        return False
    return (len([f for f in os.listdir(img_dir) if f.endswith('.jpg')]) == num
            and len([f for f in os.listdir(ann_dir) if f.endswith('.png')]) == num)


def generate(out_dir, num_train=400, num_val=100, img_size=64, seed=0, force=False):
    """Writes the dataset; returns the number of images written (0 if it was complete).

    A dataset already in ``out_dir`` is kept when it was made with the same parameters
    (recorded in ``ade_shapes.json``) and no file is missing.
    """
    if img_size < 32:
        raise ValueError(f'--img-size must be >= 32, got {img_size}')
    counts = {'training': num_train, 'validation': num_val}
    params = dict(num_train=num_train, num_val=num_val, img_size=img_size, seed=seed,
                  classes=list(CLASSES))
    meta_file = osp.join(out_dir, 'ade_shapes.json')
    if not force and osp.isfile(meta_file):
        with open(meta_file) as f:
            same = json.load(f) == params
        if same and all(_split_complete(out_dir, f, counts[f]) for f, _ in SPLITS):
            return 0
    written = 0
    for split_id, (folder, tag) in enumerate(SPLITS):
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
            img, label = make_sample(rng, img_size)
            name = f'shapes_{tag}_{idx:05d}'
            cv2.imwrite(osp.join(img_dir, name + '.jpg'), img,
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(osp.join(ann_dir, name + '.png'), label)
            written += 1
    with open(meta_file, 'w') as f:
        json.dump(params, f)
    return written


def main(argv=None):
    args = parse_args(argv)
    n = generate(args.out_dir, args.num_train, args.num_val, args.img_size, args.seed,
                 args.force)
    if n == 0:
        print(f'{args.out_dir}: already complete, nothing to do (use --force to regenerate)')
    else:
        print(f'wrote {n} images + label maps to {args.out_dir} '
              f'(classes: {", ".join(CLASSES)}; PNG value = train id + 1, 0 = ignored)')


if __name__ == '__main__':
    main()
