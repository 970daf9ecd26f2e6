"""Every way of loading weights into SGFormer, and the errors for files that do not fit."""

import http.server
import os
import os.path as osp
import socket
import subprocess
import sys
import threading

import pytest
import torch
from conftest import REPO, TINY_ARCH, convert_official_checkpoint, official_wrappers

from mmsgformer.models import CheckpointMismatchError, SGFormer, load_weights
from mmsgformer.models.official_keys import convert_official_state_dict
from mmsgformer.utils import (
    CheckpointDownloadError,
    CorruptCheckpointError,
    UnsafeCheckpointError,
    load_checkpoint_file,
    safe_loading,
)
from mmsgformer.utils.compat import TORCH_VERSION, has_safe_globals


@pytest.fixture(params=['torch', 'restricted'])
def loader(request, monkeypatch):
    """Both ways of safe loading: torch's weights_only list (torch >= 2.4) and our restricted
    unpickler (what torch 2.1-2.3 get), forced here on any torch."""
    if request.param == 'restricted':
        monkeypatch.setattr(safe_loading, 'has_safe_globals', lambda: False)
    elif not has_safe_globals():
        pytest.skip(f'torch {torch.__version__} has no weights_only allow-list')
    return request.param


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


@pytest.mark.parametrize(
    'form', ['plain', 'timm', 'model_key', 'module_prefix', 'timm_module_prefix']
)
def test_official_files_load(tmp_path, reference_arch, official, form, loader):
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


def mmengine_checkpoint(state_dict):
    """What an MMEngine run saves besides the weights: meta, message hub logs, numpy state."""
    import numpy as np
    from mmengine.logging import HistoryBuffer

    return dict(
        meta=dict(epoch=3, iter=300, seed=0, dataset_meta=dict(classes=('a', 'b'))),
        state_dict=state_dict,
        message_hub=dict(
            log_scalars={'train/loss': HistoryBuffer([1.0, 0.5], [1, 1])},
            runtime_info={'iter': 300, 'best_score': np.float64(0.5)},
        ),
        optimizer={'state': {}, 'param_groups': []},
        rng=np.random.get_state(),
    )


def test_our_training_checkpoint_loads(tmp_path, reference_arch, official, loader):
    """An MMEngine checkpoint of a detector: backbone.* keys among others, with logs and meta."""
    _, converted = official
    state = {f'backbone.{k}': v for k, v in converted.items()}
    state.update(
        {
            'neck.lateral_convs.0.conv.weight': torch.zeros(4, 4, 1, 1),
            'roi_head.bbox_head.fc_cls.weight': torch.zeros(3, 4),
        }
    )
    path = tmp_path / 'epoch_3.pth'
    torch.save(mmengine_checkpoint(state), path)
    model = build(reference_arch, path)
    model.init_weights()
    assert_loaded(model, converted)
    loaded = load_checkpoint_file(path)
    assert loaded['message_hub']['log_scalars']['train/loss'].mean() == 0.75


def test_whole_model_in_official_layout_through_mmengine(tmp_path, reference_arch, official):
    """A whole-model checkpoint whose backbone keys are in the official layout (e.g. a detector
    trained with the official code) loads through MMEngine's own load_checkpoint."""
    from mmengine.runner import load_checkpoint

    raw, converted = official
    raw = {k: v for k, v in raw.items() if not k.startswith('head.')}  # the classifier's
    model = torch.nn.Module()
    model.backbone = SGFormer(arch=reference_arch)
    model.head = torch.nn.Linear(2, 3)
    head = {'head.weight': torch.randn(3, 2), 'head.bias': torch.randn(3)}
    path = tmp_path / 'official_detector.pth'
    torch.save(mmengine_checkpoint({**{f'backbone.{k}': v for k, v in raw.items()}, **head}), path)
    load_checkpoint(model, str(path), map_location='cpu', strict=True)
    assert_loaded(model.backbone, converted)
    torch.testing.assert_close(model.head.weight, head['head.weight'])


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
    width = reference_arch['embed_dims'][0]
    grid = converted['pos_embed'].reshape(1, 56, 56, -1).permute(0, 3, 1, 2)
    finetuned['pos_embed'] = (
        torch.nn.functional.interpolate(grid, size=(96, 96), mode='bicubic', align_corners=False)
        .permute(0, 2, 3, 1)
        .reshape(1, 96 * 96, -1)
    )
    path = tmp_path / 'at384.pth'
    torch.save(dict(state_dict=finetuned), path)
    model = build(reference_arch, path)
    model.init_weights()
    assert model.pos_embed.shape == (1, 56 * 56, width)
    # Down-sampling the up-sampled embedding again lands close to the original.
    assert (model.pos_embed - converted['pos_embed']).abs().mean() < 0.05
    # The same through load_state_dict (MMEngine's load_checkpoint of a whole model).
    other = SGFormer(arch=reference_arch)
    other.load_state_dict(finetuned)
    torch.testing.assert_close(other.pos_embed, model.pos_embed)


def test_converter_round_trip(tmp_path, reference, reference_arch):
    # into a folder that does not exist yet
    dst = convert_official_checkpoint(reference['state_dict'], tmp_path, 'out/converted.pth')
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
    logits = (
        feats[-1].mean((2, 3)) @ converted['state_dict']['head.fc.weight'].T
        + converted['state_dict']['head.fc.bias']
    )
    torch.testing.assert_close(logits, reference['logits'], atol=1e-4, rtol=0)
    # A second conversion of our own output is refused with a clear message.
    again = subprocess.run(
        [
            sys.executable,
            osp.join(REPO, 'tools/model_converters/sgformer2mm.py'),
            str(dst),
            str(tmp_path / 'x.pth'),
        ],
        capture_output=True,
        text=True,
    )
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
    with pytest.raises(
        CheckpointMismatchError,
        match=r'(?s)of another shape \(\d+\): pos_embed: checkpoint \(1, 3136, 64\), '
        r'model \(1, 3136, 32\).*Likely cause: a checkpoint of another config',
    ):
        model.init_weights()


def test_deeper_arch_refused_unless_not_strict(tmp_path):
    deeper = SGFormer(arch=dict(TINY_ARCH, depths=[2, 4, 2, 1]))
    path = tmp_path / 'deeper.pth'
    torch.save(deeper.state_dict(), path)
    with pytest.raises(
        CheckpointMismatchError,
        match=r'(?s)missing \(0\): none\n  unexpected \(\d+\): stages\.1\.blocks\.2\..*'
        r'strict=False',
    ):
        build(TINY_ARCH, path).init_weights()
    model = build(TINY_ARCH, path, strict=False)
    model.init_weights()
    torch.testing.assert_close(
        model.stages[1].blocks[1].attn.kv.weight, deeper.stages[1].blocks[1].attn.kv.weight
    )


def test_checkpoint_of_another_model(tmp_path):
    path = tmp_path / 'resnet.pth'
    torch.save(
        {'conv1.weight': torch.zeros(64, 3, 7, 7), 'layer1.0.bn1.weight': torch.ones(64)}, path
    )
    with pytest.raises(
        CheckpointMismatchError,
        match=r'(?s)does not fit this SGFormer \(0 of its \d+ tensors found\).*another model',
    ):
        build(TINY_ARCH, path).init_weights()
    with pytest.raises(CheckpointMismatchError, match=r'\(0 of its'):  # even when not strict
        build(TINY_ARCH, path, strict=False).init_weights()


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
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpointError, match='truncated'):
        build(TINY_ARCH, path).init_weights()


def test_init_cfg_unknown_key_names_the_accepted_ones(tmp_path):
    model = build(TINY_ARCH, tmp_path / 'x.pth', map_locaton='cpu')
    with pytest.raises(
        ValueError,
        match=r"unknown keys in SGFormer init_cfg: \['map_locaton'\].*"
        r"'map_location'",
    ):
        model.init_weights()


def test_init_cfg_map_location_is_used(tmp_path, monkeypatch):
    path = tmp_path / 'tiny.pth'
    torch.save(SGFormer(arch=TINY_ARCH).state_dict(), path)
    seen = []
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get('map_location'))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, 'load', spy)
    moved = []

    def to_cpu(storage, location):
        moved.append(location)
        return storage

    build(TINY_ARCH, path, map_location=to_cpu).init_weights()
    assert len(seen) == 1 and callable(seen[0]) and moved and set(moved) == {'cpu'}


# ----------------------------------------------------------------------------- load_weights
def whole_model(classes=3):
    """A model of two parts, as a classifier: an SGFormer ``backbone`` and a linear ``head``."""
    model = torch.nn.Module()
    model.backbone = SGFormer(arch=TINY_ARCH)
    model.head = torch.nn.Linear(TINY_ARCH['embed_dims'][-1], classes)
    return model


def test_load_weights_loads_every_tensor(tmp_path):
    torch.manual_seed(0)
    trained = whole_model()
    path = tmp_path / 'model.pth'
    torch.save(mmengine_checkpoint(trained.state_dict()), path)
    torch.manual_seed(1)
    model = whole_model()
    meta = load_weights(model, path)
    assert meta['dataset_meta'] == dict(classes=('a', 'b'))
    assert_loaded(model, trained.state_dict())


def test_load_weights_whole_model_in_official_layout(tmp_path, reference_arch, official):
    """A whole model whose backbone is in the official layout at another grid: converted and
    resized before the check, as the pre-hook does on load."""
    raw, converted = official
    backbone = {k: v for k, v in raw.items() if not k.startswith('head.')}
    grid = backbone['pos_embed'].reshape(1, 56, 56, -1).permute(0, 3, 1, 2)
    backbone['pos_embed'] = (
        torch.nn.functional.interpolate(grid, size=(64, 64), mode='bicubic', align_corners=False)
        .permute(0, 2, 3, 1)
        .reshape(1, 64 * 64, -1)
    )
    model = torch.nn.Module()
    model.backbone = SGFormer(arch=reference_arch)
    model.head = torch.nn.Linear(2, 3)
    head = {'head.weight': torch.randn(3, 2), 'head.bias': torch.randn(3)}
    load_weights(model, {**{f'backbone.{k}': v for k, v in backbone.items()}, **head})
    assert_loaded(model.backbone, {k: v for k, v in converted.items() if k != 'pos_embed'})
    assert (model.backbone.pos_embed - converted['pos_embed']).abs().mean() < 0.05
    torch.testing.assert_close(model.head.weight, head['head.weight'])


def _refusal(model, state, **allowed):
    """The message of the refusal, and that the model kept every one of its tensors."""
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as refusal:
        load_weights(model, state, source='ckpt.pth', **allowed)
    assert_loaded(model, before)  # nothing was loaded
    return str(refusal.value)


def test_missing_tensors_refused_unless_named():
    torch.manual_seed(0)
    state = whole_model().state_dict()
    without_head = {k: v for k, v in state.items() if not k.startswith('head.')}
    message = _refusal(whole_model(), without_head)
    assert "checkpoint 'ckpt.pth' does not fit this Module" in message
    assert 'missing (2): head.bias, head.weight\n' in message
    assert 'unexpected (0): none\n  of another shape (0): none' in message
    assert 'differ in a few tensors' in message and 'allow_missing=' in message
    assert 'missing (2)' in _refusal(whole_model(), without_head, allow_missing=('neck.',))
    model = whole_model()
    load_weights(model, without_head, allow_missing=('head.',))
    assert_loaded(model, without_head)


def test_unexpected_tensors_refused_unless_named():
    torch.manual_seed(0)
    state = whole_model().state_dict()
    extra = {**state, 'neck.conv.weight': torch.zeros(2, 2), 'neck.conv.bias': torch.zeros(2)}
    message = _refusal(whole_model(), extra)
    assert 'missing (0): none\n  unexpected (2): neck.conv.bias, neck.conv.weight\n' in message
    assert 'allow_unexpected=' in message
    model = whole_model()
    load_weights(model, extra, allow_unexpected=('neck.',))
    assert_loaded(model, state)


def test_mis_shaped_tensors_refused_even_when_allowed():
    torch.manual_seed(0)
    state = whole_model(classes=5).state_dict()
    everything = ('',)
    message = _refusal(
        whole_model(classes=3), state, allow_missing=everything, allow_unexpected=everything
    )
    assert (
        'of another shape (2): head.bias: checkpoint (5,), model (3,), '
        'head.weight: checkpoint (5, 256), model (3, 256)\n' in message
    )
    assert 'Likely cause: a checkpoint of another config' in message


def test_backbone_only_file_into_a_whole_model_names_the_cause(official):
    backbone = SGFormer(arch=TINY_ARCH).state_dict()
    message = _refusal(whole_model(), backbone)
    assert f'(0 of its {len(backbone) + 2} tensors found)' in message
    assert 'a backbone-only file' in message and 'backbone_only=True' in message
    assert 'a backbone-only file' in _refusal(whole_model(), official[0])  # a release
    # hundreds of names: the first few, the rest counted by part
    assert f'missing ({len(backbone) + 2}): backbone.pos_embed, ' in message
    assert f'and {len(backbone) + 2 - 8} more: backbone.* {len(backbone) - 8}, head.* 2' in message


def test_whole_model_into_its_backbone_needs_the_prefix():
    torch.manual_seed(0)
    state = whole_model().state_dict()
    message = _refusal(SGFormer(arch=TINY_ARCH), state)
    assert "load its backbone part with prefix='backbone.'" in message
    backbone = SGFormer(arch=TINY_ARCH)
    load_weights(backbone, state, prefix='backbone.')
    assert_loaded(
        backbone, {k[len('backbone.') :]: v for k, v in state.items() if 'backbone.' in k}
    )


# ----------------------------------------------------------------------------- refusals
class _Payload:
    """Unpickling this calls ``func(*args)``: what a malicious checkpoint could do."""

    def __init__(self, func, *args, state=None):
        self.reduce = (func, args) if state is None else (func, args, state)

    def __reduce__(self):
        return self.reduce


def _payloads(target):
    """Malicious objects, and what the refusal names (our unpickler's words or torch's)."""
    from mmengine.logging import HistoryBuffer

    return {
        # a global outside the allow-list
        'open_file': (_Payload(open, str(target), 'w'), r'GLOBAL (io|builtins)\.open'),
        'os_system': (_Payload(os.system, f'touch {target}'), r'GLOBAL (posix|os)\.system'),
        # the allow-list's getattr must not reach other attributes ...
        'getattr_escape': (
            _Payload(getattr, HistoryBuffer, '__init__'),
            r"refused getattr\(.*HistoryBuffer.*'__init__'",
        ),
        # ... nor may what it returns be called ...
        'call_method': (
            _Payload(HistoryBuffer.mean, HistoryBuffer([1.0], [1])),
            r'refused to call <function HistoryBuffer.mean|'
            r'call reduce for unrecognized function <function HistoryBuffer.mean',
        ),
        # ... nor have its state set
        'build_function': (
            _Payload(getattr, HistoryBuffer, 'mean', state={'pwned': True}),
            r"refused to set the state of a <class 'function'>|"
            r"Can only build .* but got <class 'function'>",
        ),
    }


@pytest.mark.parametrize(
    'payload', ['open_file', 'os_system', 'getattr_escape', 'call_method', 'build_function']
)
def test_malicious_pickle_is_refused(tmp_path, monkeypatch, loader, payload):
    monkeypatch.delenv('MMSGFORMER_ALLOW_UNSAFE_CHECKPOINTS', raising=False)
    target = tmp_path / 'pwned.txt'
    path = tmp_path / 'malicious.pth'
    obj, reason = _payloads(target)[payload]
    torch.save({'state_dict': {'pos_embed': torch.zeros(1)}, 'payload': obj}, path)
    with pytest.raises(UnsafeCheckpointError, match='(?s)allow-list.*allow_unsafe=True.*' + reason):
        build(TINY_ARCH, path).init_weights()
    assert not target.exists()
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint_file(path)
    assert not target.exists()
    from mmengine.logging import HistoryBuffer

    assert not hasattr(HistoryBuffer.mean, 'pwned')


def test_malicious_pickle_refused_by_mmengine_load_checkpoint(tmp_path, monkeypatch):
    """MMEngine's own loading (what the stock tools run) with the allow-list registered by
    ``import mmsgformer``: a pickle that would run code is refused, with torch's message."""
    if TORCH_VERSION < (2, 6):
        pytest.skip('MMEngine loads with full unpickling where torch defaults to it (< 2.6)')
    from mmengine.runner import load_checkpoint

    target = tmp_path / 'pwned.txt'
    path = tmp_path / 'malicious.pth'
    torch.save({'state_dict': {}, 'payload': _Payload(os.system, f'touch {target}')}, path)
    with pytest.raises(Exception, match=r'(?s)Weights only load failed.*(posix|os)\.system'):
        load_checkpoint(torch.nn.Linear(1, 1), str(path), map_location='cpu')
    assert not target.exists()


def test_import_registers_allow_list_with_torch(tmp_path):
    """`import mmsgformer` (what every config's custom_imports does) lets torch's weights_only
    loading read MMEngine checkpoints; without it, torch refuses them."""
    if not has_safe_globals():
        pytest.skip(f'torch {torch.__version__} has no weights_only allow-list')
    path = tmp_path / 'epoch_1.pth'
    torch.save(mmengine_checkpoint({'w': torch.ones(2)}), path)
    script = (
        'import pickle, sys, torch\n'
        'try:\n'
        '    torch.load(sys.argv[1], weights_only=True)\n'
        'except pickle.UnpicklingError as err:\n'
        '    print("refused before:", "HistoryBuffer" in str(err))\n'
        'import mmsgformer\n'
        'print("after:", torch.load(sys.argv[1], weights_only=True)["message_hub"]'
        '["log_scalars"]["train/loss"].current())\n'
    )
    result = subprocess.run(
        [sys.executable, '-c', script, str(path)], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split('\n')[:2] == ['refused before: True', 'after: 0.5']


# ----------------------------------------------------------------------------- URLs
class _Server:
    """A local HTTP server on 127.0.0.1 serving one folder; counts the requests per path."""

    def __init__(self, root):
        self.requests = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.timeout = 10
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    (tmp_path / 'www').mkdir()
    serving = _Server(tmp_path / 'www')
    yield serving
    serving.close()


def test_url_checkpoint_downloaded_once_into_hub_cache(tmp_path, server):
    weights = SGFormer(arch=TINY_ARCH).state_dict()
    torch.save(dict(state_dict=weights), tmp_path / 'www' / 'sgformer_tiny.pth')
    url = f'{server.url}/sgformer_tiny.pth'
    for _ in range(2):
        model = build(TINY_ARCH, url)
        model.init_weights()
        assert_loaded(model, weights)
    assert server.requests == ['/sgformer_tiny.pth']  # the second load read the cache
    cached = tmp_path / 'torch_home' / 'hub' / 'checkpoints' / 'sgformer_tiny.pth'
    assert cached.is_file() and cached.parent == tmp_path / 'torch_home' / 'hub' / 'checkpoints'
    assert os.listdir(cached.parent) == ['sgformer_tiny.pth']


def test_url_checkpoint_goes_through_the_safe_loader(tmp_path, server):
    torch.save(
        {'payload': _Payload(open, str(tmp_path / 'pwned.txt'), 'w')}, tmp_path / 'www' / 'bad.pth'
    )
    with pytest.raises(UnsafeCheckpointError, match='allow-list'):
        build(TINY_ARCH, f'{server.url}/bad.pth').init_weights()
    assert not (tmp_path / 'pwned.txt').exists()


def test_url_not_found_is_a_clear_error(tmp_path, server):
    with pytest.raises(CheckpointDownloadError, match=r'sgformer_x\.pth.*HTTP 404.*Check the URL'):
        build(TINY_ARCH, f'{server.url}/sgformer_x.pth').init_weights()
    assert not (tmp_path / 'torch_home' / 'hub' / 'checkpoints' / 'sgformer_x.pth').exists()
    assert os.listdir(tmp_path / 'torch_home' / 'hub' / 'checkpoints') == []  # no partial file


def test_url_unreachable_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    with pytest.raises(
        CheckpointDownloadError,
        match=r'could not download .*127\.0\.0\.1.*'
        r'server reachable',
    ):
        build(TINY_ARCH, f'http://127.0.0.1:{port}/sgformer_s.pth').init_weights()
