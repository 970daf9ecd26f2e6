"""Models for the analysis tools: named backbones and whole models built from configs.

Backbones (no pretrained weights, official initialisation):

* ``sgformer_s/m/b`` - :class:`mmsgformer.models.SGFormer` (``arch='s'|'m'|'b'``);
* ``swin_t/s/b`` - mmdet's ``SwinTransformer`` (window 7, the Swin paper's T/S/B);
* ``pvtv2_b2/b3/b5`` - mmdet's ``PyramidVisionTransformerV2`` (the PVTv2 paper's B2/B3/B5);
* ``timm_swin_t/s/b``, ``timm_pvtv2_b2/b3/b5`` - the same networks from timm (optional
  package), e.g. where mmdet (which needs mmcv's compiled ops) is not installed; Swin is built
  with ``dynamic_img_size=True`` so any input size works;
* any extra SG-Former given as ``NAME=JSON_ARCH`` (see :func:`parse_custom`).

Whole models come from an OpenMMLab config (mmpretrain classifier, mmdet detector, mmseg
segmentor; read with :func:`mmsgformer.utils.config.load_config`) with every pretrained
``init_cfg`` dropped, so nothing is downloaded or loaded.
"""

from __future__ import annotations

import json
from copy import deepcopy
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from mmsgformer.apis.inference import build_model
from mmsgformer.utils.config import task_of

SWIN = dict(
    swin_t=dict(embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24]),
    swin_s=dict(embed_dims=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24]),
    swin_b=dict(embed_dims=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32]),
)
PVTV2 = dict(
    pvtv2_b2=dict(embed_dims=64, num_layers=[3, 4, 6, 3]),
    pvtv2_b3=dict(embed_dims=64, num_layers=[3, 4, 18, 3]),
    pvtv2_b5=dict(embed_dims=64, num_layers=[3, 6, 40, 3], mlp_ratios=[4, 4, 4, 4]),
)
SGFORMER = dict(sgformer_s='s', sgformer_m='m', sgformer_b='b')
TIMM = dict(
    timm_swin_t='swin_tiny_patch4_window7_224',
    timm_swin_s='swin_small_patch4_window7_224',
    timm_swin_b='swin_base_patch4_window7_224',
    timm_pvtv2_b2='pvt_v2_b2',
    timm_pvtv2_b3='pvt_v2_b3',
    timm_pvtv2_b5='pvt_v2_b5',
)

DEFAULT_MODELS = [
    'sgformer_s',
    'sgformer_m',
    'sgformer_b',
    'swin_t',
    'swin_s',
    'swin_b',
    'pvtv2_b2',
    'pvtv2_b3',
    'pvtv2_b5',
]
# The baselines a user would pick instead of each SG-Former (similar cost and accuracy).
BASELINES = dict(
    sgformer_s=['swin_t', 'pvtv2_b2', 'timm_swin_t', 'timm_pvtv2_b2'],
    sgformer_m=['swin_s', 'pvtv2_b3', 'timm_swin_s', 'timm_pvtv2_b3'],
    sgformer_b=['swin_b', 'pvtv2_b5', 'timm_swin_b', 'timm_pvtv2_b5'],
)


def parse_custom(items: Optional[Sequence[str]]) -> Dict[str, dict]:
    """``['NAME=JSON', ...]`` -> ``{NAME: arch dict}`` of extra SG-Former architectures."""
    archs = {}
    for item in items or []:
        name, sep, arch = item.partition('=')
        if not sep or not name:
            raise ValueError(f'--custom expects NAME=JSON_ARCH, got {item!r}')
        archs[name] = json.loads(arch)
    return archs


def known_models(custom: Dict[str, dict]) -> List[str]:
    return sorted(set(SGFORMER) | set(SWIN) | set(PVTV2) | set(TIMM) | set(custom))


def required_libraries(names: Sequence[str]) -> List[str]:
    """The model libraries (``mmdet``, ``timm``) that building ``names`` imports."""
    libs = []
    if any(n in SWIN or n in PVTV2 for n in names):
        libs.append('mmdet.models')
    if any(n in TIMM for n in names):
        libs.append('timm')
    return libs


def is_sgformer(name: str, custom: Dict[str, dict]) -> bool:
    return name in SGFORMER or name in custom


def supports_cp(name: str) -> bool:
    """Whether ``build_backbone(name, with_cp=True)`` really checkpoints (not mmdet's PVTv2)."""
    return name not in PVTV2


class TimmFeatures(nn.Module):
    """A timm backbone returning its 4 stage outputs (NCHW) like the mmdet backbones.

    timm's Swin needs input sides divisible by its patch size (4); the input is zero-padded at
    the bottom/right to that (mmdet's detectors pad to 32 anyway).

    Args:
        timm_name: timm model name, e.g. ``'pvt_v2_b2'``.
        with_cp: gradient checkpointing (timm's ``set_grad_checkpointing``).
    """

    def __init__(self, timm_name: str, with_cp: bool = False) -> None:
        super().__init__()
        try:
            import timm
        except ImportError as exc:
            raise ImportError(f'{timm_name} needs timm: pip install timm') from exc
        kwargs = dict(dynamic_img_size=True) if timm_name.startswith('swin') else {}
        self.net = timm.create_model(
            timm_name, pretrained=False, num_classes=0, drop_path_rate=0.1, **kwargs
        )
        self.net.set_grad_checkpointing(with_cp)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        pad_h, pad_w = (-x.shape[-2]) % 4, (-x.shape[-1]) % 4
        if pad_h or pad_w:
            x = nn.functional.pad(x, (0, pad_w, 0, pad_h))
        return tuple(self.net.forward_intermediates(x, intermediates_only=True))


def build_backbone(
    name: str, custom: Optional[Dict[str, dict]] = None, with_cp: bool = False
) -> nn.Module:
    """A named backbone returning 4 feature maps (strides 4-32), randomly initialised."""
    custom = custom or {}
    if name in SGFORMER or name in custom:
        from mmsgformer.models import SGFormer

        arch = SGFORMER.get(name) or deepcopy(custom[name])
        return SGFormer(arch=arch, out_indices=(0, 1, 2, 3), with_cp=with_cp)
    if name in SWIN:
        from mmdet.models.backbones import SwinTransformer

        return SwinTransformer(
            window_size=7, out_indices=(0, 1, 2, 3), with_cp=with_cp, **SWIN[name]
        )
    if name in PVTV2:
        from mmdet.models.backbones import PyramidVisionTransformerV2

        # mmdet's PVTv2 has no gradient checkpointing; with_cp is ignored (see supports_cp).
        return PyramidVisionTransformerV2(out_indices=(0, 1, 2, 3), **PVTV2[name])
    if name in TIMM:
        return TimmFeatures(TIMM[name], with_cp=with_cp)
    raise ValueError(f'unknown model {name!r}; known: {known_models(custom)}')


# ---------------------------------------------------------------------------------- configs
def build_from_config(cfg) -> Tuple[nn.Module, str]:
    """Builds ``cfg.model`` in its scope with pretrained loading disabled.

    Returns the model (in eval mode, weights from the modules' own initialisation; see
    :func:`mmsgformer.apis.build_model`) and its task (:func:`mmsgformer.utils.config.task_of`).
    """
    return build_model(cfg), task_of(cfg)


def synthetic_samples(
    task: str, batch: int, hw: Tuple[int, int], num_classes: int = 80, seed: int = 0
) -> list:
    """Data samples with image metadata and a few random ground-truth objects/labels.

    Detection: 3 boxes per image (with rectangular masks); segmentation: random labels in
    ``[0, num_classes)``; classification: one random label.
    """
    gen = torch.Generator().manual_seed(seed)
    h, w = hw
    samples = []
    for _ in range(batch):
        if task == 'det':
            import numpy as np
            from mmdet.structures import DetDataSample
            from mmdet.structures.mask import BitmapMasks
            from mmengine.structures import InstanceData

            sample = DetDataSample(
                metainfo=dict(
                    img_shape=(h, w),
                    ori_shape=(h, w),
                    pad_shape=(h, w),
                    batch_input_shape=(h, w),
                    scale_factor=(1.0, 1.0),
                    img_id=0,
                )
            )
            xy = torch.rand(3, 2, generator=gen) * torch.tensor([w * 0.6, h * 0.6])
            wh = (torch.rand(3, 2, generator=gen) * 0.3 + 0.1) * torch.tensor([w, h])
            boxes = torch.cat([xy, xy + wh], 1)
            masks = np.zeros((3, h, w), dtype=np.uint8)
            for i, (x1, y1, x2, y2) in enumerate(boxes.round().int().tolist()):
                masks[i, y1:y2, x1:x2] = 1
            sample.gt_instances = InstanceData(
                bboxes=boxes,
                labels=torch.randint(0, num_classes, (3,), generator=gen),
                masks=BitmapMasks(masks, h, w),
            )
        elif task == 'seg':
            from mmengine.structures import PixelData
            from mmseg.structures import SegDataSample

            sample = SegDataSample(
                metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w))
            )
            sample.gt_sem_seg = PixelData(
                data=torch.randint(0, num_classes, (1, h, w), generator=gen)
            )
        else:
            from mmpretrain.structures import DataSample

            sample = DataSample(metainfo=dict(img_shape=(h, w)))
            sample.set_gt_label(int(torch.randint(0, num_classes, (1,), generator=gen)))
        samples.append(sample)
    return samples


def num_classes_of(model: nn.Module, task: str) -> int:
    head = None
    if task == 'det':
        head = getattr(getattr(model, 'roi_head', None), 'bbox_head', None)
        head = head[-1] if isinstance(head, nn.ModuleList) else head
        if head is None:
            head = getattr(model, 'bbox_head', None)
    elif task == 'seg':
        head = getattr(model, 'decode_head', None)
    else:
        head = getattr(model, 'head', None)
    return int(getattr(head, 'num_classes', 2) or 2)


def whole_model_fns(
    model: nn.Module, task: str, batch: int, hw: Tuple[int, int]
) -> Tuple[Callable, Callable]:
    """``(infer, loss)`` callables of an image batch for a whole model.

    * ``infer(x)`` = ``model(x, samples, mode='tensor')``: the network's forward without
      post-processing (classifier: backbone + neck + head logits; detector: ``_forward``,
      i.e. backbone, neck, RPN proposals and RoI heads; segmentor: backbone + decode head).
    * ``loss(x)`` = the sum of ``model(x, samples, mode='loss')``'s loss tensors (the
      training loss on synthetic targets, see :func:`synthetic_samples`).
    """
    samples = synthetic_samples(task, batch, hw, num_classes_of(model, task))

    def infer(x):
        return model(x, samples, mode='tensor')

    def loss(x):
        losses = model(x, samples, mode='loss')
        total, _ = model.parse_losses(losses)
        return total

    return infer, loss


__all__ = [
    'BASELINES',
    'DEFAULT_MODELS',
    'TimmFeatures',
    'build_backbone',
    'build_from_config',
    'is_sgformer',
    'known_models',
    'num_classes_of',
    'parse_custom',
    'required_libraries',
    'supports_cp',
    'synthetic_samples',
    'whole_model_fns',
]
