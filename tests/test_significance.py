"""Significance maps and token allocation of SG-Former, mmsgformer.visualization (with the
pipeline geometry of mmsgformer.apis.pipeline) and tools/visualize_significance.py.

Tiny architecture with random weights: the maps have the documented shapes at any input size,
are normalised as documented (the local part sums to 1 over the real tokens of every 7x7 window;
the global part sums to 1 over the reduced keys), the allocation follows the grouping of the
reallocation spec, returning the maps changes no output; the pictures follow the pipeline's
geometry (resize, crop, pad, flip), --block picks the block, a checkpoint's weights are the ones
drawn, and the tool writes readable PNGs of the expected sizes for odd-sized images, one set per
image of a folder.
"""

import math
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, TINY_ARCH

from mmsgformer.apis import pipeline as geometry_lib
from mmsgformer.models import SGFormer
from mmsgformer.models.attention import LOCAL_WINDOW, REALLOCATION_SPECS, HybridScaleAttention
from mmsgformer.visualization import significance as tool

TOOL = osp.join(REPO, 'tools', 'visualize_significance.py')
SR_RATIOS = [8, 4, 2, 1]


@pytest.fixture(scope='module')
def backbone():
    torch.manual_seed(0)
    return SGFormer(arch=TINY_ARCH, drop_path_rate=0.0).eval()


def stage_hw(hw, stage):
    h, w = math.ceil(math.ceil(hw[0] / 2) / 2), math.ceil(math.ceil(hw[1] / 2) / 2)
    for _ in range(stage):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return h, w


# ------------------------------------------------------------------------------ the maps
@pytest.mark.parametrize('hw', [(77, 101), (224, 224), (33, 130)])
def test_shapes_any_size(backbone, hw):
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        _, records = backbone.forward_with_significance(x)
    # depths [2, 2, 2, 1]: one hybrid-scale block (block 0) per stage 0-2, each followed by a
    # significance-guided block; stage 3 has global attention and no map.
    assert [(r['stage'], r['block']) for r in records] == [(0, 0), (1, 0), (2, 0)]
    for record in records:
        shape = (2,) + stage_hw(hw, record['stage'])
        assert tuple(record['significance'].shape) == shape
        assert tuple(record['allocation'].shape) == shape
        assert record['allocation'].dtype == torch.long
        assert torch.isfinite(record['significance']).all()
        assert (record['significance'] > 0).all()
        assert not record['significance'].requires_grad


def _capture_parts(backbone, monkeypatch):
    """Records the local and global parts of every hybrid-scale attention's significance."""
    parts = []
    for module in backbone.modules():
        if isinstance(module, HybridScaleAttention):
            for name in ('_local', '_global'):
                original = getattr(module, name)

                def wrapped(*args, _original=original, _name=name, **kwargs):
                    out, sig = _original(*args, **kwargs)
                    parts.append((_name, sig.detach().clone()))
                    return out, sig

                monkeypatch.setattr(module, name, wrapped)
    return parts


def _window_sums(sig):
    """Sum of a ``(B, H, W)`` map over every 7x7 window (partial windows at the border)."""
    b, h, w = sig.shape
    padded = torch.nn.functional.pad(sig, (0, -w % LOCAL_WINDOW, 0, -h % LOCAL_WINDOW))
    return padded.unflatten(1, (-1, LOCAL_WINDOW)).unflatten(3, (-1, LOCAL_WINDOW)).sum((2, 4))


@pytest.mark.parametrize('hw', [(224, 224), (77, 101)])
def test_normalisation(backbone, monkeypatch, hw):
    parts = _capture_parts(backbone, monkeypatch)
    with torch.no_grad():
        _, records = backbone.forward_with_significance(torch.randn(2, 3, *hw))
    local = [sig for name, sig in parts if name == '_local']
    global_ = [sig for name, sig in parts if name == '_global']
    assert len(local) == len(global_) == len(records) == 3
    for record, loc, glob_ in zip(records, local, global_):
        sig = record['significance']
        torch.testing.assert_close(sig, loc + glob_)
        # local part: each window's real queries give 1/49 each, spread over its real keys, so a
        # window sums to (real tokens) / 49 (1 for full windows)
        sums = _window_sums(loc)
        real = _window_sums(torch.ones_like(loc))
        torch.testing.assert_close(sums, real / LOCAL_WINDOW**2, rtol=0, atol=1e-5)
        # global part: constant on every sr x sr cell, summing to 1 over the reduced keys
        sr = SR_RATIOS[record['stage']]
        h, w = sig.shape[-2:]
        cells = torch.nn.functional.pad(glob_, (0, -w % sr, 0, -h % sr), value=float('nan'))
        cells = cells.unflatten(1, (-1, sr)).unflatten(3, (-1, sr))
        first = cells[:, :, :1, :, :1]
        same = torch.isnan(cells) | torch.isclose(cells, first.expand_as(cells))
        assert same.all()
        torch.testing.assert_close(first.sum((1, 2, 3, 4)), torch.ones(2), rtol=0, atol=1e-5)
        if hw == (224, 224):  # no padding anywhere: the documented total
            windows = (h // LOCAL_WINDOW) * (w // LOCAL_WINDOW)
            torch.testing.assert_close(
                sig.sum((1, 2)), torch.full((2,), windows + sr * sr * 1.0), rtol=1e-5, atol=1e-4
            )


@pytest.mark.parametrize('hw', [(224, 224), (77, 101)])
def test_allocation_follows_grouping(backbone, hw):
    with torch.no_grad():
        _, records = backbone.forward_with_significance(torch.randn(2, 3, *hw))
    for record in records:
        spec = REALLOCATION_SPECS[SR_RATIOS[record['stage']]]
        alloc, sig = record['allocation'], record['significance']
        assert set(alloc.unique().tolist()) <= set(spec.merge_sizes)
        n = alloc[0].numel()
        for b in range(2):
            counts = [int((alloc[b] == size).sum()) for size in spec.merge_sizes]
            assert tuple(counts) == spec.group_sizes(n)
            # coarser keys collect less significant tokens
            for coarse, fine in zip(spec.merge_sizes, spec.merge_sizes[1:]):
                assert sig[b][alloc[b] == coarse].max() <= sig[b][alloc[b] == fine].min()
    if hw == (224, 224):  # the released models' grouping, exactly divisible
        assert [int((records[0]['allocation'][0] == s).sum()) for s in (196, 56, 28)] == [
            784,
            1568,
            784,
        ]


@pytest.mark.parametrize('hw', [(224, 224), (77, 101)])
def test_maps_do_not_change_outputs(backbone, hw):
    x = torch.randn(1, 3, *hw)
    with torch.no_grad():
        plain = backbone(x)
        with_maps, _ = backbone.forward_with_significance(x)
    assert len(plain) == len(with_maps) == 4
    for a, b in zip(plain, with_maps):
        assert torch.equal(a, b)


# ------------------------------------------------------------------------------ tool helpers
def test_geometry_resize_crop_pad():
    geometry = geometry_lib.Geometry((10, 20))  # original 10 x 20
    geometry.resize((20, 40))  # x2
    geometry.crop(4, 8, (12, 24))  # centre-ish crop
    geometry.pad((16, 32))  # padding does not move anything
    ys, xs = geometry.input_coords()
    np.testing.assert_allclose(ys, (np.arange(10) + 0.5) * 2 - 4)
    np.testing.assert_allclose(xs, (np.arange(20) + 0.5) * 2 - 8)
    seen = geometry.seen()
    assert seen[2:8, 4:16].all() and seen.sum() == 6 * 12
    # nearest sampling of a stride-4 map picks the token whose 4x4 cell holds the pixel
    stage_map = np.arange(4 * 8, dtype=float).reshape(4, 8)
    image = tool.to_image(stage_map, 4, geometry, 'nearest')
    assert image.shape == (10, 20)
    for y in range(2, 8):
        for x in range(4, 16):
            assert image[y, x] == stage_map[int(ys[y] // 4), int(xs[x] // 4)]


def test_geometry_flip_follows_the_pipeline(tmp_path):
    """A resize (nearest) then a horizontal flip: every original pixel lands where the geometry
    says, in the network input the pipeline produced."""
    pytest.importorskip('mmpretrain')
    from mmengine.config import Config

    from mmsgformer.utils.config import task_registries

    _, transforms = task_registries(Config(dict(default_scope='mmpretrain')))
    pipeline = geometry_lib.build_transforms(
        [
            dict(type='LoadImageFromFile'),
            dict(type='Resize', scale=(40, 26), interpolation='nearest'),  # (w, h): x2
            dict(type='RandomFlip', prob=1.0, direction='horizontal'),
            dict(type='PackInputs'),
        ],
        transforms,
    )
    path = tmp_path / 'image.png'
    write_image(path, (13, 20), 0)
    packed, geometry, original = geometry_lib.run_pipeline(pipeline, str(path), 0)
    ys, xs = geometry.input_coords()
    np.testing.assert_allclose(ys, (np.arange(13) + 0.5) * 2)
    np.testing.assert_allclose(xs, 40 - (np.arange(20) + 0.5) * 2)  # mirrored
    assert geometry.seen().all()
    net = packed['inputs'].numpy()[::-1].transpose(1, 2, 0)  # BGR CHW -> RGB HWC
    assert net.shape == (26, 40, 3)
    rows, cols = ys.astype(int), xs.astype(int)
    np.testing.assert_array_equal(net[rows[:, None], cols[None, :]], original)
    # the same geometry by hand
    manual = geometry_lib.Geometry((13, 20))
    manual.resize((26, 40))
    manual.flip('horizontal')
    np.testing.assert_allclose(manual.input_coords()[1], xs)


def test_block_picks_the_hybrid_block(tmp_path, tiny_config):
    """Stage 1 with two hybrid-scale blocks (depth 4): --block 0 and the default (-1, the last)
    draw different maps there and the same ones in the stages with a single block."""
    model, transforms = library_model(tiny_config, {'model.backbone.arch.depths': [4, 2, 2, 1]})
    image = tmp_path / 'image.png'
    write_image(image, (64, 80), 3)
    for block in (0, -1):
        tool.visualize_image(
            model, transforms, str(image), 0, str(tmp_path / str(block)), 'random', block=block
        )
    first, last = (read_rgb(tmp_path / b / 'raw' / 'stage1_significance.png') for b in ('0', '-1'))
    assert np.abs(first - last).mean() > 5
    for stage in (2, 3):
        name = f'raw/stage{stage}_significance.png'
        np.testing.assert_array_equal(
            read_rgb(tmp_path / '0' / name), read_rgb(tmp_path / '-1' / name)
        )


def test_uniform_significance():
    uniform = tool.uniform_significance((9, 16), 4, 7)
    assert uniform.shape == (9, 16)
    reduced = math.ceil(9 / 4) * math.ceil(16 / 4)
    assert uniform[0, 0] == pytest.approx(1 / 49 + 1 / reduced)
    assert uniform[8, 15] == pytest.approx(1 / 49 + 1 / reduced)  # 2x2 corner window too


# ------------------------------------------------------------------------------ the tool
TINY_CLS_CONFIG = """
from mmengine.config import read_base

with read_base():  # ./configs is a link to the repository's configs (see tiny_config)
    from .configs.sgformer_s_in1k import *

model.backbone.arch = dict(embed_dims=[32, 64, 128, 256], num_heads=[2, 2, 4, 8],
                           depths=[2, 2, 2, 1], mlp_ratios=[4, 4, 4, 4])
model.head.in_channels = 256
"""


def write_image(path, hw, seed):
    import cv2

    rng = np.random.default_rng(seed)
    image = np.full(hw + (3,), 60, np.uint8)
    image[hw[0] // 4 : hw[0] // 2, hw[1] // 3 :] = rng.integers(0, 255, 3, dtype=np.uint8)
    assert cv2.imwrite(str(path), image)


def run_tool(*args):
    env = dict(
        os.environ,
        PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''),
        MPLBACKEND='Agg',
        OMP_NUM_THREADS='1',
    )
    proc = subprocess.run(
        [sys.executable, TOOL, *map(str, args), '--device', 'cpu'],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def read_rgb(path):
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert('RGB')).astype(int)


def library_model(config, cfg_options=None):
    """The classifier of ``config`` (random weights, seeded) and its test transforms, built by
    the library functions the tool uses."""
    from mmsgformer.apis import build_model
    from mmsgformer.utils.config import load_config

    cfg = load_config(str(config), cfg_options)
    torch.manual_seed(0)
    return build_model(cfg), geometry_lib.build_test_transforms(cfg)


def check_outputs(folder, hw):
    from PIL import Image

    for stage in (1, 2, 3):
        for kind in ('significance', 'allocation'):
            with Image.open(folder / 'raw' / f'stage{stage}_{kind}.png') as raw:
                raw.load()
                assert raw.size == (hw[1], hw[0])  # PIL: (width, height)
                pixels = np.asarray(raw.convert('RGB'))
            with Image.open(folder / f'stage{stage}_{kind}.png') as figure:
                figure.load()
                assert figure.size == tool.figure_size(hw)
            assert pixels.reshape(-1, 3).std(0).max() > 0  # not a blank picture
    with Image.open(folder / 'summary.png') as summary:
        summary.load()
        assert min(summary.size) > 200


@pytest.fixture(scope='module')
def tiny_config(tmp_path_factory):
    pytest.importorskip('mmpretrain')
    folder = tmp_path_factory.mktemp('cfg')
    (folder / 'configs').symlink_to(osp.join(REPO, 'mmsgformer', 'configs'))
    path = folder / 'tiny_sgformer_cls.py'
    path.write_text(TINY_CLS_CONFIG)
    return path


def test_tool_odd_sized_image(tmp_path, tiny_config):
    image = tmp_path / 'odd.png'
    write_image(image, (97, 150), 0)
    proc = run_tool(image, tiny_config, '--out', tmp_path / 'out')
    assert 'RANDOM' in proc.stderr  # no checkpoint: a clear warning
    check_outputs(tmp_path / 'out' / 'odd', (97, 150))
    printed = [line for line in proc.stdout.splitlines() if line.endswith('.png')]
    assert len(printed) == 13 and all(osp.isfile(p) for p in printed)
    # the classifier centre-crops: the parts outside the crop are dimmed, not coloured
    from PIL import Image

    overlay = np.asarray(
        Image.open(tmp_path / 'out' / 'odd' / 'raw' / 'stage1_significance.png').convert('RGB')
    ).astype(int)
    assert (overlay[:, 0] == int(60 * tool.OUTSIDE_DIM + 0.5)).all()  # left border: outside
    assert (overlay[48, 75] != overlay[48, 0]).any()  # centre: coloured


def test_tool_folder_with_checkpoint(tmp_path, tiny_config):
    images = tmp_path / 'images'
    images.mkdir()
    write_image(images / 'a.png', (97, 150), 1)
    write_image(images / 'b.jpg', (120, 71), 2)
    torch.manual_seed(1)
    state = SGFormer(arch=TINY_ARCH).state_dict()
    checkpoint = tmp_path / 'model.pth'
    torch.save(dict(state_dict={f'backbone.{k}': v for k, v in state.items()}, meta={}), checkpoint)
    proc = run_tool(images, tiny_config, checkpoint, '--out', tmp_path / 'out')
    assert 'RANDOM' not in proc.stderr + proc.stdout
    check_outputs(tmp_path / 'out' / 'a', (97, 150))
    check_outputs(tmp_path / 'out' / 'b', (120, 71))
    # the checkpoint's weights were drawn: the same pictures as the library's from a model that
    # got them by load_state_dict (random weights would give other maps)
    model, transforms = library_model(tiny_config)
    model.backbone.load_state_dict(state)
    tool.visualize_image(
        model, transforms, str(images / 'a.png'), 0, str(tmp_path / 'direct'), 'direct'
    )
    for stage in (1, 2, 3):
        for kind in ('significance', 'allocation'):
            name = f'raw/stage{stage}_{kind}.png'
            drawn = read_rgb(tmp_path / 'out' / 'a' / name)
            direct = read_rgb(tmp_path / 'direct' / name)
            assert np.abs(drawn - direct).mean() < 1, name  # equal up to float rounding


def test_tool_refuses_nonfinite_checkpoint(tmp_path, tiny_config):
    """A checkpoint of a diverged run is named as such, not drawn as maps of NaN."""
    image = tmp_path / 'image.png'
    write_image(image, (40, 50), 4)
    state = SGFormer(arch=TINY_ARCH).state_dict()
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = torch.full_like(state[name], float('nan'))
    checkpoint = tmp_path / 'diverged.pth'
    torch.save(dict(state_dict={f'backbone.{k}': v for k, v in state.items()}), checkpoint)
    env = dict(os.environ, MPLBACKEND='Agg', OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [
            sys.executable,
            TOOL,
            str(image),
            str(tiny_config),
            str(checkpoint),
            '--out',
            str(tmp_path / 'out'),
            '--device',
            'cpu',
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 1
    assert "the checkpoint's weights contain NaN/Inf" in proc.stderr and name in proc.stderr
    assert not (tmp_path / 'out').exists()
