"""Mask R-CNN as one exportable module (mmsgformer/deployment/detection.py).

The detection demo (Mask R-CNN on a tiny SG-Former), seeded, is exported once with dynamic
batch, height and width through the library's capture (``trace_to_onnx``); ONNX Runtime then
runs sizes other than the traced one and must give mmdet's own ``predict``
(``rescale=False``).
"""

import pytest
import torch
from conftest import DETECTION_DEMO_CONFIG
from torchvision.ops import box_iou

from mmsgformer.apis import build_model
from mmsgformer.deployment import ExportError
from mmsgformer.deployment.detection import DetectorExport
from mmsgformer.deployment.export import finish_file, trace_to_onnx
from mmsgformer.utils.config import load_config

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')

SIZES = [(2, 97, 131), (1, 211, 150)]
"""``(batch, H, W)`` run at: odd, not multiples of 32, never the traced ``(2, 128, 160)``."""
MAX_PER_IMG = 100
"""Detections per image: more than the 3 classes x 30 proposals can give, so rows pad."""


def _detector() -> torch.nn.Module:
    """The demo's Mask R-CNN, seeded; 30 proposals, 100 detections per image."""
    cfg = load_config(DETECTION_DEMO_CONFIG)
    cfg.model.test_cfg.rpn.max_per_img = 30
    cfg.model.test_cfg.rcnn.max_per_img = MAX_PER_IMG
    torch.manual_seed(0)
    return build_model(cfg)


def _images(batch: int, height: int, width: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(height)
    return (torch.rand(batch, 3, height, width, generator=generator) * 255).round()


def _mmdet_predict(detector: torch.nn.Module, images: torch.Tensor) -> list:
    """``detector.predict`` with ``rescale=False``: the instances of each image."""
    from mmdet.structures import DetDataSample

    size = tuple(images.shape[2:])
    samples = [
        DetDataSample(metainfo=dict(img_shape=size, ori_shape=size, scale_factor=(1.0, 1.0)))
        for _ in images
    ]
    with torch.no_grad():
        data = detector.data_preprocessor(dict(inputs=list(images), data_samples=samples))
        results = detector.predict(data['inputs'], data['data_samples'], rescale=False)
    return [result.pred_instances for result in results]


BOX_IOU, SCORE_TOLERANCE, BOX_PIXELS = 0.99, 1e-3, 0.1
"""Parity of each detection: box IoU >= 0.99 or corners within 0.1 pixel (the random
detector's slivers, boxes a pixel wide, where an IoU measures rounding), score within 1e-3."""
MASK_IOU = 0.95
"""Parity of the masks, all detections of an image together. A random mask head's logits sit
at the threshold, so border pixels flip with the last bits of the backbone's features; the
per-detection mask IoU of a trained model is measured in docs/deployment.md."""


def _check_matches(expected, dets, labels, masks) -> None:
    """Every mmdet detection above 0.05 has one of the same label and score with the same
    box, and the masks agree (see above); rows beyond mmdet's are padding (score 0, label -1,
    empty mask)."""
    dets, labels, masks = (torch.as_tensor(a) for a in (dets, labels, masks))
    assert dets.dtype == torch.float32 and labels.dtype == torch.int64
    expected = expected[expected.scores > 0.05]
    real = labels >= 0
    assert int(real.sum()) == len(expected)
    assert (dets[~real, 4] == 0).all() and not masks[~real].any()
    ious = box_iou(expected.bboxes, dets[:, :4])
    corners = (expected.bboxes[:, None, :] - dets[None, :, :4]).abs().amax(-1)
    overlap = union = 0
    for i in range(len(expected)):
        same = (
            (labels == expected.labels[i])
            & ((ious[i] >= BOX_IOU) | (corners[i] <= BOX_PIXELS))
            & ((dets[:, 4] - expected.scores[i]).abs() <= SCORE_TOLERANCE)
        )
        assert same.any(), f'detection {i} of mmdet is missing: {expected[i]}'
        mask, reference = masks[int(same.nonzero()[0])].bool(), expected.masks[i]
        overlap += int((mask & reference).sum())
        union += int((mask | reference).sum())
    assert overlap >= MASK_IOU * union, f'masks: IoU {overlap / max(union, 1):.4f}'


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    detector = _detector()
    module = DetectorExport(detector)
    path = str(tmp_path_factory.mktemp('detection') / 'maskrcnn.onnx')
    trace_to_onnx(module, _images(2, 128, 160), path, opset=18)
    finish_file(path, {})
    return dict(
        detector=detector,
        module=module,
        path=path,
        session=ort.InferenceSession(path, providers=['CPUExecutionProvider']),
    )


def test_dims_are_symbolic_and_operators_standard(exported):
    model = onnx.load(exported['path'])
    assert {node.domain for node in model.graph.node} <= {'', 'ai.onnx'}
    dims = {
        value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in [*model.graph.input, *model.graph.output]
    }
    assert dims == {
        'input': ['batch', 3, 'height', 'width'],
        'dets': ['batch', MAX_PER_IMG, 5],
        'labels': ['batch', MAX_PER_IMG],
        'masks': ['batch', MAX_PER_IMG, 'height', 'width'],
    }
    assert exported['module'].output_names == ('dets', 'labels', 'masks')


@pytest.mark.parametrize('size', SIZES, ids=lambda s: 'x'.join(map(str, s)))
def test_onnx_runtime_matches_mmdet(exported, size):
    images = _images(*size)
    expected = _mmdet_predict(exported['detector'], images)
    outputs = exported['session'].run(None, {'input': images.numpy()})
    with torch.no_grad():
        eager = exported['module'](images)
    assert any((labels < 0).any() for labels in outputs[1]), 'no padding row to check'
    assert len(set(expected[0].labels.tolist())) == 3, 'every class should be detected'
    for image, instances in enumerate(expected):
        _check_matches(instances, *(output[image] for output in outputs))
        _check_matches(instances, *(output[image] for output in eager))


def test_faster_rcnn_has_no_masks():
    detector = _detector()
    detector.roi_head.mask_head = None
    module = DetectorExport(detector)
    assert module.output_names == ('dets', 'labels')
    with torch.no_grad():
        dets, labels = module(_images(1, 97, 131))
    expected = _mmdet_predict(detector, _images(1, 97, 131))[0]
    assert torch.equal(labels[0][: len(expected)], expected.labels)
    torch.testing.assert_close(dets[0, : len(expected), :4], expected.bboxes)


def test_unsupported_detectors_are_refused():
    detector = _detector()
    detector.rpn_head.test_cfg.nms = dict(type='soft_nms', iou_threshold=0.7)
    with pytest.raises(ExportError, match='plain NMS'):
        DetectorExport(detector)
    detector = _detector().train()
    with pytest.raises(ExportError, match='eval mode'):
        DetectorExport(detector)
