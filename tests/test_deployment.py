"""ONNX export and ONNX Runtime: the file contract of docs/deployment.md.

A tiny SG-Former classifier, the segmentation demo (UperNet on a tiny SG-Former) and the real
SG-Former-S classifier are exported once each at the default example size, with random
weights. The files are checked for symbolic batch/height/width, run at sizes other than the
traced one (odd, not multiples of 32, batches of several) against PyTorch, through the
numpy-only example of the docs, through ``tools/test.py CONFIG FILE.onnx``, and every refused
input is checked to raise ExportError and to leave no file behind.
"""

import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import (
    CLASSIFICATION_CONFIG,
    DETECTION_DEMO_CONFIG,
    REPO,
    SEGMENTATION_DEMO_CONFIG,
    TINY_CLASSIFIER_OPTIONS,
)

from mmsgformer.apis import build_model
from mmsgformer.deployment import ExportError, Preprocess, export_onnx, init_onnx_model
from mmsgformer.utils.config import load_config

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')

SIZES = [(3, 97, 131), (2, 64, 75)]
"""``(batch, H, W)`` run at: odd, not multiples of 32, never the traced size."""


def _save_random_checkpoint(cfg, path: str, sharpen: float = 1.0) -> torch.nn.Module:
    """A seeded model of ``cfg`` saved as a whole-model checkpoint; the classifier's head is
    scaled by ``sharpen`` so that its probabilities are far from uniform."""
    torch.manual_seed(0)
    model = build_model(cfg)
    if sharpen != 1.0:
        with torch.no_grad():
            model.head.fc.weight.mul_(sharpen)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return model


def _images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 3, height, width, generator=generator) * 255).round()


def _export(tmp_path_factory, name: str, config: str, cfg_options=None, sharpen: float = 1.0):
    folder = tmp_path_factory.mktemp(name)
    cfg = load_config(config, cfg_options)
    checkpoint = str(folder / f'{name}.pth')
    model = _save_random_checkpoint(cfg, checkpoint, sharpen)
    out = export_onnx(config, checkpoint, out=str(folder / f'{name}.onnx'), cfg_options=cfg_options)
    return dict(model=model, cfg=cfg, checkpoint=checkpoint, onnx=out, folder=folder)


@pytest.fixture(scope='module')
def classifier(tmp_path_factory):
    return _export(
        tmp_path_factory, 'cls', CLASSIFICATION_CONFIG, TINY_CLASSIFIER_OPTIONS, sharpen=30.0
    )


@pytest.fixture(scope='module')
def segmentor(tmp_path_factory):
    return _export(tmp_path_factory, 'seg', SEGMENTATION_DEMO_CONFIG)


def _torch_scores(model, images: torch.Tensor) -> np.ndarray:
    data = model.data_preprocessor({'inputs': images, 'data_samples': None}, False)
    with torch.no_grad():
        return torch.stack([s.pred_score for s in model.predict(data['inputs'])]).numpy()


def _torch_seg_map(model, images: torch.Tensor) -> np.ndarray:
    from mmseg.structures import SegDataSample

    samples = [
        SegDataSample(metainfo=dict(img_shape=images.shape[-2:], ori_shape=images.shape[-2:]))
        for _ in images
    ]
    data = model.data_preprocessor({'inputs': list(images), 'data_samples': samples}, False)
    with torch.no_grad():
        predictions = model.predict(data['inputs'], data['data_samples'])
    return torch.stack([s.pred_sem_seg.data[0] for s in predictions]).numpy()


def _dims(path: str) -> dict:
    """``{tensor: [dim name or size]}`` of the file's inputs and outputs."""
    graph = onnx.load(path).graph
    return {
        value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in [*graph.input, *graph.output]
    }


# ------------------------------------------------------------------ the graph's preprocessing
@pytest.mark.parametrize(
    'config', [CLASSIFICATION_CONFIG, SEGMENTATION_DEMO_CONFIG, DETECTION_DEMO_CONFIG]
)
def test_preprocess_is_the_data_preprocessor(config):
    model = build_model(load_config(config))
    images = _images(2, 45, 70)
    expected = model.data_preprocessor({'inputs': list(images), 'data_samples': None}, False)[
        'inputs'
    ]
    normalised, size = Preprocess(model.data_preprocessor)(images)
    assert size == (45, 70)
    torch.testing.assert_close(normalised, expected, rtol=0, atol=1e-5)


def test_pooling_matrices_are_adaptive_average_pooling():
    from mmsgformer.deployment.wrappers import MatrixAdaptiveAvgPool2d

    x = torch.randn(2, 4, 13, 22)
    for scale in (1, 2, 3, 6, (5, 7)):
        torch.testing.assert_close(
            MatrixAdaptiveAvgPool2d(scale)(x), torch.nn.AdaptiveAvgPool2d(scale)(x)
        )


# ------------------------------------------------------------------ parity at other sizes
def _check_scores(exported, atol: float = 1e-4) -> None:
    engine = ort.InferenceSession(exported['onnx'])
    for batch, height, width in SIZES:
        images = _images(batch, height, width)
        scores = engine.run(['scores'], {'input': images.numpy()})[0]
        expected = _torch_scores(exported['model'], images)
        assert scores.shape == (batch, 1000)
        assert expected.max() > 0.01  # not uniform (1e-3): the comparison means something
        np.testing.assert_allclose(scores, expected, rtol=0, atol=atol)


def test_classifier_scores_match_pytorch(classifier):
    _check_scores(classifier)


def test_sgformer_s_classifier_scores_match_pytorch(tmp_path_factory):
    # float32 logits of the 22M-parameter model differ between the runtimes by ~1e-6 relative;
    # the softmax of 30x sharpened logits turns that into up to ~5e-4 in a probability
    _check_scores(_export(tmp_path_factory, 's', CLASSIFICATION_CONFIG, sharpen=30.0), atol=1e-3)


def test_segmentor_seg_map_matches_pytorch(segmentor):
    engine = ort.InferenceSession(segmentor['onnx'])
    for batch, height, width in SIZES:
        images = _images(batch, height, width)
        seg_map = engine.run(['seg_map'], {'input': images.numpy()})[0]
        assert seg_map.shape == (batch, height, width) and seg_map.dtype == np.int64
        assert (seg_map == _torch_seg_map(segmentor['model'], images)).mean() >= 0.999


def test_inputs_and_outputs_are_symbolic(classifier, segmentor):
    assert _dims(classifier['onnx']) == {
        'input': ['batch', 3, 'height', 'width'],
        'scores': ['batch', 1000],
    }
    assert _dims(segmentor['onnx']) == {
        'input': ['batch', 3, 'height', 'width'],
        'seg_map': ['batch', 'height', 'width'],
    }


# ------------------------------------------------------------------ the docs' example
def _docs_example() -> str:
    with open(osp.join(REPO, 'docs', 'deployment.md')) as f:
        text = f.read()
    blocks = re.findall(r'```python\n(.*?)```', text, re.S)
    examples = [b for b in blocks if 'import onnxruntime' in b]
    assert len(examples) == 1, 'docs/deployment.md needs one numpy + onnxruntime example'
    return examples[0]


def test_docs_example_runs_without_torch(classifier, tmp_path):
    code = _docs_example()
    assert "onnx_file = 'sgformer_s.onnx'" in code
    code = code.replace("onnx_file = 'sgformer_s.onnx'", f'onnx_file = {classifier["onnx"]!r}')
    script = tmp_path / 'example.py'
    script.write_text(
        "import sys\nsys.modules['torch'] = None  # importing torch fails\n"
        "sys.modules['mmsgformer'] = None\n" + code
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'top-5' in proc.stdout


# ------------------------------------------------------------------ refused inputs
def _onnx_files(folder) -> list:
    return [name for name in os.listdir(folder) if '.onnx' in name]


def test_old_opset_is_refused(tmp_path):
    with pytest.raises(ExportError, match='opset 15 is too old'):
        export_onnx(
            CLASSIFICATION_CONFIG,
            out=str(tmp_path / 'm.onnx'),
            opset=15,
            cfg_options=TINY_CLASSIFIER_OPTIONS,
        )
    assert _onnx_files(tmp_path) == []


def test_checkpoint_of_another_config_is_refused(classifier, tmp_path):
    from mmsgformer.models import CheckpointMismatchError

    with pytest.raises(
        CheckpointMismatchError, match=r'(?s)does not fit this ImageClassifier.*another config'
    ):
        export_onnx(
            CLASSIFICATION_CONFIG, classifier['checkpoint'], out=str(tmp_path / 'm.onnx')
        )  # the S classifier, a tiny checkpoint
    state = torch.load(classifier['checkpoint'])['state_dict']
    state.pop('head.fc.bias')
    torch.save({'state_dict': state}, tmp_path / 'missing.pth')
    with pytest.raises(CheckpointMismatchError, match=r'missing \(1\): head\.fc\.bias\n'):
        export_onnx(
            CLASSIFICATION_CONFIG,
            str(tmp_path / 'missing.pth'),
            out=str(tmp_path / 'm.onnx'),
            cfg_options=TINY_CLASSIFIER_OPTIONS,
        )
    assert _onnx_files(tmp_path) == []


def test_unknown_task_is_refused(tmp_path):
    config = tmp_path / 'unknown.py'
    config.write_text("model = dict(type='Mystery')\n")
    with pytest.raises(ExportError, match='unknown task'):
        export_onnx(str(config), out=str(tmp_path / 'm.onnx'))
    assert _onnx_files(tmp_path) == []


def test_failed_export_leaves_no_file(tmp_path, monkeypatch):
    from mmsgformer.deployment import export as export_module

    def half_written(module, example, path, opset):
        with open(path, 'wb') as f:
            f.write(b'half a graph')
        raise RuntimeError('the exporter failed')

    monkeypatch.setattr(export_module, 'trace_to_onnx', half_written)
    with pytest.raises(RuntimeError, match='the exporter failed'):
        export_onnx(
            CLASSIFICATION_CONFIG, out=str(tmp_path / 'm.onnx'), cfg_options=TINY_CLASSIFIER_OPTIONS
        )
    assert os.listdir(tmp_path) == []


def test_model_fixing_the_size_is_refused(tmp_path):
    from mmsgformer.deployment.export import trace_to_onnx

    class FixesTheWidth(torch.nn.Module):
        output_names = ('scores',)

        def forward(self, input):
            return input.mean((2, 3)) * (2 if input.shape[-1] == 96 else 1)

    with pytest.raises(ExportError, match='fixes the input size'):
        trace_to_onnx(FixesTheWidth(), _images(2, 66, 96), str(tmp_path / 'm.onnx'), 18)


def test_torch_without_size_oblivious_tracing_is_refused(tmp_path, monkeypatch):
    from torch.fx.experimental import _config as shape_config

    monkeypatch.delattr(shape_config, 'backed_size_oblivious')  # what torch 2.1 lacks
    with pytest.raises(ExportError, match='needs the torch pinned in requirements.txt'):
        export_onnx(
            CLASSIFICATION_CONFIG, out=str(tmp_path / 'm.onnx'), cfg_options=TINY_CLASSIFIER_OPTIONS
        )
    assert _onnx_files(tmp_path) == []


def test_too_small_input_is_refused_before_onnx_runtime(classifier, monkeypatch):
    model = init_onnx_model(classifier['onnx'], classifier['cfg'])
    monkeypatch.setattr(model, 'engine', None)  # never reached
    with pytest.raises(ExportError, match='smaller than the minimum side 64'):
        model.run(np.zeros((1, 3, 63, 96), np.float32))


# ------------------------------------------------------------------ tools/test.py with .onnx
def test_tools_test_onnx_gives_the_checkpoint_metrics(segmentor, tmp_path):
    from mmsgformer.engine.runner import TestOptions, test
    from mmsgformer.synthetic_data import generate_ade_shapes

    data_root = str(tmp_path / 'ade_shapes')
    generate_ade_shapes(data_root, num_train=1, num_val=3, img_size=64, seed=1)
    options = [
        f'test_dataloader.dataset.data_root={data_root}',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False',
    ]
    expected = test(
        SEGMENTATION_DEMO_CONFIG,
        segmentor['checkpoint'],
        TestOptions(
            work_dir=str(tmp_path / 'pth'),
            cfg_options={
                'test_dataloader.dataset.data_root': data_root,
                'test_dataloader.num_workers': 0,
                'test_dataloader.persistent_workers': False,
            },
        ),
    )
    proc = subprocess.run(
        [
            sys.executable,
            osp.join(REPO, 'tools', 'test.py'),
            SEGMENTATION_DEMO_CONFIG,
            segmentor['onnx'],
            '--work-dir',
            str(tmp_path / 'onnx'),
            '--cfg-options',
            *options,
        ],
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    found = dict(re.findall(r'^(\w+): ([\d.]+)$', proc.stdout, re.M))
    for key in ('aAcc', 'mIoU', 'mAcc'):
        assert abs(float(found[key]) - expected[key]) <= 1.0, (key, found, expected)
