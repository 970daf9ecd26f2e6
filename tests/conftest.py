"""Shared test helpers: the repository, configs, the official reference outputs, a tiny
architecture and the forms official checkpoints come in."""

import argparse
import os
import os.path as osp
import subprocess
import sys
from typing import Mapping, Optional, Sequence

import pytest
import torch

from mmsgformer.testing.reference import load_reference
from mmsgformer.utils.compat import check_openmmlab_installation

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
REFERENCE_FILE = osp.join(REPO, 'tests', 'data', 'sgformer_reference.pth')
"""Made by ``tools/model_converters/make_reference.py`` with the official code (in the repo)."""
SHARED_FIXTURE = os.environ.get(
    'MMSGFORMER_FIXTURE', osp.join(REPO, '..', 'shared', 'fixtures', 'sgformer_tiny_reference.pth')
)
"""An older reference made on another machine (outside the repo; an extra check if present)."""

OPENMMLAB_LINE = check_openmmlab_installation()

# mmseg's stock tools and APIs parse a config before anything of ours is imported; under OneDL,
# onedl-mmengine 0.10.12 still looks `mmseg::` bases up as the distribution `mmsegmentation`
# (installed as `onedl-mmsegmentation`), so our UperNet text configs (which inherit mmseg's
# bases) do not parse there until `import mmsgformer` aligns the table. Strict: the day OneDL
# fixes it, these tests pass and the mark must go.
STOCK_MMSEG_PARSES_OUR_CONFIGS = pytest.mark.xfail(
    OPENMMLAB_LINE == 'onedl',
    strict=True,
    reason='onedl-mmengine resolves mmseg:: as the distribution mmsegmentation',
)
# onedl-mim 0.5.1 locates an installed package by the first file its RECORD lists; pip sorts
# RECORD, and for a distribution named like its module (mmsgformer) that file is in the
# .dist-info folder, so `mim train/test/search mmsgformer` look for .mim there. Strict, as above.
ONEDL_MIM_FINDS_OUR_PACKAGE = pytest.mark.xfail(
    OPENMMLAB_LINE == 'onedl',
    strict=True,
    reason='onedl-mim takes the .dist-info folder for the package folder of mmsgformer',
)

DETECTION_DEMO_CONFIG = osp.join(REPO, 'configs', 'demo', 'mask-rcnn_sgformer-tiny_fpn_shapes.py')
SEGMENTATION_DEMO_CONFIG = osp.join(REPO, 'configs', 'demo', 'upernet_sgformer-tiny_shapes.py')
CLASSIFICATION_CONFIG = osp.join(REPO, 'configs', 'sgformer', 'sgformer-s_16xb64_in1k.py')


def tiny_detection_config(data_root, imports=('mmsgformer',), extra: str = '') -> str:
    """Text of a config inheriting the detection demo's text config (absolute ``_base_``) that
    trains and evaluates on a generated shapes dataset at ``data_root``, batch 2, no workers;
    ``extra`` lines are appended and merge into the demo's values."""
    return (
        f"_base_ = ['{DETECTION_DEMO_CONFIG}']\n"
        f'custom_imports = dict(imports={list(imports)!r}, allow_failed_imports=False)\n'
        f"data_root = '{data_root}/'\n"
        'train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,\n'
        '                        dataset=dict(data_root=data_root))\n'
        'val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,\n'
        '                      dataset=dict(data_root=data_root))\n'
        'test_dataloader = val_dataloader\n'
        "val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')\n"
        'test_evaluator = val_evaluator\n' + extra
    )


def checkout_env(
    extra: Optional[Mapping[str, str]] = None, pythonpath: Sequence[str] = (REPO,)
) -> dict:
    """This process's environment for a command that runs our code: ``pythonpath`` (the
    checkout) before the inherited ``PYTHONPATH``, one OpenMP thread unless one is set, then
    ``extra``."""
    env = dict(os.environ)
    env.setdefault('OMP_NUM_THREADS', '1')
    env['PYTHONPATH'] = os.pathsep.join([*pythonpath, env.get('PYTHONPATH', '')])
    env.update(extra or {})
    return env


def run_command(
    cmd: Sequence,
    cwd=REPO,
    env: Optional[Mapping[str, str]] = None,
    returncode: Optional[int] = 0,
    separate_stderr: bool = False,
    timeout: float = 600,
) -> str:
    """Runs ``cmd`` and returns what it printed (stdout, and stderr with it unless
    ``separate_stderr``), after checking its exit status.

    Args:
        cmd: The program and its arguments (converted to ``str``).
        cwd: The folder it runs in.
        env: Its environment (default :func:`checkout_env`).
        returncode: The exit status it must have; ``None``: any failure (not 0).
        separate_stderr: Leave stderr out of the result (it is still shown on a wrong status).
        timeout: Seconds before the command is killed and the test fails.
    """
    proc = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=checkout_env() if env is None else env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if separate_stderr else subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    ok = proc.returncode != 0 if returncode is None else proc.returncode == returncode
    stderr = (proc.stderr or '')[-3000:]
    assert ok, f'{cmd} exited {proc.returncode}:\n{proc.stdout[-6000:]}{stderr}'
    return proc.stdout


def _cpu_half_matmul() -> bool:
    try:
        torch.ones(1, 1, 1, dtype=torch.half) @ torch.ones(1, 1, 1, dtype=torch.half)
        return True
    except RuntimeError:
        return False


requires_cpu_half = pytest.mark.skipif(
    not _cpu_half_matmul(),
    reason=f'torch {torch.__version__} has no float16 matmul on the CPU '
    f'(torch 2.1; on the GPU it has)',
)
"""For float16 tests on the CPU (``make test-torch21`` runs some tests under torch 2.1)."""

# A small architecture for fast tests, every block kind included.
TINY_ARCH = dict(
    embed_dims=[32, 64, 128, 256],
    num_heads=[2, 2, 4, 8],
    depths=[2, 2, 2, 1],
    mlp_ratios=[4, 4, 4, 4],
)
TINY_CLASSIFIER_OPTIONS = {'model.backbone.arch': dict(TINY_ARCH), 'model.head.in_channels': 256}
"""``cfg_options`` that make :data:`CLASSIFICATION_CONFIG` a classifier with :data:`TINY_ARCH`."""


def flatten_config(value, prefix: str = '') -> dict:
    """``{'a.b[0].c': leaf}`` for every leaf of a config value (lists of dicts by index)."""
    if isinstance(value, dict):
        items = [(f'{prefix}.{key}' if prefix else key, v) for key, v in value.items()]
    elif isinstance(value, (list, tuple)) and any(
        isinstance(v, (dict, list, tuple)) for v in value
    ):
        items = [(f'{prefix}[{i}]', v) for i, v in enumerate(value)]
    else:
        return {prefix: value}
    flat = {}
    for key, v in items:
        flat.update(flatten_config(v, key))
    return flat


ABSENT = '<absent>'
"""A config key that one of two compared configs does not have."""

HELPER_VARIABLES = {'ms_scales', '_ms_scales', 'checkpoint_file', 'backbone_norm_cfg', 'optimizer'}
"""Top-level config names that no runner reads, which one form of a config has and the other
may lack: a file's own helpers, and the ``backbone_norm_cfg`` and SGD ``optimizer`` helpers of
mmseg's bases (the runner reads ``optim_wrapper``)."""


def changes_from_upstream(upstream: str, config: str, folder) -> dict:
    """``{key: our value}`` for every config leaf where ``config`` differs from a config of the
    task library (``ABSENT`` where ours lacks the key), i.e. what our recipe changes in it;
    :data:`HELPER_VARIABLES` are left out.

    Args:
        upstream: The task library's text config, e.g.
            ``'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'`` (read through a config in
            ``folder`` that inherits it).
        config: Our config file. The ``_scope_`` keys that inheriting a ``pkg::`` base adds
            are left out of both.
        folder: A folder for that config (``tmp_path``).
    """
    from mmengine.config import Config

    library, _, path = upstream.partition('::')
    installed = osp.join(osp.dirname(__import__(library).__file__), '.mim', 'configs', path)
    if not osp.isfile(installed):
        pytest.skip(f'{library} is installed without its configs ({installed})')
    text = osp.join(str(folder), 'upstream.py')
    with open(text, 'w') as f:
        f.write(f'_base_ = [{upstream!r}]\n')

    def leaves(path: str) -> dict:
        flat = flatten_config(Config.fromfile(path).to_dict())
        return {k: v for k, v in flat.items() if not k.endswith('_scope_')}

    theirs, ours = leaves(text), leaves(config)
    return {
        k: ours.get(k, ABSENT)
        for k in set(theirs) | set(ours)
        if theirs.get(k, ABSENT) != ours.get(k, ABSENT)
        and k.split('.')[0].split('[')[0] not in HELPER_VARIABLES
    }


def official_wrappers(state_dict):
    """The forms official files come in: timm training checkpoints and plain state dicts."""
    prefixed = {f'module.{k}': v for k, v in state_dict.items()}
    timm_file = dict(
        epoch=299,
        arch='sgformer_s',
        state_dict=state_dict,
        state_dict_ema={k: v + 1 for k, v in state_dict.items()},
        optimizer={'state': {}, 'param_groups': [{'lr': 1e-3, 'params': [0]}]},
        args=argparse.Namespace(
            model='sgformer_s', lr=1e-3, drop_path=0.1, data='/imagenet', img_size=224
        ),
    )
    return {
        'plain': state_dict,
        'timm': timm_file,
        'model_key': dict(model=state_dict),
        'module_prefix': prefixed,
        'timm_module_prefix': dict(state_dict=prefixed),
    }


def convert_official_checkpoint(state_dict, folder, name: str = 'converted.pth'):
    """The official ``state_dict`` saved as its timm checkpoint, then converted by
    ``tools/model_converters/sgformer2mm.py`` to ``folder / name``; returns that path."""
    src, dst = folder / 'official.pth', folder / name
    torch.save(official_wrappers(state_dict)['timm'], src)
    converter = osp.join(REPO, 'tools', 'model_converters', 'sgformer2mm.py')
    run_command([sys.executable, converter, src, dst])
    return dst


# ---- checks run on the CPU by their own test files and on CUDA by tests/test_cuda.py ----------
def check_with_cp_matches_plain(device: str = 'cpu') -> None:
    """Gradient checkpointing (``with_cp=True``) gives the plain model's outputs and gradients,
    on ``device`` (tests/test_backbone.py on the CPU, tests/test_cuda.py on CUDA). The loss is
    the sum of squares: the sum of the outputs would have gradients near zero (every output
    ends in a LayerNorm)."""
    from mmsgformer.models import SGFormer

    torch.manual_seed(0)
    plain = SGFormer(arch=TINY_ARCH, drop_path_rate=0.0).to(device).train()
    checkpointed = SGFormer(arch=TINY_ARCH, drop_path_rate=0.0, with_cp=True).to(device).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 75, 83, device=device)
    out_plain = plain(x)
    out_cp = checkpointed(x)
    for a, b in zip(out_plain, out_cp):
        torch.testing.assert_close(a, b)
    sum(o.square().sum() for o in out_plain).backward()
    sum(o.square().sum() for o in out_cp).backward()
    grads_cp = dict(checkpointed.named_parameters())
    for name, param in plain.named_parameters():
        torch.testing.assert_close(param.grad, grads_cp[name].grad, atol=1e-5, rtol=1e-4, msg=name)


def autograd_node_names(tensor):
    """Class names of every node of ``tensor``'s autograd graph."""
    seen, stack = {}, [tensor.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is not None and id(fn) not in seen:
            seen[id(fn)] = fn  # kept alive: a freed node's id could be reused
            stack += [f for f, _ in fn.next_functions]
    return {type(fn).__name__ for fn in seen.values()}


RECOMPUTING_FUNCTIONS = {
    'ConvGeluLinearBackward',
    'LayerNormLinearBackward',
    'NormGeluConvBackward',
    'GatherMergeBackward',
}


def check_memory_functions_match_plain_graph(
    monkeypatch, device: str = 'cpu', batch: int = 2
) -> None:
    """The whole backbone with every recomputing function (and the split input projection) has
    the plain graph's gradients, on ``device`` (tests/test_attention.py on the CPU,
    tests/test_cuda.py on CUDA)."""
    from mmsgformer.models import SGFormer, memory_saving

    torch.manual_seed(0)
    model = SGFormer(arch=TINY_ARCH, drop_path_rate=0.0).to(device).train()
    x = torch.randn(batch, 3, 97, 131, device=device)
    directions = [torch.randn_like(o) for o in model(x)]  # a loss with gradients of order 1
    grads, nodes = [], []
    for fused in (True, False):
        if not fused:  # every recomputing function off: the plain graph
            monkeypatch.setattr(memory_saving, 'memory_saving_applies', lambda *a, **k: False)
        model.zero_grad()
        loss = sum((o * d).sum() for o, d in zip(model(x), directions))
        nodes.append(autograd_node_names(loss))
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert RECOMPUTING_FUNCTIONS <= nodes[0] and not RECOMPUTING_FUNCTIONS & nodes[1]
    for (name, _), a, b in zip(model.named_parameters(), *grads):
        assert (a - b).norm() <= 1e-4 * b.norm(), name


@pytest.fixture(scope='session')
def reference():
    """The official implementation's weights (official layout), inputs, stage outputs and
    logits in float32 (see :func:`mmsgformer.testing.reference.load_reference`)."""
    return load_reference(REFERENCE_FILE, torch.float32)


@pytest.fixture(scope='session')
def reference64():
    """The same weights and images with the official model run in float64."""
    return load_reference(REFERENCE_FILE, torch.float64)


@pytest.fixture(scope='session')
def shared_reference():
    """The reference of ``../shared/fixtures`` (float32, made elsewhere); skipped when absent."""
    if not osp.isfile(SHARED_FIXTURE):
        pytest.skip(f'no shared reference at {SHARED_FIXTURE} (set MMSGFORMER_FIXTURE)')
    return torch.load(SHARED_FIXTURE, weights_only=True)


@pytest.fixture(scope='session')
def reference_arch(reference):
    arch = reference['arch']
    return {k: arch[k] for k in ('embed_dims', 'num_heads', 'depths', 'mlp_ratios', 'sr_ratios')}
