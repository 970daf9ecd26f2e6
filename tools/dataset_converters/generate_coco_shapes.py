#!/usr/bin/env python
"""Generate a small COCO-format instance segmentation dataset of coloured shapes.

Every image shows a few filled shapes (classes ``circle``, ``square``, ``triangle``)
in random colours, sizes and rotations on a random textured background (a colour
gradient, stripes or a checkerboard plus pixel noise). Instance masks are stored as
COCO polygons; they are exact because each shape is rasterised from the very polygon
that is written to the annotation file. Objects never overlap, so no polygon is
occluded.

The output is fully determined by ``--seed`` and the size arguments (one
``numpy.random.Generator`` per image, seeded from ``(seed, split, index)``), so the
same command always produces byte-identical files::

    python tools/dataset_converters/generate_coco_shapes.py data/coco_shapes \
        --num-train 600 --num-val 120 --seed 0

Layout (the standard COCO one, so ``CocoDataset`` reads it unchanged)::

    data/coco_shapes/
        annotations/instances_train.json
        annotations/instances_val.json
        train/000000.png ...
        val/000000.png ...
"""
import argparse
import json
import os
import os.path as osp

import cv2
import numpy as np

CLASSES = ('circle', 'square', 'triangle')
SPLIT_IDS = {'train': 1, 'val': 2}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Generate a deterministic COCO-style shapes dataset')
    parser.add_argument('out_dir', help='dataset root to create')
    parser.add_argument('--num-train', type=int, default=600)
    parser.add_argument('--num-val', type=int, default=120)
    parser.add_argument(
        '--img-size', type=int, nargs=2, default=[160, 128],
        metavar=('W', 'H'), help='image width and height')
    parser.add_argument(
        '--max-objects', type=int, default=4, help='objects per image, 1..N')
    parser.add_argument(
        '--min-size', type=int, default=20,
        help='smallest object extent in pixels')
    parser.add_argument(
        '--max-size', type=int, default=56,
        help='largest object extent in pixels')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def _background(rng, h, w):
    """A random textured background, uint8 HxWx3."""
    kind = rng.integers(3)
    c0 = rng.uniform(0, 255, size=3)
    c1 = rng.uniform(0, 255, size=3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 0:  # linear gradient in a random direction
        ang = rng.uniform(0, np.pi)
        t = (np.cos(ang) * xx + np.sin(ang) * yy)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    elif kind == 1:  # stripes
        ang = rng.uniform(0, np.pi)
        period = rng.uniform(6, 24)
        t = 0.5 + 0.5 * np.sin(
            2 * np.pi * (np.cos(ang) * xx + np.sin(ang) * yy) / period)
    else:  # checkerboard
        cell = int(rng.integers(6, 20))
        t = (((xx // cell) + (yy // cell)) % 2).astype(np.float32)
    img = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    # damp the background contrast a little so objects stay the salient thing
    img = 0.6 * img + 0.4 * img.mean()
    img += rng.normal(0, 12, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _shape_polygon(rng, label, cx, cy, size):
    """Vertices (float, Nx2) of a shape of extent ``size`` centred at cx, cy."""
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
    c, s = np.cos(rot), np.sin(rot)
    pts = pts @ np.array([[c, s], [-s, c]])
    return pts + np.array([cx, cy])


def _colour(rng, background_mean):
    """A saturated colour that differs clearly from the background mean."""
    for _ in range(20):
        hsv = np.uint8([[[rng.integers(0, 180), rng.integers(150, 256),
                          rng.integers(150, 256)]]])
        col = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64)
        if np.abs(col - background_mean).sum() > 150:
            break
    return tuple(int(v) for v in col)


def make_image(rng, w, h, max_objects, min_size, max_size):
    """Returns (RGB image, list of (label, polygon Nx2 int))."""
    img = _background(rng, h, w)
    bg_mean = img.reshape(-1, 3).mean(0)
    n = int(rng.integers(1, max_objects + 1))
    occupied = np.zeros((h, w), dtype=bool)
    objects = []
    for _ in range(n):
        for _attempt in range(30):
            label = int(rng.integers(len(CLASSES)))
            size = rng.uniform(min_size, max_size)
            cx = rng.uniform(size / 2 + 1, w - size / 2 - 1)
            cy = rng.uniform(size / 2 + 1, h - size / 2 - 1)
            poly = np.round(_shape_polygon(rng, label, cx, cy, size))
            poly = poly.astype(np.int32)
            poly[:, 0] = np.clip(poly[:, 0], 0, w - 1)
            poly[:, 1] = np.clip(poly[:, 1], 0, h - 1)
            mask = np.zeros((h, w), dtype=np.uint8)
            cv2.fillPoly(mask, [poly], 1)
            # keep a 3-pixel gap between objects
            grown = cv2.dilate(mask, np.ones((7, 7), np.uint8)).astype(bool)
            if mask.sum() < 30 or (grown & occupied).any():
                continue
            occupied |= mask.astype(bool)
            cv2.fillPoly(img, [poly], _colour(rng, bg_mean))
            objects.append((label, poly, mask))
            break
    return img, objects


def generate_split(out_dir, split, num, args):
    w, h = args.img_size
    img_dir = osp.join(out_dir, split)
    os.makedirs(img_dir, exist_ok=True)
    images, annotations = [], []
    ann_id = 1
    for idx in range(num):
        rng = np.random.default_rng([args.seed, SPLIT_IDS[split], idx])
        img, objects = make_image(rng, w, h, args.max_objects, args.min_size,
                                  args.max_size)
        file_name = f'{idx:06d}.png'
        cv2.imwrite(osp.join(img_dir, file_name), img[..., ::-1])
        images.append(dict(id=idx + 1, file_name=file_name, width=w, height=h))
        for label, poly, mask in objects:
            ys, xs = np.nonzero(mask)
            x0, y0 = int(xs.min()), int(ys.min())
            bw, bh = int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1
            annotations.append(
                dict(
                    id=ann_id,
                    image_id=idx + 1,
                    category_id=label + 1,
                    segmentation=[[float(v) for v in poly.reshape(-1)]],
                    area=float(mask.sum()),
                    bbox=[x0, y0, bw, bh],
                    iscrowd=0))
            ann_id += 1
    coco = dict(
        info=dict(
            description='mmsgformer coloured shapes demo dataset',
            version='1.0',
            seed=args.seed),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=[
            dict(id=i + 1, name=name, supercategory='shape')
            for i, name in enumerate(CLASSES)
        ])
    ann_dir = osp.join(out_dir, 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    with open(osp.join(ann_dir, f'instances_{split}.json'), 'w') as f:
        json.dump(coco, f)
    return len(images), len(annotations)


def main(argv=None):
    args = parse_args(argv)
    assert args.max_size < min(args.img_size) - 2, 'objects must fit'
    for split, num in (('train', args.num_train), ('val', args.num_val)):
        n_img, n_ann = generate_split(args.out_dir, split, num, args)
        print(f'{split}: {n_img} images, {n_ann} instances -> '
              f'{osp.join(args.out_dir, "annotations", f"instances_{split}.json")}')


if __name__ == '__main__':
    main()
