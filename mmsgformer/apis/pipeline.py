"""Images through a config's test pipeline, following its geometry.

:func:`run_pipeline` returns the packed sample and a :class:`Geometry`, the affine map from
original image pixels to network input coordinates through the pipeline's resizes, crops, pads
and flips, so that maps computed on the network input can be laid over the original image.
It is how every image of ours reaches a model: :func:`~mmsgformer.apis.inference.inference_model`
and the significance pictures (:mod:`mmsgformer.visualization.significance`) run it.
"""

from __future__ import annotations

import glob
import os
import os.path as osp
import warnings
from copy import deepcopy
from typing import List, Tuple, Union

import numpy as np

from ..utils.config import task_registries

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')


def expand_images(spec: str) -> List[str]:
    """Image files named by a file, a folder (non-recursive) or a glob, sorted."""
    if osp.isdir(spec):
        files = [osp.join(spec, name) for name in os.listdir(spec)]
    elif osp.isfile(spec):
        return [spec]
    else:
        files = glob.glob(spec, recursive=True)
    images = sorted(f for f in files if osp.isfile(f) and f.lower().endswith(IMAGE_EXTENSIONS))
    if not images:
        raise FileNotFoundError(
            f'no images found for {spec!r} (a file, a folder or a glob of '
            f'{"/".join(e[1:] for e in IMAGE_EXTENSIONS)} files)'
        )
    return images


def find_test_pipeline(cfg) -> list:
    """The config's test pipeline: test dataloader's dataset (wrappers unwrapped), else
    ``test_pipeline``, else the validation dataloader's."""
    for loader in ('test_dataloader', 'val_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset')
        while isinstance(dataset, dict):
            if dataset.get('pipeline'):
                return list(dataset['pipeline'])
            dataset = dataset.get('dataset') or (dataset.get('datasets') or [None])[0]
        if loader == 'test_dataloader' and cfg.get('test_pipeline'):
            return list(cfg.test_pipeline)
    raise ValueError(
        'the config has no test pipeline (test_dataloader.dataset.pipeline or test_pipeline)'
    )


def _type_name(transform_cfg) -> str:
    t = transform_cfg.get('type', '')
    return t if isinstance(t, str) else getattr(t, '__name__', str(t))


def build_transforms(pipeline_cfg: list, transforms_registry) -> list:
    """Builds a test pipeline without its annotation loading (refuses test-time augmentation).

    Args:
        pipeline_cfg: Transform configs, starting with the image loading.
        transforms_registry: The scope's ``TRANSFORMS`` registry.
    """
    transforms = []
    for t in pipeline_cfg:
        name = _type_name(t).split('.')[-1]
        if name.endswith('Annotations') or name == 'LoadAnnotations':
            continue  # no labels at visualisation time
        if name in ('TestTimeAug', 'MultiScaleFlipAug'):
            raise ValueError(
                f'the test pipeline uses {name}; use a config without test-time augmentation'
            )
        transforms.append(transforms_registry.build(deepcopy(t)))
    if not transforms or 'Load' not in type(transforms[0]).__name__:
        raise ValueError('the test pipeline must start by loading the image (LoadImageFromFile)')
    return transforms


class Geometry:
    """Per-axis affine map from original image coordinates to network input coordinates.

    Coordinates are continuous with pixel ``i`` covering ``[i, i + 1)``:
    ``x_in = ax * x + bx``, ``y_in = ay * y + by``. ``net_hw`` is the image size after the
    pipeline so far (padding included); ``box`` (``y0, y1, x0, x1`` in input coordinates) is the
    part of it that holds image content, i.e. what is left after crops, without padding.
    """

    def __init__(self, ori_hw: Tuple[int, int]) -> None:
        self.ori_hw = tuple(int(v) for v in ori_hw)
        self.net_hw = self.ori_hw
        self.ax, self.bx, self.ay, self.by = 1.0, 0.0, 1.0, 0.0
        self.box = (0.0, float(ori_hw[0]), 0.0, float(ori_hw[1]))

    def resize(self, new_hw: Tuple[int, int]) -> None:
        sy, sx = new_hw[0] / self.net_hw[0], new_hw[1] / self.net_hw[1]
        self.ax, self.bx, self.ay, self.by = self.ax * sx, self.bx * sx, self.ay * sy, self.by * sy
        y0, y1, x0, x1 = self.box
        self.box = (y0 * sy, y1 * sy, x0 * sx, x1 * sx)
        self.net_hw = tuple(new_hw)

    def crop(self, top: int, left: int, new_hw: Tuple[int, int]) -> None:
        self.bx -= left
        self.by -= top
        y0, y1, x0, x1 = self.box
        self.box = (
            max(0.0, y0 - top),
            min(float(new_hw[0]), y1 - top),
            max(0.0, x0 - left),
            min(float(new_hw[1]), x1 - left),
        )
        self.net_hw = tuple(new_hw)

    def pad(self, new_hw: Tuple[int, int]) -> None:  # bottom/right padding: nothing moves
        self.net_hw = tuple(new_hw)

    def flip(self, direction: str) -> None:
        y0, y1, x0, x1 = self.box
        if direction in ('horizontal', 'diagonal'):
            self.ax, self.bx = -self.ax, self.net_hw[1] - self.bx
            x0, x1 = self.net_hw[1] - x1, self.net_hw[1] - x0
        if direction in ('vertical', 'diagonal'):
            self.ay, self.by = -self.ay, self.net_hw[0] - self.by
            y0, y1 = self.net_hw[0] - y1, self.net_hw[0] - y0
        self.box = (y0, y1, x0, x1)

    def input_coords(self) -> Tuple[np.ndarray, np.ndarray]:
        """Input coordinates of the original pixel centres: ``(ys (H,), xs (W,))``."""
        h, w = self.ori_hw
        return (self.ay * (np.arange(h) + 0.5) + self.by, self.ax * (np.arange(w) + 0.5) + self.bx)

    def seen(self) -> np.ndarray:
        """Boolean ``(H, W)``: original pixels that the network saw."""
        ys, xs = self.input_coords()
        y0, y1, x0, x1 = self.box
        return ((ys >= y0) & (ys < y1))[:, None] & ((xs >= x0) & (xs < x1))[None, :]


def _hw(results: dict) -> Tuple[int, int]:
    return tuple(results['img'].shape[:2])


def _load(loader, image: Union[str, np.ndarray], index: int) -> dict:
    """The results of the pipeline's first transform: ``loader`` reads a file; an array is
    taken as what it would have read (same channel order), ``img_path`` None."""
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3):
            raise ValueError(f'an image array must be (H, W) or (H, W, C), got shape {image.shape}')
        img = image.astype(np.float32) if getattr(loader, 'to_float32', False) else image.copy()
        return dict(
            img=img,
            img_shape=img.shape[:2],
            ori_shape=img.shape[:2],
            img_path=None,
            img_id=index,
            sample_idx=index,
        )
    results = loader(dict(img_path=image, img_id=index, sample_idx=index))
    if results is None or 'img' not in results:
        raise RuntimeError(f'{type(loader).__name__} did not load {image}')
    return results


def run_pipeline(
    transforms: list, image: Union[str, np.ndarray], index: int
) -> Tuple[dict, Geometry, np.ndarray]:
    """Runs one image through the pipeline, following its geometry.

    Args:
        transforms: The built test pipeline (:func:`build_test_transforms`), starting with the
            image loading.
        image: Image file, or an image array as the pipeline's loading would give it (``(H, W,
            C)``, BGR for the usual ``LoadImageFromFile``), which then replaces that step.
        index: Image index (``img_id`` and ``sample_idx`` of the sample).

    Returns:
        The packed sample, the :class:`Geometry` and the original image (RGB uint8).
    """
    path = '<array>' if isinstance(image, np.ndarray) else image
    results = _load(transforms[0], image, index)
    original = np.asarray(results['img'])
    if original.ndim == 2:
        original = np.repeat(original[..., None], 3, axis=-1)
    original = original[..., :3]
    if getattr(transforms[0], 'channel_order', 'bgr') == 'bgr':
        original = original[..., ::-1]
    if original.dtype != np.uint8:
        scale = 255.0 if original.max() <= 1.0 else 1.0
        original = np.clip(original * scale, 0, 255).astype(np.uint8)
    original = np.ascontiguousarray(original)
    geometry = Geometry(_hw(results))
    for transform in transforms[1:]:
        name = type(transform).__name__
        before_hw, before_flip = _hw(results), results.get('flip', False)
        results = transform(results)
        if results is None:
            raise RuntimeError(f'{name} dropped the image {path}')
        if isinstance(results, (list, tuple)):
            raise RuntimeError(
                f'{name} returned several samples (test-time augmentation); use '
                f'a pipeline without it'
            )
        if 'inputs' in results:  # packed: the end of the pipeline
            break
        after_hw = _hw(results)
        if 'Flip' in name and results.get('flip') and not before_flip:
            geometry.flip(results.get('flip_direction') or 'horizontal')
        if after_hw == before_hw:
            continue
        if 'Crop' in name and all(a <= b for a, b in zip(after_hw, before_hw)):
            bbox = results.get('crop_bbox')
            if bbox is not None:  # x1, y1, x2, y2
                left, top = int(bbox[0]), int(bbox[1])
            else:  # centred crop (mmcv's CenterCrop rounding)
                top = max(0, int(round((before_hw[0] - after_hw[0]) / 2.0)))
                left = max(0, int(round((before_hw[1] - after_hw[1]) / 2.0)))
            geometry.crop(top, left, after_hw)
        elif 'Pad' in name and all(a >= b for a, b in zip(after_hw, before_hw)):
            geometry.pad(after_hw)
        else:
            geometry.resize(after_hw)
    else:
        raise RuntimeError('the test pipeline must end with a Pack*Inputs transform')
    sample = results['data_samples']
    img_shape = sample.metainfo.get('img_shape') if hasattr(sample, 'metainfo') else None
    if img_shape is not None and tuple(img_shape[:2]) != tuple(geometry.net_hw):
        # Trust the data sample: treat the pipeline as a plain resize to img_shape.
        warnings.warn(
            f'pipeline geometry {geometry.net_hw} disagrees with img_shape '
            f'{tuple(img_shape[:2])}; assuming a plain resize'
        )
        geometry = Geometry(geometry.ori_hw)
        geometry.resize(tuple(img_shape[:2]))
    return results, geometry, original


def build_test_transforms(cfg) -> list:
    """The config's test pipeline, built in its scope, without annotation loading.

    Args:
        cfg: The config (see :func:`mmsgformer.utils.config.load_config`).
    """
    _, transforms = task_registries(cfg)
    return build_transforms(find_test_pipeline(cfg), transforms)
