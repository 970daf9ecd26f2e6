"""Exported models run by ONNX Runtime, as models of MMEngine's test loop.

:class:`OnnxRuntimeModel` takes the place of a config's PyTorch model: its ``test_step``
collates the batch the dataloader gives, runs the ONNX file and returns the task's data samples
(mmdet ``DetDataSample``, mmseg ``SegDataSample``, mmpretrain ``DataSample``) at the original
image size, so that the config's evaluator works unchanged (``tools/test.py CONFIG FILE.onnx``).
:func:`init_onnx_model` makes one for :func:`mmsgformer.apis.inference_model` (the demos)::

    from mmsgformer.apis import inference_model
    from mmsgformer.deployment import init_onnx_model

    config = 'configs/upernet/upernet_sgformer-s_8xb2-160k_ade20k-512x512.py'
    model = init_onnx_model('model.onnx', config)
    result = inference_model(model, 'demo.jpg')  # a SegDataSample
"""

from __future__ import annotations

import os
from copy import deepcopy
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.model import BaseModel

from .errors import ExportError
from .export import MIN_INPUT_SIZE
from .preprocess import Preprocess

DEFAULT_PREPROCESSORS = {
    'cls': 'mmpretrain.ClsDataPreprocessor',
    'seg': 'mmseg.SegDataPreProcessor',
    'det': 'mmdet.DetDataPreprocessor',
}
"""The data preprocessor each task's models build when the config names none."""


def build_preprocess(cfg: Config) -> Preprocess:
    """The config's data preprocessor as :class:`~.preprocess.Preprocess` (for its pad values)."""
    from mmsgformer.utils.config import task_of, task_registries

    models, _ = task_registries(cfg)
    settings = deepcopy(cfg.model.get('data_preprocessor') or cfg.get('data_preprocessor') or {})
    settings.setdefault('type', DEFAULT_PREPROCESSORS[task_of(cfg)])
    return Preprocess(models.build(settings))


def collate(images: Sequence[torch.Tensor], pad_values: Sequence[float]) -> np.ndarray:
    """``(C, H, W)`` images as one float32 ``(N, C, H, W)`` batch, padded at the bottom and
    right to the largest height and width with per-channel ``pad_values``."""
    height = max(int(image.shape[-2]) for image in images)
    width = max(int(image.shape[-1]) for image in images)
    batch = np.empty((len(images), len(pad_values), height, width), np.float32)
    batch[:] = np.asarray(pad_values, np.float32).reshape(1, -1, 1, 1)
    for i, image in enumerate(images):
        batch[i, :, : image.shape[-2], : image.shape[-1]] = image.cpu().numpy()
    return batch


def check_input_size(batch: np.ndarray) -> None:
    """Raises :class:`ExportError` for a batch below the exported models' minimum side."""
    if min(batch.shape[-2:]) < MIN_INPUT_SIZE:
        raise ExportError(
            f'input {tuple(batch.shape[-2:])} is smaller than the minimum side '
            f'{MIN_INPUT_SIZE} of exported models; resize (or pad) the images to '
            f'at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} in the test pipeline'
        )


def _resize(data: torch.Tensor, size: Sequence[int], mode: str) -> torch.Tensor:
    """``(N, H, W)`` maps resized to ``size`` (as float32)."""
    return F.interpolate(data[None].float(), size=tuple(int(s) for s in size), mode=mode)[0]


def classification_samples(outputs: Sequence[np.ndarray], samples: Sequence[Any]) -> List[Any]:
    """``scores`` into mmpretrain ``DataSample``s, as ``ClsHead.predict`` sets them."""
    from mmpretrain.structures import DataSample

    out = []
    for i, score in enumerate(torch.from_numpy(outputs[0])):
        sample = samples[i] if samples else DataSample()
        out.append(sample.set_pred_score(score).set_pred_label(score.argmax(dim=0, keepdim=True)))
    return out


def segmentation_samples(outputs: Sequence[np.ndarray], samples: Sequence[Any]) -> List[Any]:
    """``seg_map`` into mmseg ``SegDataSample``s: each map cropped to the image's
    ``img_shape`` and resized (nearest) to its ``ori_shape``."""
    from mmengine.structures import PixelData

    out = []
    for labels, sample in zip(torch.from_numpy(outputs[0]), samples):
        height, width = sample.img_shape[:2]
        labels = _resize(labels[None, :height, :width], sample.ori_shape[:2], 'nearest')
        sample.pred_sem_seg = PixelData(data=labels.long())
        out.append(sample)
    return out


def detection_samples(outputs: Sequence[np.ndarray], samples: Sequence[Any]) -> List[Any]:
    """``dets``, ``labels`` (and ``masks``) into mmdet ``DetDataSample``s as mmdet's
    ``predict(rescale=True)`` gives them: rows of label -1 dropped, boxes clipped to the
    image's ``img_shape`` and divided by its ``scale_factor``, masks cropped to ``img_shape``,
    resized (bilinear) to ``ori_shape`` and thresholded at 0.5."""
    from mmengine.structures import InstanceData

    dets, labels = (torch.from_numpy(array) for array in outputs[:2])
    masks = torch.from_numpy(outputs[2]) if len(outputs) > 2 else None
    out = []
    for i, sample in enumerate(samples):
        keep = labels[i] >= 0
        height, width = sample.img_shape[:2]
        boxes = dets[i, keep, :4].clone()
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        scale = boxes.new_tensor(sample.metainfo.get('scale_factor', (1.0, 1.0)))
        instances = InstanceData(
            bboxes=boxes / scale.repeat(2), scores=dets[i, keep, 4], labels=labels[i, keep]
        )
        if masks is not None:
            kept = masks[i, keep, :height, :width]
            instances.masks = _resize(kept, sample.ori_shape[:2], 'bilinear') >= 0.5
        sample.pred_instances = instances
        out.append(sample)
    return out


SAMPLE_MAKERS = {
    'cls': classification_samples,
    'seg': segmentation_samples,
    'det': detection_samples,
}


class OnnxRuntimeModel(BaseModel):
    """An exported model run by ONNX Runtime, for MMEngine's test loop and
    :func:`~mmsgformer.apis.inference_model`.

    Args:
        onnx_file: The exported model (``tools/deployment/export_onnx.py``).
        cfg: The config it was exported from (its data preprocessor's pad values, its task).
        providers: ONNX Runtime execution providers (default: the CPU's).
    """

    def __init__(
        self, onnx_file: str, cfg: Config, providers: Optional[Sequence[str]] = None
    ) -> None:
        import onnxruntime as ort

        from mmsgformer.utils.config import task_of

        super().__init__()
        if not os.path.isfile(onnx_file):
            raise ExportError(f'ONNX file not found: {onnx_file}')
        self.cfg = cfg
        self.task = task_of(cfg)
        self.engine = ort.InferenceSession(
            onnx_file, providers=list(providers or ['CPUExecutionProvider'])
        )
        exported_task = self.engine.get_modelmeta().custom_metadata_map.get('mmsgformer.task')
        if exported_task not in (None, self.task):
            raise ExportError(
                f'{onnx_file} is a {exported_task!r} model, the config a '
                f'{self.task!r} one: pass the config it was exported from'
            )
        self.pad_values = build_preprocess(cfg).raw_pad_values()

    def run(self, batch: np.ndarray) -> List[np.ndarray]:
        """The ONNX outputs of a float32 ``(N, 3, H, W)`` batch (the file's ``input``)."""
        check_input_size(batch)
        return self.engine.run(None, {'input': batch})

    def test_step(self, data: Union[dict, tuple, list]) -> List[Any]:
        """A dataloader batch (``inputs``: ``(C, H, W)`` images, ``data_samples``) to the
        task's data samples with predictions."""
        inputs = data['inputs']
        images = list(inputs.unbind(0)) if isinstance(inputs, torch.Tensor) else list(inputs)
        outputs = self.run(collate([image.float() for image in images], self.pad_values))
        return SAMPLE_MAKERS[self.task](outputs, data.get('data_samples') or [])

    def forward(
        self, inputs: torch.Tensor, data_samples: Optional[list] = None, mode: str = 'predict'
    ) -> List[Any]:
        """Predictions only (``mode='predict'``): an exported model does not train."""
        if mode != 'predict':
            raise ExportError(f'an ONNX model only predicts, mode {mode!r} is not available')
        return self.test_step(dict(inputs=inputs, data_samples=data_samples))


def init_onnx_model(
    onnx_file: str,
    config: Union[str, os.PathLike, Config],
    cfg_options: Optional[Dict[str, Any]] = None,
) -> OnnxRuntimeModel:
    """An :class:`OnnxRuntimeModel` with ``model.cfg``, ready for
    :func:`~mmsgformer.apis.inference_model`.

    Args:
        onnx_file: The exported model.
        config: The config it was exported from.
        cfg_options: ``{dotted.key: value}`` config overrides.
    """
    from mmsgformer.utils.config import load_config

    cfg = config if isinstance(config, Config) else load_config(os.fspath(config), cfg_options)
    return OnnxRuntimeModel(onnx_file, cfg)
