"""The torch-version fallbacks of mmsgformer.utils.compat, on the installed torch and with the
newer APIs removed (what torch 2.1 lacks). `make test-torch21` runs this file under torch 2.1.2."""

import types

import pytest
import torch

from mmsgformer.utils import compat, register_safe_globals


def _sign_of_compiling(x):
    return x + 1 if compat.is_compiling() else x - 1


def test_is_compiling_eager_and_compiled():
    x = torch.zeros(1)
    assert _sign_of_compiling(x).item() == -1
    assert torch.compile(_sign_of_compiling, backend='eager')(x).item() == 1


def _sign_of_compiling_without_new_api(x):
    return x + 1 if compat.is_compiling() else x - 1


class _TorchWithoutCompilerIsCompiling:
    """torch as compat sees it on torch 2.1/2.2: ``torch.compiler`` has no ``is_compiling``
    (removing it from the installed torch would break its own dynamo, which calls it)."""

    compiler = types.SimpleNamespace()

    def __getattr__(self, name):
        return getattr(torch, name)


def test_is_compiling_without_torch_compiler_api(monkeypatch):
    """torch 2.1/2.2: torch.compiler has no is_compiling; the fallback still tells eager from
    compiled. On those torch versions the real module is used (dynamo there does not trace
    through the stand-in)."""
    import torch._dynamo

    if hasattr(torch.compiler, 'is_compiling'):
        monkeypatch.setattr(compat, 'torch', _TorchWithoutCompilerIsCompiling())
    torch._dynamo.reset()
    x = torch.zeros(1)
    assert _sign_of_compiling_without_new_api(x).item() == -1
    assert torch.compile(_sign_of_compiling_without_new_api, backend='eager')(x).item() == 1


class _SignOfTracing(torch.nn.Module):
    def forward(self, x):
        return x + 1 if compat.is_tracing() else x - 1


@pytest.mark.parametrize('trace', ['eager', 'compile', 'export', 'jit.trace'])
def test_is_tracing_under_every_graph_recorder(trace):
    """Eager runs see False; torch.compile, torch.export and torch.jit.trace record the branch
    taken under True (torch.export's ONNX exporter runs torch.export)."""
    module, x = _SignOfTracing(), torch.zeros(1)
    if trace == 'eager':
        out = module(x)
    elif trace == 'compile':
        out = torch.compile(module, backend='eager')(x)
    elif trace == 'export':
        if compat.TORCH_VERSION < (2, 2):
            pytest.skip('ExportedProgram.module() is torch >= 2.2')
        out = torch.export.export(module, (x,)).module()(x)
    else:
        out = torch.jit.trace(module, x, check_trace=False)(x)
    assert out.item() == (-1 if trace == 'eager' else 1)


def test_is_autocast_enabled_per_device():
    assert not compat.is_autocast_enabled('cpu')
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert compat.is_autocast_enabled('cpu')
        assert not compat.is_autocast_enabled('cuda')


def test_without_safe_globals_api(monkeypatch):
    """torch < 2.4: nothing to register with; the restricted loader is used instead."""
    monkeypatch.delattr(torch.serialization, 'add_safe_globals', raising=False)
    monkeypatch.delattr(torch.serialization, 'get_unsafe_globals_in_checkpoint', raising=False)
    assert not compat.has_safe_globals()
    assert register_safe_globals() is False
    assert compat.unsafe_globals_in_checkpoint('any.pth') is None


@pytest.mark.skipif(not compat.has_safe_globals(), reason='torch < 2.4 has no allow-list')
def test_register_safe_globals_adds_the_list_to_torch():
    from mmengine.logging import HistoryBuffer

    assert register_safe_globals() is True
    assert HistoryBuffer in torch.serialization.get_safe_globals()


def test_version_tuple():
    assert compat._version_tuple('2.1.2+cu121') == (2, 1)
    assert compat._version_tuple('2.14.1') == (2, 14)
    assert compat._version_tuple('2.6.0a0+git1234') == (2, 6)
