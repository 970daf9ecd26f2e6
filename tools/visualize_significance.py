#!/usr/bin/env python
"""Show where SG-Former puts its tokens: significance maps and token allocation as PNGs.

    python tools/visualize_significance.py IMAGE CONFIG [CHECKPOINT] --out DIR \
        [--device cpu] [--block -1] [--alpha 0.5] [--cfg-options key=value ...]

IMAGE is an image file, a folder (every image in it) or a quoted glob (``'data/*/val/*.png'``).
CONFIG is any of our configs: classifier (mmpretrain), detector (mmdet) or segmentor (mmseg);
only the backbone is run. CHECKPOINT is a checkpoint of that model (e.g. ``work_dirs/.../
epoch_12.pth``) or of the backbone alone (official SG-Former release or converted file). Without
CHECKPOINT the backbone keeps the config's backbone ``init_cfg`` when its file exists, otherwise
it has random weights and the tool says so on the console and in every title.

Each image goes through the config's own test pipeline (annotation loading dropped) and the
model's data preprocessor, exactly as at test time. For every image ``DIR/<image name>/`` gets:

* ``stage<k>_significance.png`` - the image with stage k's significance map as a heat-map,
* ``stage<k>_allocation.png`` - the image coloured by how many tokens were merged into the key
  of each token in the following significance-guided block (discrete colour bar),
* ``summary.png`` - all stages side by side (significance above, allocation below),
* ``raw/stage<k>_{significance,allocation}.png`` - the same overlays without text, exactly at the
  original image size (for papers or further processing).

Stages are numbered from 1 as in the paper (stage 1 has stride 4); records of the backbone use
``stage = k - 1``. A stage with several hybrid-scale blocks shows its last one (``--block``
picks another: an index among that stage's hybrid-scale blocks).

What the colours mean:

* Significance is shown *relative to uniform attention*: the map of
  :meth:`SGFormer.forward_with_significance` (attention received as a local key plus that of the
  token's reduced global key) divided by the value it would have if every query attended
  uniformly (``1 / 49 + 1 / number of reduced keys``; the backbone scales the local part of
  partial border windows so that 1/49 is the average there too). 1 means average
  attention, 2 twice the average. The colour scale of each map runs from that map's minimum to
  its maximum over the part of the image the network saw; the colour bar gives the values.
* Allocation is the merge size of each token's key (e.g. 196 / 56 / 28 tokens per key in stage 1
  of the released models): fewer tokens per key = finer keys = more of the attention budget. The
  colour bar labels say which share of the tokens got each size.

Geometry: a stage-k map (stride ``s = 4 * 2**(k-1)``) covers the network input with one
``s x s`` cell per token. The tool follows the pipeline's resizes, crops, pads and flips and the
data preprocessor's padding, so every pixel of the original image is coloured by the token that
saw it (bilinear between token centres for significance, nearest token for allocation). Parts of
the image the network did not see (outside a classifier's centre crop) are greyed out.
"""
from __future__ import annotations

import argparse
import glob
import importlib
import math
import os
import os.path as osp
import sys
import textwrap
import warnings
from copy import deepcopy
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import numpy as np  # noqa: E402

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
SIGNIFICANCE_CMAP = 'turbo'
ALLOCATION_CMAP = 'viridis'
OUTSIDE_DIM = 0.35  # brightness of image parts the network did not see


def parse_args(argv=None) -> argparse.Namespace:
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='Draw SG-Former significance maps and token allocation',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='Outputs and the meaning of the colours: see the top of this file or '
               'docs/significance.md.')
    parser.add_argument('image', help='image file, folder of images, or glob (quote it)')
    parser.add_argument('config', help='classifier, detector or segmentor config')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='model or backbone checkpoint (default: random weights)')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--device', default=None,
                        help='e.g. cpu or cuda:0 (default: cuda:0 if available)')
    parser.add_argument('--block', type=int, default=-1,
                        help='which hybrid-scale block of each stage to show: index among the '
                             "stage's hybrid-scale blocks, Python style (default -1: the last)")
    parser.add_argument('--alpha', type=float, default=0.5,
                        help='opacity of the colours over the image (default 0.5)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value pairs')
    args = parser.parse_args(argv)
    if not 0 <= args.alpha <= 1:
        parser.error('--alpha must be in [0, 1]')
    return args


# ---------------------------------------------------------------------------------- inputs
def expand_images(spec: str) -> List[str]:
    """Image files named by a file, a folder (non-recursive) or a glob, sorted."""
    if osp.isdir(spec):
        files = [osp.join(spec, name) for name in os.listdir(spec)]
    elif osp.isfile(spec):
        return [spec]
    else:
        files = glob.glob(spec, recursive=True)
    images = sorted(f for f in files
                    if osp.isfile(f) and f.lower().endswith(IMAGE_EXTENSIONS))
    if not images:
        raise FileNotFoundError(f'no images found for {spec!r} (a file, a folder or a glob of '
                                f'{"/".join(e[1:] for e in IMAGE_EXTENSIONS)} files)')
    return images


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


# ---------------------------------------------------------------------------------- config/model
def _walk_init_cfgs(node, found: List[Tuple[dict, str]], key: str = '') -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == 'init_cfg':
                found.append((node, key))
            else:
                _walk_init_cfgs(v, found, f'{key}.{k}' if key else k)
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            _walk_init_cfgs(v, found, f'{key}[{i}]')


def _is_pretrained(init_cfg) -> bool:
    items = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    return any(isinstance(c, dict) and c.get('type') == 'Pretrained' for c in items)


def disable_pretrained(model_cfg: dict) -> List[str]:
    """Sets every ``init_cfg`` of type Pretrained (and mmseg's ``pretrained``) to None.

    Returns the config keys changed.
    """
    changed, found = [], []
    _walk_init_cfgs(model_cfg, found)
    for node, key in found:
        if _is_pretrained(node['init_cfg']):
            node['init_cfg'] = None
            changed.append(f'{key}.init_cfg' if key else 'init_cfg')
    if model_cfg.get('pretrained'):
        model_cfg['pretrained'] = None
        changed.append('pretrained')
    return changed


def load_config(config: str, cfg_options: Optional[dict]):
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if 'model' not in cfg or 'backbone' not in cfg.model:
        raise ValueError(f'{config}: the tool needs a model with a backbone (cfg.model.backbone)')
    # mmpretrain keeps the data preprocessor next to the model; the runner merges it in.
    if cfg.get('data_preprocessor') is not None:
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    return cfg


def registries(cfg):
    """``(MODELS, TRANSFORMS)`` of the config's default scope, with its modules registered."""
    scope = cfg.get('default_scope', None)
    from mmengine.registry import init_default_scope
    if scope:
        try:
            importlib.import_module(f'{scope}.utils').register_all_modules(
                init_default_scope=False)
            reg = importlib.import_module(f'{scope}.registry')
        except ImportError as err:
            raise ImportError(f'the config needs {scope} (default_scope={scope!r}); install it '
                              f'(tools/setup_env.sh): {err}') from err
        init_default_scope(scope)
        return reg.MODELS, reg.TRANSFORMS
    from mmengine.registry import MODELS, TRANSFORMS
    return MODELS, TRANSFORMS


def build_model(cfg, models_registry, checkpoint: Optional[str], device: str):
    """Builds the model and loads weights; returns it and a note on where the weights came from."""
    import torch
    from mmsgformer.utils import load_checkpoint_file, register_safe_globals

    model_cfg = deepcopy(cfg.model)
    if checkpoint is not None:
        register_safe_globals()
        disable_pretrained(model_cfg)
        model = models_registry.build(model_cfg)
        raw = load_checkpoint_file(checkpoint)
        state = raw.get('state_dict', raw) if isinstance(raw, dict) else raw
        if any(k.startswith('backbone.') for k in state):
            from mmengine.runner import load_checkpoint
            load_checkpoint(model, checkpoint, map_location='cpu', strict=False)
        else:  # a backbone checkpoint (official release, converted file, ...)
            from mmsgformer.models.checkpoint import load_pretrained
            load_pretrained(model.backbone, checkpoint)
        weights = f'weights: {osp.basename(checkpoint)}'
    else:
        backbone_init = model_cfg.backbone.get('init_cfg')
        path = backbone_init.get('checkpoint') if isinstance(backbone_init, dict) else None
        use_backbone_init = (_is_pretrained(backbone_init) and isinstance(path, str)
                             and osp.isfile(path))
        saved = deepcopy(backbone_init)
        disable_pretrained(model_cfg)
        model = models_registry.build(model_cfg)
        if use_backbone_init:
            model.backbone.init_cfg = saved
            model.backbone.init_weights()
            weights = f'backbone weights: {osp.basename(path)} (config init_cfg)'
            print(f'No CHECKPOINT given: backbone initialised from the config\'s init_cfg '
                  f'({path}).')
        else:
            weights = 'RANDOM WEIGHTS (no checkpoint)'
            message = ('No CHECKPOINT given and no pretrained backbone file in the config: the '
                       'model has RANDOM weights, so the maps show an untrained network. Pass '
                       'a checkpoint to see what a trained SG-Former does.')
            warnings.warn(message)
            print(f'WARNING: {message}', file=sys.stderr)
    if not hasattr(model.backbone, 'forward_with_significance'):
        raise TypeError(f'the backbone {type(model.backbone).__name__} has no '
                        f'forward_with_significance (only SGFormer has significance maps)')
    model.to(torch.device(device))
    model.eval()
    return model, weights


# ---------------------------------------------------------------------------------- pipeline
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
    raise ValueError('the config has no test pipeline (test_dataloader.dataset.pipeline or '
                     'test_pipeline)')


def _type_name(transform_cfg) -> str:
    t = transform_cfg.get('type', '')
    return t if isinstance(t, str) else getattr(t, '__name__', str(t))


def build_transforms(pipeline_cfg: list, transforms_registry) -> list:
    transforms = []
    for t in pipeline_cfg:
        name = _type_name(t).split('.')[-1]
        if name.endswith('Annotations') or name == 'LoadAnnotations':
            continue  # no labels at visualisation time
        if name in ('TestTimeAug', 'MultiScaleFlipAug'):
            raise ValueError(f'the test pipeline uses {name}; use a config without test-time '
                             f'augmentation')
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
        self.ax, self.bx, self.ay, self.by = 1., 0., 1., 0.
        self.box = (0., float(ori_hw[0]), 0., float(ori_hw[1]))

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
        self.box = (max(0., y0 - top), min(float(new_hw[0]), y1 - top),
                    max(0., x0 - left), min(float(new_hw[1]), x1 - left))
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
        return (self.ay * (np.arange(h) + .5) + self.by, self.ax * (np.arange(w) + .5) + self.bx)

    def seen(self) -> np.ndarray:
        """Boolean ``(H, W)``: original pixels that the network saw."""
        ys, xs = self.input_coords()
        y0, y1, x0, x1 = self.box
        return ((ys >= y0) & (ys < y1))[:, None] & ((xs >= x0) & (xs < x1))[None, :]


def _hw(results: dict) -> Tuple[int, int]:
    return tuple(results['img'].shape[:2])


def run_pipeline(transforms: list, path: str, index: int
                 ) -> Tuple[dict, Geometry, np.ndarray]:
    """Runs one image through the pipeline, following its geometry.

    Returns the packed sample, the :class:`Geometry` and the original image (RGB uint8).
    """
    results = dict(img_path=path, img_id=index, sample_idx=index)
    results = transforms[0](results)
    if results is None or 'img' not in results:
        raise RuntimeError(f'{type(transforms[0]).__name__} did not load {path}')
    original = np.asarray(results['img'])
    if original.ndim == 2:
        original = np.repeat(original[..., None], 3, axis=-1)
    original = original[..., :3]
    if getattr(transforms[0], 'channel_order', 'bgr') == 'bgr':
        original = original[..., ::-1]
    if original.dtype != np.uint8:
        scale = 255. if original.max() <= 1. else 1.
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
            raise RuntimeError(f'{name} returned several samples (test-time augmentation); use '
                               f'a pipeline without it')
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
                top = max(0, int(round((before_hw[0] - after_hw[0]) / 2.)))
                left = max(0, int(round((before_hw[1] - after_hw[1]) / 2.)))
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
        warnings.warn(f'pipeline geometry {geometry.net_hw} disagrees with img_shape '
                      f'{tuple(img_shape[:2])}; assuming a plain resize')
        geometry = Geometry(geometry.ori_hw)
        geometry.resize(tuple(img_shape[:2]))
    return results, geometry, original


# ---------------------------------------------------------------------------------- maps
def uniform_significance(hw: Tuple[int, int], sr_ratio: int, window: int) -> np.ndarray:
    """Significance ``(H, W)`` that uniform attention would give (see the module docstring)."""
    h, w = hw
    reduced_keys = math.ceil(h / sr_ratio) * math.ceil(w / sr_ratio)
    return np.full((h, w), 1. / window ** 2 + 1. / reduced_keys)


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
    out = F.grid_sample(values[None, None], grid, mode=mode, padding_mode='border',
                        align_corners=False)
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
        alloc = next((r for r in reversed(recs[:index + 1]) if 'allocation' in r), None)
        chosen[stage] = (recs[index], alloc)
    return chosen


# ---------------------------------------------------------------------------------- drawing
def blend(image: np.ndarray, colours: np.ndarray, seen: np.ndarray, alpha: float) -> np.ndarray:
    """Image with ``colours`` (RGB float in [0, 1]) laid over the seen part, the rest dimmed."""
    img = image.astype(np.float32) / 255.
    out = np.where(seen[..., None], (1 - alpha) * img + alpha * colours, OUTSIDE_DIM * img)
    return np.clip(out * 255. + .5, 0, 255).astype(np.uint8)


class StagePanel:
    """Everything drawn for one stage: coloured overlays, colour scales and texts."""

    def __init__(self, stage: int, stride: int, sig_record: dict, alloc_record: Optional[dict],
                 image: np.ndarray, geometry: Geometry, sr_ratio: int, window: int,
                 merge_sizes: Sequence[int], alpha: float) -> None:
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
        if high - low < 1e-6 * max(1., abs(high)):
            low, high = low - 1e-3, high + 1e-3
        self.sig_norm = Normalize(low, high)
        self.sig_cmap = colormaps[SIGNIFICANCE_CMAP]
        self.significance = blend(image, self.sig_cmap(self.sig_norm(upsampled))[..., :3],
                                  seen, alpha)
        self.sig_range = (float(relative.min()), float(relative.max()))

        self.allocation = None
        if alloc_record is not None:
            alloc = alloc_record['allocation'][0].cpu().numpy()
            sizes = sorted(set(int(v) for v in merge_sizes) | set(np.unique(alloc).tolist()),
                           reverse=True)  # coarse first
            self.alloc_block = int(alloc_record['block']) + 1
            self.merge_sizes = sizes
            self.alloc_share = [float((alloc == s).mean()) for s in sizes]
            index = np.searchsorted(-np.asarray(sizes), -alloc)  # position in `sizes`
            upsampled = to_image(index.astype(np.float64), stride, geometry, 'nearest')
            upsampled = np.rint(upsampled).astype(int)
            base = colormaps[ALLOCATION_CMAP]
            self.alloc_cmap = ListedColormap(
                base(np.linspace(0.05, 0.95, len(sizes))) if len(sizes) > 1 else base([0.5]))
            self.alloc_norm = BoundaryNorm(np.arange(len(sizes) + 1) - .5, len(sizes))
            self.allocation = blend(image, self.alloc_cmap(self.alloc_norm(upsampled))[..., :3],
                                    seen, alpha)

    # texts -------------------------------------------------------------------------------
    def sig_title(self) -> str:
        return (f'Stage {self.stage + 1} (stride {self.stride}, {self.map_hw[0]}x'
                f'{self.map_hw[1]} tokens): significance of hybrid-scale block {self.block}')

    SIG_LABEL = 'significance / uniform attention\n(1 = average; colour range: min-max of map)'

    def alloc_title(self) -> str:
        return (f'Stage {self.stage + 1} (stride {self.stride}): token allocation of block '
                f'{self.alloc_block} (significance-guided)')

    ALLOC_LABEL = 'tokens merged into each token\'s key\n(fewer = finer = more attention)'

    def alloc_ticklabels(self) -> List[str]:
        return [f'{s} per key: {100 * p:.0f}%' for s, p in zip(self.merge_sizes,
                                                              self.alloc_share)]

    # colour bars -------------------------------------------------------------------------
    def sig_colorbar(self, fig, **kwargs):
        from matplotlib.cm import ScalarMappable
        bar = fig.colorbar(ScalarMappable(self.sig_norm, self.sig_cmap), **kwargs)
        bar.set_label(self.SIG_LABEL, fontsize=8)
        bar.ax.tick_params(labelsize=8)
        return bar

    def alloc_colorbar(self, fig, **kwargs):
        from matplotlib.cm import ScalarMappable
        bar = fig.colorbar(ScalarMappable(self.alloc_norm, self.alloc_cmap),
                           ticks=np.arange(len(self.merge_sizes)), **kwargs)
        bar.ax.set_yticklabels(self.alloc_ticklabels(), fontsize=8)
        bar.set_label(self.ALLOC_LABEL, fontsize=8)
        bar.ax.invert_yaxis()  # coarse at the top
        return bar


def display_scale(hw: Tuple[int, int]) -> float:
    """Scale of the image in the per-stage figures: small images enlarged, huge ones shrunk."""
    longest = max(hw)
    if longest < 480:
        return 480. / longest
    if longest > 1600:
        return 1600. / longest
    return 1.


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
    cax = fig.add_axes(((FIG_LEFT + width + 12) / fig_w, FIG_BOTTOM / fig_h, 16 / fig_w,
                        height / fig_h))
    colorbar(fig, cax=cax)
    chars = max(40, int(fig_w / 6.5))
    fig.text(0.5, 1 - 6 / fig_h, '\n'.join(textwrap.wrap(title, chars)[:4]), ha='center',
             va='top', fontsize=9)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def save_summary(path: str, image_name: str, weights: str, panels: List[StagePanel]) -> None:
    import matplotlib.pyplot as plt
    h, w = panels[0].significance.shape[:2]
    cols, rows = len(panels), 2
    panel_w = 4.0
    panel_h = max(1.5, min(8., panel_w * h / w))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * (panel_w + 1.9), rows * (panel_h + 0.9)
                                                  + 0.9), squeeze=False)
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
            ax.text(0.5, 0.5, 'no significance-guided block follows', ha='center',
                    va='center', transform=ax.transAxes, fontsize=9)
    fig.suptitle(f'SG-Former significance (top) and token allocation (bottom): {image_name}\n'
                 f'{weights}', fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def write_png(path: str, rgb: np.ndarray) -> None:
    import cv2
    if not cv2.imwrite(path, np.ascontiguousarray(rgb[..., ::-1])):
        raise OSError(f'could not write {path}')


# ---------------------------------------------------------------------------------- main
def visualize_image(model, transforms, path: str, index: int, out_dir: str, weights: str,
                    block: int, alpha: float) -> List[str]:
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
        stride = 4 * 2 ** stage
        expected = tuple(math.ceil(v / stride) for v in input_hw)
        actual = tuple(sig_record['significance'].shape[-2:])
        if actual != expected:
            raise RuntimeError(f'stage {stage + 1} map is {actual}, expected {expected} for an '
                               f'input of {input_hw}')
        spec = REALLOCATION_SPECS.get(sr_ratios[stage])
        panel = StagePanel(stage, stride, sig_record, alloc_record, image, geometry,
                           sr_ratios[stage], LOCAL_WINDOW, spec.merge_sizes if spec else (),
                           alpha)
        panels.append(panel)
        tag = f'stage{stage + 1}'
        files = [(f'{tag}_significance.png', panel.significance,
                  f'{name}: {panel.sig_title()}{suffix}', panel.sig_colorbar)]
        if panel.allocation is not None:
            files.append((f'{tag}_allocation.png', panel.allocation,
                          f'{name}: {panel.alloc_title()}{suffix}', panel.alloc_colorbar))
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


def main(argv=None) -> List[str]:
    args = parse_args(argv)
    import matplotlib
    matplotlib.use('Agg')
    import torch

    images = expand_images(args.image)
    device = args.device or ('cuda:0' if torch.cuda.is_available() else 'cpu')
    if args.checkpoint is not None and not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
    cfg = load_config(args.config, args.cfg_options)
    models_registry, transforms_registry = registries(cfg)
    model, weights = build_model(cfg, models_registry, args.checkpoint, device)
    transforms = build_transforms(find_test_pipeline(cfg), transforms_registry)
    written = []
    for index, (path, name) in enumerate(zip(images, output_names(images))):
        files = visualize_image(model, transforms, path, index, osp.join(args.out, name),
                                weights, args.block, args.alpha)
        for f in files:
            print(f)
        written += files
    print(f'{len(images)} image(s), {len(written)} PNG files written under {args.out}')
    return written


if __name__ == '__main__':
    main()
