"""Classification with tools/test.py's --tta: the flip TTA it sets up averages the classifier's
scores on the image and on its mirror image (computed here with the plain classifier)."""

import numpy as np
import pytest
import torch
from conftest import CLASSIFICATION_CONFIG, TINY_CLASSIFIER_OPTIONS


def test_flip_tta_averages_plain_and_mirrored(tmp_path):
    pytest.importorskip('mmpretrain')
    import cv2
    from mmengine.dataset import Compose, pseudo_collate

    from mmsgformer.apis import build_model
    from mmsgformer.engine.runner import apply_tta
    from mmsgformer.utils.config import load_config, task_registries

    path = str(tmp_path / 'image.png')
    rng = np.random.default_rng(0)
    assert cv2.imwrite(path, rng.integers(0, 255, (90, 130, 3), dtype=np.uint8))

    cfg = load_config(CLASSIFICATION_CONFIG, TINY_CLASSIFIER_OPTIONS)
    torch.manual_seed(0)
    plain = build_model(cfg)
    with pytest.warns(UserWarning, match='using flip TTA'):
        apply_tta(cfg, 'cls')
    tta = build_model(cfg)
    assert type(tta).__name__ == 'AverageClsScoreTTA'
    tta.module.load_state_dict(plain.state_dict())

    task_registries(cfg)
    views = Compose(cfg.test_dataloader.dataset.pipeline)(dict(img_path=path))
    assert len(views['inputs']) == 2  # the image and its mirror image
    torch.testing.assert_close(views['inputs'][0], views['inputs'][1].flip(-1))
    with torch.no_grad():
        merged = tta.test_step(pseudo_collate([views]))[0].pred_score
        singles = [
            plain.test_step(pseudo_collate([dict(inputs=image, data_samples=sample)]))[0].pred_score
            for image, sample in zip(views['inputs'], views['data_samples'])
        ]
    assert not torch.allclose(singles[0], singles[1])  # the mirror image scores differently
    torch.testing.assert_close(merged, (singles[0] + singles[1]) / 2)
