"""Mask R-CNN (and Faster R-CNN) as one module that exports to standard ONNX.

:class:`DetectorExport` reruns mmdet's test forward (``TwoStageDetector.predict`` with
``rescale=False``) in plain torch on the detector's own modules and weights: RPN anchors,
per-level ``nms_pre`` selection, delta decoding, batched NMS (``torchvision.ops.nms``, exported
as ``NonMaxSuppression``), RoIAlign on the FPN level each RoI maps to
(``torchvision.ops.roi_align``, exported as ``RoiAlign`` with ``half_pixel`` coordinates), the
bbox head with multi-class NMS, and the mask head pasted at the input size with ``grid_sample``.

Export with an example batch of 2 or more (a batch of 1 is fixed while tracing) and sides from
65 on (at 64 the FPN's extra stride-64 level has one cell, a size fixed while tracing).

Every stage has a fixed number of rows per image: a selection that finds fewer (a small image,
few detections) pads with invalid rows, so a batch stacks and only NMS has a data-dependent
size inside the graph. The outputs have ``K = test_cfg.rcnn.max_per_img`` rows per image;
unused rows have score 0, label -1 and an empty mask.

NMS runs once for the whole batch, with mmcv's coordinate-offset trick extended to images
(group ``image * groups + class``): with one image the offsets are mmcv's, with several they
are larger, which can round a box's offset coordinates differently (an IoU at the threshold
may then decide otherwise).
"""

from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import nms, roi_align

from .errors import ExportError
from .preprocess import Preprocess

Boxes = torch.Tensor
"""``(..., 4)`` boxes as ``x1, y1, x2, y2`` in input pixels."""


# ------------------------------------------------------------------ configuration checks
def _nms_iou(cfg: dict, stage: str) -> float:
    """The IoU threshold of a ``test_cfg`` NMS entry (plain NMS only).

    Args:
        cfg: The stage's ``test_cfg`` (``rpn`` or ``rcnn``).
        stage: The stage in messages.
    """
    nms_cfg = cfg.get('nms')
    if nms_cfg is None or nms_cfg.get('type', 'nms') != 'nms':
        raise ExportError(
            f"test_cfg.{stage}.nms must be plain NMS (type='nms') to export; got {nms_cfg}"
        )
    if nms_cfg.get('class_agnostic', False):
        raise ExportError(f'test_cfg.{stage}.nms.class_agnostic is not supported by the export')
    return float(nms_cfg['iou_threshold'])


def _check_coder(coder: nn.Module, where: str) -> None:
    """Only mmdet's ``DeltaXYWHBBoxCoder`` without centre clamping is reimplemented."""
    if type(coder).__name__ != 'DeltaXYWHBBoxCoder' or coder.add_ctr_clamp:
        raise ExportError(
            f'{where}.bbox_coder must be DeltaXYWHBBoxCoder without '
            f'add_ctr_clamp to export; got {type(coder).__name__}'
        )


def _check_roi_layers(extractor: nn.Module, where: str) -> None:
    """Only mmcv ``RoIAlign`` layers in average mode are reimplemented."""
    for layer in extractor.roi_layers:
        if type(layer).__name__ != 'RoIAlign' or layer.pool_mode != 'avg':
            raise ExportError(
                f"{where} must use RoIAlign with pool_mode='avg' to export; got {layer}"
            )


def _check_detector(detector: nn.Module) -> None:
    """Raises :class:`ExportError` unless ``detector`` is an RPN + standard RoI head model."""
    roi_head = getattr(detector, 'roi_head', None)
    if not getattr(detector, 'with_rpn', False) or roi_head is None:
        raise ExportError(f'{type(detector).__name__} is not a two-stage detector with an RPN')
    if type(roi_head).__name__ != 'StandardRoIHead' or roi_head.with_shared_head:
        raise ExportError(
            f'the RoI head must be a StandardRoIHead without a shared head to '
            f'export; got {type(roi_head).__name__}'
        )
    _check_coder(detector.rpn_head.bbox_coder, 'rpn_head')
    _check_coder(roi_head.bbox_head.bbox_coder, 'roi_head.bbox_head')
    if getattr(roi_head.bbox_head, 'custom_cls_channels', False):
        raise ExportError('a bbox head with custom classification channels is not supported')
    _check_roi_layers(roi_head.bbox_roi_extractor, 'roi_head.bbox_roi_extractor')
    if roi_head.with_mask:
        _check_roi_layers(roi_head.mask_roi_extractor, 'roi_head.mask_roi_extractor')
        if roi_head.test_cfg.get('mask_thr_binary', 0.5) < 0:
            raise ExportError(
                'test_cfg.rcnn.mask_thr_binary must be >= 0: the export returns binary masks'
            )


# ------------------------------------------------------------------ boxes
def grid_anchors(
    base_anchors: torch.Tensor, stride: Sequence[float], height: int, width: int
) -> Boxes:
    """The anchors of one feature level, in mmdet's order (row, column, base anchor).

    Args:
        base_anchors: ``(A, 4)`` anchors at the origin (the generator's ``base_anchors``).
        stride: ``(w, h)`` stride of the level.
        height: Height of the feature map (may be symbolic).
        width: Width of the feature map (may be symbolic).

    Returns:
        ``(height * width * A, 4)`` anchors.
    """
    shift_x = torch.arange(width, device=base_anchors.device).float() * stride[0]
    shift_y = torch.arange(height, device=base_anchors.device).float() * stride[1]
    yy, xx = torch.meshgrid(shift_y, shift_x, indexing='ij')
    shifts = torch.stack([xx, yy, xx, yy], dim=-1).flatten(0, 1)
    return (shifts[:, None] + base_anchors[None]).flatten(0, 1)


def decode_deltas(
    coder: nn.Module,
    priors: Boxes,
    deltas: torch.Tensor,
    height: int,
    width: int,
    wh_ratio_clip: float = 16 / 1000,
) -> Boxes:
    """mmdet's ``delta2bbox`` for broadcastable ``priors`` and ``deltas``.

    Args:
        coder: The ``DeltaXYWHBBoxCoder`` (its means, stds and ``clip_border``).
        priors: ``(..., 4)`` anchors or RoIs.
        deltas: ``(..., 4)`` encoded offsets.
        height: Image height the boxes are clipped to.
        width: Image width the boxes are clipped to.
        wh_ratio_clip: Largest allowed log-scale change, as the coder's ``decode`` default.

    Returns:
        ``(..., 4)`` boxes.
    """
    means = deltas.new_tensor(coder.means)
    stds = deltas.new_tensor(coder.stds)
    denorm = deltas * stds + means
    max_ratio = abs(math.log(wh_ratio_clip))
    centre = (priors[..., :2] + priors[..., 2:]) * 0.5
    size = priors[..., 2:] - priors[..., :2]
    centre = centre + size * denorm[..., :2]
    size = size * denorm[..., 2:].clamp(min=-max_ratio, max=max_ratio).exp()
    boxes = torch.cat([centre - size * 0.5, centre + size * 0.5], dim=-1)
    if not coder.clip_border:
        return boxes
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)


def batched_nms_keep(
    boxes: Boxes,
    scores: torch.Tensor,
    groups: torch.Tensor,
    valid: torch.Tensor,
    num_groups: int,
    iou_threshold: float,
) -> torch.Tensor:
    """Which candidates NMS keeps, independently per image and group (mmcv ``batched_nms``).

    Args:
        boxes: ``(B, N, 4)`` boxes.
        scores: ``(B, N)`` scores.
        groups: ``(N,)`` or ``(B, N)`` group (level or class) of each box, below
            ``num_groups``.
        valid: ``(B, N)`` candidates; the others take no part.
        num_groups: Number of groups per image.
        iou_threshold: Boxes overlapping a kept box of the same group by more are dropped.

    Returns:
        ``(B, N)`` bool, the kept candidates.
    """
    batch, num = scores.shape
    max_coordinate = torch.where(valid[..., None], boxes, -math.inf).max()
    image = torch.arange(batch, device=boxes.device)[:, None]
    offsets = (image * num_groups + groups).to(boxes.dtype) * (max_coordinate + 1)
    flat = valid.reshape(-1).nonzero().squeeze(1)
    candidates = boxes.reshape(-1, 4)[flat] + offsets.reshape(-1)[flat, None]
    kept = flat[nms(candidates, scores.reshape(-1)[flat], iou_threshold)]
    keep = torch.zeros(batch * num, dtype=torch.bool, device=boxes.device)
    keep[kept] = True
    return keep.reshape(batch, num)


def top_valid(
    scores: torch.Tensor, valid: torch.Tensor, k: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best valid entries of each row, padded where a row has fewer.

    Args:
        scores: ``(B, N)`` scores (never ``-inf``).
        valid: ``(B, N)`` bool, the entries that may be chosen.
        k: Entries per row.

    Returns:
        ``(B, k)`` indices into ``N`` in descending score order (0 in padding rows) and
        ``(B, k)`` bool, which of them were found.
    """
    ranked = torch.where(valid, scores, -math.inf)
    padded = torch.cat([ranked, ranked.new_full((ranked.shape[0], k), -math.inf)], dim=1)
    top, index = padded.topk(k, dim=1)
    found = top > -math.inf
    return torch.where(found, index, 0), found


def gather_rows(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values[b, index[b, i]]`` for ``(B, N, ...)`` values and ``(B, k)`` indices."""
    expanded = index.reshape(*index.shape, *[1] * (values.dim() - 2))
    return values.gather(1, expanded.expand(*index.shape, *values.shape[2:]))


# ------------------------------------------------------------------ RoI features
def roi_levels(rois: torch.Tensor, finest_scale: float, num_levels: int) -> torch.Tensor:
    """The FPN level of each RoI, as mmdet's ``SingleRoIExtractor.map_roi_levels``.

    Args:
        rois: ``(R, 5)`` RoIs (image index, box).
        finest_scale: Scale mapped to level 0.
        num_levels: Number of levels.
    """
    scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
    levels = torch.floor(torch.log2(scale / finest_scale + 1e-6))
    return levels.clamp(min=0, max=num_levels - 1).long()


def extract_roi_features(
    extractor: nn.Module, feats: Sequence[torch.Tensor], rois: torch.Tensor
) -> torch.Tensor:
    """``SingleRoIExtractor.forward``: RoIAlign on the level each RoI maps to.

    Every level pools every RoI and the mapped level is chosen per RoI, so the graph has no
    data-dependent split.

    Args:
        extractor: The ``SingleRoIExtractor`` (mmcv ``RoIAlign`` layers).
        feats: The FPN levels.
        rois: ``(R, 5)`` RoIs (image index, box).

    Returns:
        ``(R, C, h, w)`` features.
    """
    layers = extractor.roi_layers
    levels = roi_levels(rois, extractor.finest_scale, len(layers))[:, None, None, None]
    pooled = None
    for level, layer in enumerate(layers):
        level_feats = roi_align(
            feats[level],
            rois,
            layer.output_size,
            layer.spatial_scale,
            layer.sampling_ratio,
            layer.aligned,
        )
        pooled = (
            level_feats if pooled is None else torch.where(levels == level, level_feats, pooled)
        )
    return pooled


def to_rois(boxes: Boxes) -> torch.Tensor:
    """``(B, k, 4)`` boxes as ``(B * k, 5)`` RoIs with their image index first."""
    batch, k = boxes.shape[:2]
    image = torch.arange(batch, device=boxes.device, dtype=boxes.dtype)
    image = image[:, None, None].expand(batch, k, 1)
    return torch.cat([image, boxes], dim=-1).reshape(-1, 5)


def paste_masks(masks: torch.Tensor, boxes: Boxes, height: int, width: int) -> torch.Tensor:
    """mmdet's ``_do_paste_mask`` over the whole image: each mask resampled into its box.

    Args:
        masks: ``(R, 1, h, w)`` mask probabilities.
        boxes: ``(R, 4)`` boxes.
        height: Image height.
        width: Image width.

    Returns:
        ``(R, height, width)`` probabilities (0 outside each box's neighbourhood).
    """
    x0, y0, x1, y1 = boxes.split(1, dim=1)
    img_y = torch.arange(height, device=boxes.device).float() + 0.5
    img_x = torch.arange(width, device=boxes.device).float() + 0.5
    img_y = (img_y - y0) / (y1 - y0) * 2 - 1
    img_x = (img_x - x0) / (x1 - x0) * 2 - 1
    img_y = torch.where(torch.isinf(img_y), 0.0, img_y)
    img_x = torch.where(torch.isinf(img_x), 0.0, img_x)
    num = masks.shape[0]
    grid = torch.stack(
        [
            img_x[:, None, :].expand(num, height, width),
            img_y[:, :, None].expand(num, height, width),
        ],
        dim=3,
    )
    return F.grid_sample(masks, grid, align_corners=False)[:, 0]


# ------------------------------------------------------------------ the module
class DetectorExport(nn.Module):
    """An mmdet two-stage detector's test forward as one exportable module.

    ``forward`` takes ``(N, 3, H, W)`` float32 images, 0-255, as the config's data preprocessor
    receives them (after the pipeline's resize, in its channel order) and returns
    ``dets`` ``(N, K, 5)`` (``x1, y1, x2, y2, score`` in input pixels), ``labels`` ``(N, K)``
    int64 and, with a mask head, ``masks`` ``(N, K, H, W)`` bool, thresholded at
    ``test_cfg.rcnn.mask_thr_binary``. ``K`` is ``test_cfg.rcnn.max_per_img``; unused rows have
    score 0, label -1 and an empty mask. The results are those of ``detector.predict`` with
    ``rescale=False``.

    Args:
        detector: A built mmdet ``TwoStageDetector`` (Mask R-CNN or Faster R-CNN: FPN neck, RPN
            head, ``StandardRoIHead`` with a bbox head and an optional FCN mask head), in eval
            mode.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        _check_detector(detector)
        if detector.training:
            raise ExportError('put the detector in eval mode (detector.eval()) before export')
        self.detector = detector
        self.preprocess = Preprocess(detector.data_preprocessor)
        rpn_cfg, rcnn_cfg = detector.rpn_head.test_cfg, detector.roi_head.test_cfg
        self.rpn_iou = _nms_iou(rpn_cfg, 'rpn')
        self.rcnn_iou = _nms_iou(rcnn_cfg, 'rcnn')
        self.nms_pre = int(rpn_cfg.get('nms_pre', -1))
        self.num_proposals = int(rpn_cfg.max_per_img)
        self.min_bbox_size = float(rpn_cfg.get('min_bbox_size', -1))
        self.score_thr = float(rcnn_cfg.score_thr)
        self.max_per_img = int(rcnn_cfg.get('max_per_img', -1))
        self.mask_thr = float(rcnn_cfg.get('mask_thr_binary', 0.5))
        generator = detector.rpn_head.prior_generator
        self.strides = [tuple(float(s) for s in stride) for stride in generator.strides]
        for level, anchors in enumerate(generator.base_anchors):
            self.register_buffer(f'base_anchors{level}', anchors.float().clone(), persistent=False)
        self.with_mask = bool(detector.roi_head.with_mask)
        self.output_names = ('dets', 'labels', 'masks') if self.with_mask else ('dets', 'labels')
        self.eval()

    def forward(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Detects objects in a batch of images.

        Args:
            inputs: ``(N, 3, H, W)`` float32 images, 0-255, in the pipeline's channel order.

        Returns:
            ``dets``, ``labels`` and, with a mask head, ``masks`` (see the class).
        """
        images, (height, width) = self.preprocess(inputs)
        feats = self.detector.extract_feat(images)
        proposals, proposal_valid = self.proposals(feats, height, width)
        boxes, scores, labels, found = self.detections(
            feats, proposals, proposal_valid, height, width
        )
        dets = torch.cat([boxes, scores[..., None]], dim=-1)
        if not self.with_mask:
            return dets, labels
        return dets, labels, self.masks(feats, boxes, labels, found, height, width)

    def _level_candidates(
        self, cls_score: torch.Tensor, bbox_pred: torch.Tensor, level: int
    ) -> Tuple[torch.Tensor, ...]:
        """One RPN level's ``nms_pre`` best anchors: scores, deltas, anchors, found."""
        rpn_head = self.detector.rpn_head
        batch, _, feat_h, feat_w = cls_score.shape
        # (B, A * c, H, W) -> (B, H * W * A, c) (flatten: no size to infer, a faster export)
        logits = cls_score.permute(0, 2, 3, 1).unflatten(-1, (-1, rpn_head.cls_out_channels))
        logits = logits.flatten(1, 3)
        scores = (
            logits.sigmoid()[..., 0] if rpn_head.use_sigmoid_cls else logits.softmax(-1)[..., 0]
        )
        deltas = bbox_pred.permute(0, 2, 3, 1).unflatten(-1, (-1, 4)).flatten(1, 3)
        anchors = grid_anchors(
            getattr(self, f'base_anchors{level}'), self.strides[level], feat_h, feat_w
        )
        if self.nms_pre <= 0:
            found = torch.ones_like(scores, dtype=torch.bool)
            return scores, deltas, anchors.expand(batch, -1, -1), found
        index, found = top_valid(scores, torch.ones_like(scores, dtype=torch.bool), self.nms_pre)
        return (scores.gather(1, index), gather_rows(deltas, index), anchors[index], found)

    def proposals(
        self, feats: Sequence[torch.Tensor], height: int, width: int
    ) -> Tuple[Boxes, torch.Tensor]:
        """The RPN's proposals (``RPNHead.predict`` with ``test_cfg.rpn``).

        Args:
            feats: The FPN levels.
            height: Input height.
            width: Input width.

        Returns:
            ``(B, P, 4)`` proposals, best first, ``P = test_cfg.rpn.max_per_img``, and ``(B, P)``
            bool, which are real.
        """
        cls_scores, bbox_preds = self.detector.rpn_head(feats)
        parts: List[Tuple[torch.Tensor, ...]] = [
            self._level_candidates(cls_score, bbox_pred, level)
            for level, (cls_score, bbox_pred) in enumerate(zip(cls_scores, bbox_preds))
        ]
        scores, deltas, anchors, found = (torch.cat(part, dim=1) for part in zip(*parts))
        levels = torch.cat(
            [
                torch.full(part[0].shape[1:], level, device=scores.device)
                for level, part in enumerate(parts)
            ]
        )
        boxes = decode_deltas(self.detector.rpn_head.bbox_coder, anchors, deltas, height, width)
        if self.min_bbox_size >= 0:
            size = boxes[..., 2:] - boxes[..., :2]
            found = found & (size > self.min_bbox_size).all(dim=-1)
        keep = batched_nms_keep(boxes, scores, levels, found, len(parts), self.rpn_iou)
        index, valid = top_valid(scores, keep, self.num_proposals)
        return gather_rows(boxes, index), valid

    def detections(
        self,
        feats: Sequence[torch.Tensor],
        proposals: Boxes,
        proposal_valid: torch.Tensor,
        height: int,
        width: int,
    ) -> Tuple[torch.Tensor, ...]:
        """The bbox head's detections (``StandardRoIHead.predict_bbox``, ``multiclass_nms``).

        Args:
            feats: The FPN levels.
            proposals: ``(B, P, 4)`` proposals.
            proposal_valid: ``(B, P)`` bool, which proposals are real.
            height: Input height.
            width: Input width.

        Returns:
            ``(B, K, 4)`` boxes, ``(B, K)`` scores, ``(B, K)`` labels and ``(B, K)`` bool, which
            rows are detections (the others have score 0, label -1 and a zero box).
        """
        roi_head = self.detector.roi_head
        bbox_head = roi_head.bbox_head
        batch, num = proposals.shape[:2]
        roi_feats = extract_roi_features(
            roi_head.bbox_roi_extractor,
            feats[: roi_head.bbox_roi_extractor.num_inputs],
            to_rois(proposals),
        )
        cls_score, bbox_pred = bbox_head(roi_feats)
        num_classes = bbox_head.num_classes
        scores = cls_score.softmax(-1)[:, :num_classes].reshape(batch, num * num_classes)
        deltas = bbox_pred.reshape(batch, num, -1, 4)
        boxes = decode_deltas(bbox_head.bbox_coder, proposals[:, :, None], deltas, height, width)
        boxes = boxes.expand(batch, num, num_classes, 4).reshape(batch, num * num_classes, 4)
        classes = torch.arange(num_classes, device=scores.device).repeat(num)
        candidates = (scores > self.score_thr) & proposal_valid.repeat_interleave(
            num_classes, dim=1
        )
        keep = batched_nms_keep(boxes, scores, classes, candidates, num_classes, self.rcnn_iou)
        k = self.max_per_img if self.max_per_img > 0 else num * num_classes
        index, found = top_valid(scores, keep, k)
        boxes = torch.where(found[..., None], gather_rows(boxes, index), 0.0)
        scores = torch.where(found, scores.gather(1, index), 0.0)
        labels = torch.where(found, index % num_classes, -1)
        return boxes, scores, labels, found

    def masks(
        self,
        feats: Sequence[torch.Tensor],
        boxes: Boxes,
        labels: torch.Tensor,
        found: torch.Tensor,
        height: int,
        width: int,
    ) -> torch.Tensor:
        """The mask head's binary masks (``StandardRoIHead.predict_mask``, ``rescale=False``).

        Args:
            feats: The FPN levels.
            boxes: ``(B, K, 4)`` detected boxes.
            labels: ``(B, K)`` labels (-1 in unused rows).
            found: ``(B, K)`` bool, which rows are detections.
            height: Input height.
            width: Input width.

        Returns:
            ``(B, K, height, width)`` bool masks (empty in unused rows).
        """
        roi_head = self.detector.roi_head
        batch, k = labels.shape
        # unused rows get a unit box: the paste divides by the box size
        unit = boxes.new_tensor([0.0, 0.0, 1.0, 1.0])
        boxes = torch.where(found[..., None], boxes, unit)
        mask_feats = extract_roi_features(
            roi_head.mask_roi_extractor,
            feats[: roi_head.mask_roi_extractor.num_inputs],
            to_rois(boxes),
        )
        mask_preds = roi_head.mask_head(mask_feats)
        if not roi_head.mask_head.class_agnostic:
            channel = labels.clamp(min=0).reshape(-1, 1, 1, 1)
            mask_preds = mask_preds.gather(1, channel.expand(-1, 1, *mask_preds.shape[2:]))
        masks = paste_masks(mask_preds.sigmoid(), boxes.reshape(-1, 4), height, width)
        masks = masks.reshape(batch, k, height, width) >= self.mask_thr
        return masks & found[..., None, None]
