"""Every way of loading weights into SGFormer, and the errors for files that do not fit."""
import argparse
import os.path as osp
import subprocess
import sys

import pytest
import torch

from conftest import REPO, TINY_ARCH
from mmsgformer.models import SGFormer
from mmsgformer.models.checkpoint import convert_official_state_dict
from mmsgformer.utils import (CorruptCheckpointError, UnsafeCheckpointError,
                              load_checkpoint_file)


def build(arch, checkpoint=None, **init):
    init_cfg = dict(type='Pretrained', checkpoint=str(checkpoint), **init) if checkpoint else None
    return SGFormer(arch=arch, init_cfg=init_cfg).eval()


def assert_loaded(model, expected):
    state = model.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(state[key], value, msg=key)


@pytest.fixture(scope='module')
def official(reference):
    """Official-layout weights and our converted equivalent."""
    converted, _ = convert_official_state_dict(reference['state_dict'])
    return reference['state_dict'], converted


def official_wrappers(state_dict):
    """The forms official files come in: timm training checkpoints and plain state dicts."""
    prefixed = {f'module.{k}': v for k, v in state_dict.items()}
    timm_file = dict(epoch=299, arch='sgformer_s', state_dict=state_dict,
                     state_dict_ema={k: v + 1 for k, v in state_dict.items()},
                     optimizer={'state': {}, 'param_groups': [{'lr': 1e-3, 'params': [0]}]},
                     args=argparse.Namespace(model='sgformer_s', lr=1e-3, drop_path=0.1,
                                             data='/imagenet', img_size=224))
    return {'plain': state_dict, 'timm': timm_file, 'model_key': dict(model=state_dict),
            'module_prefix': prefixed, 'timm_module_prefix': dict(state_dict=prefixed)}


@pytest.mark.parametrize('form', ['plain', 'timm', 'model_key', 'module_prefix',
                                  'timm_module_prefix'])
def test_official_files_load(tmp_path, reference_arch, official, form):
    raw, converted = official
    path = tmp_path / f'{form}.pth'
    torch.save(official_wrappers(raw)[form], path)
    model = build(reference_arch, path)
    model.init_weights()
    assert_loaded(model, converted)  # the raw weights (not the EMA copy) were taken


def test_official_file_reproduces_reference(tmp_path, reference, reference_arch):
    path = tmp_path / 'official.pth'
    torch.save(official_wrappers(reference['state_dict'])['timm'], path)
    model = build(reference_arch, path)
    model.init_weights()
    with torch.no_grad():
        out = model(reference['inputs'])[-1]
    assert (out - reference['stage_outputs'][-1]).abs().max() < 1e-3


def test_our_training_checkpoint_loads(tmp_path, reference_arch, official):
    """An MMEngine checkpoint of a detector: backbone.* keys among others, with logs and meta."""
    from mmengine.logging import HistoryBuffer
    import numpy as np
    _, converted = official
    state = {f'backbone.{k}': v for k, v in converted.items()}
    state.update({'neck.lateral_convs.0.conv.weight': torch.zeros(4, 4, 1, 1),
                  'roi_head.bbox_head.fc_cls.weight': torch.zeros(3, 4)})
    checkpoint = dict(meta=dict(epoch=3, iter=300, seed=0, dataset_meta=dict(classes=('a', 'b'))),
                      state_dict=state,
                      message_hub=dict(log_scalars={'train/loss': HistoryBuffer([1.0, 0.5], [1, 1])},
                                       runtime_info={'iter': 300}),
                      optimizer={'state': {}, 'param_groups': []},
                      rng=np.random.get_state())
    path = tmp_path / 'epoch_3.pth'
    torch.save(checkpoint, path)
    model = build(reference_arch, path)
    model.init_weights()
    assert_loaded(model, converted)


def test_explicit_prefix(tmp_path, reference_arch, official):
    _, converted = official
    path = tmp_path / 'prefixed.pth'
    torch.save({f'model.encoder.{k}': v for k, v in converted.items()}, path)
    model = build(reference_arch, path, prefix='model.encoder.')
    model.init_weights()
    assert_loaded(model, converted)


def test_pos_embed_resized_on_load(tmp_path, reference_arch, official):
    _, converted = official
    finetuned = dict(converted)
    grid = converted['pos_embed'].reshape(1, 56, 56, -1).permute(0, 3, 1, 2)
    finetuned['pos_embed'] = torch.nn.functional.interpolate(
        grid, size=(96, 96), mode='bicubic', align_corners=False).permute(0, 2, 3, 1).reshape(1, 96 * 96, -1)
    path = tmp_path / 'at384.pth'
    torch.save(dict(state_dict=finetuned), path)
    model = build(reference_arch, path)
    model.init_weights()
    assert model.pos_embed.shape == (1, 56 * 56, 32)
    # Down-sampling the up-sampled embedding again lands close to the original.
    assert (model.pos_embed - converted['pos_embed']).abs().mean() < 0.05
    # The same through load_state_dict (MMEngine's load_checkpoint of a whole model).
    other = SGFormer(arch=reference_arch)
    other.load_state_dict(finetuned)
    torch.testing.assert_close(other.pos_embed, model.pos_embed)


def test_converter_round_trip(tmp_path, reference, reference_arch):
    src = tmp_path / 'sgformer_tiny.pth'
    dst = tmp_path / 'out' / 'sgformer_tiny_converted.pth'
    torch.save(official_wrappers(reference['state_dict'])['timm'], src)
    result = subprocess.run([sys.executable, osp.join(REPO, 'tools/model_converters/sgformer2mm.py'),
                             str(src), str(dst)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    converted = torch.load(dst, weights_only=True)
    assert converted['meta']['depths'] == reference_arch['depths']
    keys = converted['state_dict'].keys()
    assert all(k.startswith(('backbone.', 'head.fc.')) for k in keys)
    assert {'head.fc.weight', 'head.fc.bias'} <= set(keys)
    # Its backbone part loads into SGFormer and reproduces the reference.
    model = build(reference_arch, dst)
    model.init_weights()
    with torch.no_grad():
        feats = model(reference['inputs'])
    logits = (feats[-1].mean((2, 3)) @ converted['state_dict']['head.fc.weight'].T
              + converted['state_dict']['head.fc.bias'])
    torch.testing.assert_close(logits, reference['logits'], atol=1e-4, rtol=0)
    # A second conversion of our own output is refused with a clear message.
    again = subprocess.run([sys.executable, osp.join(REPO, 'tools/model_converters/sgformer2mm.py'),
                            str(dst), str(tmp_path / 'x.pth')], capture_output=True, text=True)
    assert again.returncode != 0 and 'not an official SG-Former checkpoint' in again.stderr


# ----------------------------------------------------------------------------- refusals
def test_missing_file_is_a_clear_error(tmp_path):
    model = build(TINY_ARCH, tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError, match='nope.pth.*does not exist'):
        model.init_weights()


def test_other_arch_shapes_named(tmp_path):
    big = SGFormer(arch=dict(TINY_ARCH, embed_dims=[64, 128, 256, 512]))
    path = tmp_path / 'bigger.pth'
    torch.save(big.state_dict(), path)
    model = build(TINY_ARCH, path)
    with pytest.raises(RuntimeError, match=r'shapes differ.*pos_embed: checkpoint \(1, 3136, 64\) '
                                           r'vs model \(1, 3136, 32\)'):
        model.init_weights()


def test_deeper_arch_refused_unless_not_strict(tmp_path):
    deeper = SGFormer(arch=dict(TINY_ARCH, depths=[2, 4, 2, 1]))
    path = tmp_path / 'deeper.pth'
    torch.save(deeper.state_dict(), path)
    with pytest.raises(RuntimeError, match=r'unexpected stages\.1\.blocks\.2\..*strict=False'):
        build(TINY_ARCH, path).init_weights()
    model = build(TINY_ARCH, path, strict=False)
    model.init_weights()
    torch.testing.assert_close(model.stages[1].blocks[1].attn.kv.weight,
                               deeper.stages[1].blocks[1].attn.kv.weight)


def test_checkpoint_of_another_model(tmp_path):
    path = tmp_path / 'resnet.pth'
    torch.save({'conv1.weight': torch.zeros(64, 3, 7, 7), 'layer1.0.bn1.weight': torch.ones(64)}, path)
    with pytest.raises(RuntimeError, match='does not hold weights for this SGFormer'):
        build(TINY_ARCH, path).init_weights()


def test_incomplete_official_file(tmp_path, reference, reference_arch):
    partial = {k: v for k, v in reference['state_dict'].items() if 'block2.1.attn.kv2' not in k}
    path = tmp_path / 'partial.pth'
    torch.save(partial, path)
    with pytest.raises(KeyError, match=r'lacks stages\.1\.blocks\.1\.attn\.kv2'):
        build(reference_arch, path).init_weights()


def test_truncated_file(tmp_path, reference):
    path = tmp_path / 'truncated.pth'
    torch.save(reference['state_dict'], path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CorruptCheckpointError, match='truncated'):
        build(TINY_ARCH, path).init_weights()


class _CreatesFile:
    """Unpickling this runs ``open(target, 'w')``: what a malicious checkpoint could do."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, 'w'))


def test_malicious_pickle_is_not_executed(tmp_path, monkeypatch):
    monkeypatch.delenv('MMSGFORMER_ALLOW_UNSAFE_CHECKPOINTS', raising=False)
    target = tmp_path / 'pwned.txt'
    path = tmp_path / 'malicious.pth'
    torch.save({'state_dict': {'pos_embed': torch.zeros(1)}, 'payload': _CreatesFile(str(target))},
               path)
    with pytest.raises(UnsafeCheckpointError, match='allow-list.*allow_unsafe=True'):
        build(TINY_ARCH, path).init_weights()
    assert not target.exists()
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint_file(path)
    assert not target.exists()


def test_loading_keeps_global_registration(tmp_path):
    """load_checkpoint_file must not undo register_safe_globals (MMEngine's loading relies on it)."""
    from mmsgformer.utils import register_safe_globals, safe_globals
    register_safe_globals()
    path = tmp_path / 'plain.pth'
    torch.save({'pos_embed': torch.zeros(1)}, path)
    load_checkpoint_file(path)
    registered = torch.serialization.get_safe_globals()
    assert all(t in registered for t in safe_globals())
