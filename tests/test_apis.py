"""The inference API, for the three tasks: ``init_model`` (random weights, a saved whole-model
checkpoint, a backbone-only one when asked for) and ``inference_model`` on files and arrays,
checked against the task library's own inference of the same model."""

import cv2
import numpy as np
import pytest
import torch
from conftest import (
    CLASSIFICATION_CONFIG,
    DETECTION_DEMO_CONFIG,
    SEGMENTATION_DEMO_CONFIG,
    TINY_CLASSIFIER_OPTIONS,
)

from mmsgformer.apis import describe_weights, inference_model, init_model

# Every detection scored, so that a model with random weights predicts boxes to compare.
DETECTION_OPTIONS = {'model.test_cfg.rcnn.score_thr': 0.0}
TASKS = {
    'det': (DETECTION_DEMO_CONFIG, DETECTION_OPTIONS, 'DetDataSample', 'pred_instances'),
    'seg': (SEGMENTATION_DEMO_CONFIG, None, 'SegDataSample', 'pred_sem_seg'),
    'cls': (CLASSIFICATION_CONFIG, TINY_CLASSIFIER_OPTIONS, 'DataSample', 'pred_score'),
}


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    """Two image files (different sizes) and the arrays ``mmcv.imread`` reads from them."""
    folder = tmp_path_factory.mktemp('images')
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate([(96, 128), (70, 90)]):
        image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        image[h // 4 : h // 2, w // 4 : w // 2] = (30, 200, 60)  # something shaped to detect
        paths.append(str(folder / f'image{i}.png'))
        assert cv2.imwrite(paths[-1], image)
    return paths, [cv2.imread(p) for p in paths]


def _prediction(sample, key):
    pred = sample.get(key)
    if key == 'pred_instances':
        return torch.cat([pred.bboxes, pred.scores[:, None], pred.labels[:, None].float()], 1)
    return pred.data if key == 'pred_sem_seg' else pred


def _task_library_predictions(task, model, paths):
    """The predictions of mmdet's/mmseg's own inference functions, and for mmpretrain the
    config's whole test pipeline with ``test_step``."""
    if task == 'det':
        from mmdet.apis import inference_detector

        return inference_detector(model, paths)
    if task == 'seg':
        from mmseg.apis import inference_model as mmseg_inference

        return [mmseg_inference(model, p) for p in paths]  # (one batch: one size)
    from mmengine.dataset import Compose, pseudo_collate

    pipeline = Compose(model.cfg.test_dataloader.dataset.pipeline)
    with torch.no_grad():
        return [model.test_step(pseudo_collate([pipeline(dict(img_path=p))]))[0] for p in paths]


@pytest.mark.parametrize('task', sorted(TASKS))
def test_random_weights_predict_as_the_task_library(task, images):
    config, options, sample_type, key = TASKS[task]
    paths, arrays = images
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match='RANDOM weights'):
        model = init_model(config, device='cpu', cfg_options=options)
    assert not model.training and model.cfg.filename == config
    assert describe_weights(model.cfg) == 'RANDOM WEIGHTS (no checkpoint)'

    ours = inference_model(model, paths)
    assert [type(s).__name__ for s in ours] == [sample_type] * 2
    expected = _task_library_predictions(task, model, paths)
    for sample, reference in zip(ours, expected):
        torch.testing.assert_close(_prediction(sample, key), _prediction(reference, key))
    # an array is the image as read; one image in, one sample out
    single = inference_model(model, arrays[1])
    assert type(single).__name__ == sample_type
    torch.testing.assert_close(_prediction(single, key), _prediction(ours[1], key))
    if task != 'cls':  # the prediction is in the original image's frame
        assert tuple(single.ori_shape) == arrays[1].shape[:2]


@pytest.mark.parametrize('task', sorted(TASKS))
def test_saved_checkpoint_read_once_and_loaded(task, images, tmp_path, monkeypatch):
    from mmengine.config import Config

    config, options, _, key = TASKS[task]
    torch.manual_seed(0)
    with pytest.warns(UserWarning):
        trained = init_model(config, device='cpu', cfg_options=options)
    path = str(tmp_path / 'model.pth')
    torch.save(
        dict(state_dict=trained.state_dict(), meta=dict(dataset_meta=dict(classes=('a', 'b')))),
        path,
    )

    loads = []
    torch_load = torch.load
    monkeypatch.setattr(torch, 'load', lambda *a, **k: loads.append(a[0]) or torch_load(*a, **k))
    torch.manual_seed(1)  # other initial weights: all of them must come from the file
    cfg = Config.fromfile(config)  # a Config works as well as its file
    model = init_model(cfg, path, device='cpu', cfg_options=options)
    assert loads == [path]
    assert model.dataset_meta == dict(classes=('a', 'b'))
    assert describe_weights(model.cfg, path) == 'weights: model.pth'
    assert (model.cfg is cfg) == (options is None)  # options are applied to a copy
    for name, value in trained.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, msg=name)
    torch.testing.assert_close(
        _prediction(inference_model(model, images[0][0]), key),
        _prediction(inference_model(trained, images[0][0]), key),
    )


def test_backbone_checkpoint_loads_when_asked_for_and_read_once(tmp_path, monkeypatch):
    from mmsgformer.models import CheckpointMismatchError

    config, options, _, _ = TASKS['cls']
    torch.manual_seed(0)
    with pytest.warns(UserWarning):
        source = init_model(config, device='cpu', cfg_options=options)
    path = str(tmp_path / 'backbone.pth')
    torch.save(source.backbone.state_dict(), path)
    with pytest.raises(
        CheckpointMismatchError, match=r'(?s)backbone-only file.*backbone_only=True'
    ):
        init_model(config, path, device='cpu', cfg_options=options)
    loads = []
    torch_load = torch.load
    monkeypatch.setattr(torch, 'load', lambda *a, **k: loads.append(a[0]) or torch_load(*a, **k))
    torch.manual_seed(1)
    model = init_model(config, path, device='cpu', cfg_options=options, backbone_only=True)
    assert loads == [path]
    for name, value in source.backbone.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[name], value, msg=name)


def test_nonfinite_checkpoint_refused(tmp_path):
    from mmsgformer.utils.safe_loading import NonFiniteCheckpointError

    config, options, _, _ = TASKS['cls']
    with pytest.warns(UserWarning):
        model = init_model(config, device='cpu', cfg_options=options)
    state = model.state_dict()
    state['head.fc.bias'][0] = float('nan')
    path = str(tmp_path / 'diverged.pth')
    torch.save(dict(state_dict=state), path)
    with pytest.raises(NonFiniteCheckpointError, match=r'head\.fc\.bias.*diverged\.pth was saved'):
        init_model(config, path, device='cpu', cfg_options=options)


def test_model_without_config_refused():
    with pytest.raises(ValueError, match='model.cfg'):
        inference_model(torch.nn.Linear(1, 1), 'image.png')
