"""SG-Former backbone (Ren et al., "SG-Former: Self-guided Transformer with Evolving Token
Reallocation", ICCV 2023) for OpenMMLab detection, segmentation and classification.

The file reads as the paper's structure, top-down:

* :class:`SGFormer` - a convolutional stem (stride 4, :class:`ConvStem`) and three
  convolutional patch-merging layers (stride 2, :class:`PatchMerging`) start four stages
  (:class:`SGFormerStage`); each stage ends with a LayerNorm whose output is its feature map.
* :class:`SGFormerBlock` - ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``. In stages whose
  key-reduction ratio is above 1, blocks alternate between hybrid-scale attention (even blocks;
  they compute a significance map) and significance-guided attention (odd blocks; they
  reallocate keys by that map); the last stage uses global attention
  (:mod:`mmsgformer.models.attention`).
* :class:`ConvMlp` - the MLP with a depth-wise convolution.

Any input size: the convolutions give stage sizes ``ceil(ceil(H / 2) / 2)`` then halve with
ceil; the position embedding (trained at ``pretrain_img_size / 4`` squared) is resized
bicubically to the stage-1 map; attention pads internally where windows and key reduction need
it and crops back. At multiples of 224 the computation is exactly the official one. Sizes may be
symbolic (see :mod:`mmsgformer.models.sizes`), so the backbone exports with dynamic height
and width.

Each forward is the paper's math in plain PyTorch. In training, where memory saving applies, the
stem, the patch merging layers and the MLPs hand the whole module to its memory-saving forward
in :mod:`mmsgformer.models.memory_saving` (the same math keeping less for backward), by one early
branch. What depends on a size is in :mod:`mmsgformer.models.sizes`.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from ..registry import MODELS, register_in_root
from . import memory_saving
from .attention import (
    REALLOCATION_SPECS,
    GlobalAttention,
    HybridScaleAttention,
    SignificanceGuidedAttention,
)
from .layers import (
    ConvNorm,
    DropPath,
    dropout,
    map_to_tokens,
    residual_add,
    sincos_pos_embed,
    tokens_to_map,
)
from .pretrained import load_pretrained, load_state_dict_pre_hook
from .sizes import Size, known_below, known_equal, known_zero, runs_eagerly

MIN_INPUT_SIZE = 32
"""Smallest input height and width (the last stage has stride 32)."""


@register_in_root(MODELS)
class SGFormer(BaseModule):
    """SG-Former backbone.

    Args:
        arch: ``'s'``, ``'m'``, ``'b'`` (the released models) or a dict with ``embed_dims``,
            ``num_heads``, ``depths`` and ``mlp_ratios`` (four values each) and optionally
            ``sr_ratios`` (default ``[8, 4, 2, 1]``; values in {1, 2, 4, 8}; stages with a ratio
            above 1 need an even number of heads).
        in_channels: Image channels.
        out_indices: Stages whose normed feature maps are returned (0-3).
        drop_rate: Dropout rate in the MLPs and after attention projections.
        drop_path_rate: Stochastic depth rate, increasing linearly over all blocks.
        pretrain_img_size: Input size the position embedding was trained at (224: 56x56 grid).
        frozen_stages: ``-1`` freezes nothing; ``0`` freezes the stem and position embedding;
            ``k >= 1`` additionally freezes stages ``0..k-1`` (their downsampling, blocks and
            output norms), which are then kept in eval mode.
        norm_eval: Keep normalisation layers in eval mode during training. SG-Former has only
            LayerNorm and GroupNorm, which keep no running statistics, so this changes nothing
            numerically; it is accepted so that configs written for other backbones work.
        with_cp: Gradient checkpointing of every block (saves memory, costs a recomputation).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH_OR_URL)`` loads an official SG-Former
            release, a file of ``tools/model_converters/sgformer2mm.py`` or a checkpoint of one of
            our classifiers, detectors or segmentors (``prefix`` optional, ``strict`` default
            True, ``map_location`` default ``'cpu'``; an ``http(s)://`` URL is downloaded once
            into torch's hub cache; see :func:`mmsgformer.models.pretrained.load_pretrained`).
            Other init configs are passed to MMEngine; ``None`` gives the official
            initialisation.
    """

    arch_zoo: Dict[str, Dict[str, List[int]]] = {
        's': dict(
            embed_dims=[64, 128, 256, 512],
            num_heads=[2, 4, 8, 16],
            depths=[2, 4, 16, 1],
            mlp_ratios=[4, 4, 4, 4],
            sr_ratios=[8, 4, 2, 1],
        ),
        'm': dict(
            embed_dims=[64, 128, 256, 512],
            num_heads=[2, 4, 8, 16],
            depths=[2, 6, 28, 2],
            mlp_ratios=[4, 4, 4, 4],
            sr_ratios=[8, 4, 2, 1],
        ),
        'b': dict(
            embed_dims=[96, 192, 384, 768],
            num_heads=[4, 6, 12, 24],
            depths=[4, 6, 24, 2],
            mlp_ratios=[4, 4, 4, 4],
            sr_ratios=[8, 4, 2, 1],
        ),
    }
    num_stages = 4

    def __init__(
        self,
        arch: Union[str, dict] = 's',
        in_channels: int = 3,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        pretrain_img_size: int = 224,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        with_cp: bool = False,
        init_cfg: Optional[dict] = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch = self._parse_arch(arch)
        self.embed_dims = list(self.arch['embed_dims'])
        self.in_channels = in_channels
        self.out_indices = self._parse_out_indices(out_indices)
        if not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(
                f'frozen_stages must be in [-1, {self.num_stages}], got {frozen_stages}'
            )
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.pretrain_grid = pretrain_img_size // 4
        self._finite_check = FiniteInputCheck()

        depths = self.arch['depths']
        drop_path_rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.stages = nn.ModuleList()
        for i in range(self.num_stages):
            dims = self.embed_dims[i]
            downsample = (
                ConvStem(in_channels, dims)
                if i == 0
                else PatchMerging(self.embed_dims[i - 1], dims)
            )
            rates = drop_path_rates[sum(depths[:i]) : sum(depths[: i + 1])]
            blocks = [
                SGFormerBlock(
                    self._build_attention(i, j, drop_rate),
                    dims,
                    self.arch['mlp_ratios'][i],
                    rate,
                    drop_rate,
                )
                for j, rate in enumerate(rates)
            ]
            self.stages.append(SGFormerStage(downsample, blocks, dims))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pretrain_grid**2, self.embed_dims[0]))
        self._init_from_scratch()
        self._freeze_stages()
        self._register_load_state_dict_pre_hook(load_state_dict_pre_hook, with_module=True)

    # ------------------------------------------------------------------ construction
    def _parse_arch(self, arch: Union[str, dict]) -> Dict[str, List[int]]:
        if isinstance(arch, str):
            key = arch.lower()
            if key not in self.arch_zoo:
                raise ValueError(
                    f'SGFormer arch {arch!r} does not exist; choose one of '
                    f'{sorted(self.arch_zoo)} or pass a dict with embed_dims, '
                    f'num_heads, depths and mlp_ratios'
                )
            return {k: list(v) for k, v in self.arch_zoo[key].items()}
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a name or a dict, got {type(arch).__name__}')
        required = {'embed_dims', 'num_heads', 'depths', 'mlp_ratios'}
        unknown = set(arch) - required - {'sr_ratios'}
        if not required <= set(arch) or unknown:
            raise ValueError(
                f'a custom SGFormer arch needs exactly the keys {sorted(required)} '
                f'(and optionally sr_ratios); missing {sorted(required - set(arch))}, '
                f'unknown {sorted(unknown)}'
            )
        parsed = {k: list(v) for k, v in arch.items()}
        parsed.setdefault('sr_ratios', [8, 4, 2, 1])
        for key, values in parsed.items():
            if len(values) != self.num_stages:
                raise ValueError(f'arch[{key!r}] needs {self.num_stages} values, got {values}')
        for i, sr in enumerate(parsed['sr_ratios']):
            if sr != 1 and sr not in REALLOCATION_SPECS:
                raise ValueError(
                    f'sr_ratios[{i}] = {sr}: SG-Former defines token reallocation '
                    f'for ratios {sorted(REALLOCATION_SPECS)} (or 1 for global '
                    f'attention)'
                )
        return parsed

    def _parse_out_indices(self, out_indices: Union[int, Sequence[int]]) -> Tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        indices = tuple(i + self.num_stages if i < 0 else i for i in out_indices)
        if not indices or any(not 0 <= i < self.num_stages for i in indices):
            raise ValueError(
                f'out_indices must be stage indices in [0, {self.num_stages}), got {out_indices}'
            )
        return indices

    def _build_attention(self, stage: int, block: int, drop: float) -> nn.Module:
        dims, heads = self.embed_dims[stage], self.arch['num_heads'][stage]
        sr = self.arch['sr_ratios'][stage]
        if sr == 1:
            return GlobalAttention(dims, heads, drop)
        if block % 2 == 0:
            return HybridScaleAttention(dims, heads, sr, drop)
        return SignificanceGuidedAttention(dims, heads, sr, drop)

    def _init_from_scratch(self) -> None:
        """The official initialisation: truncated-normal linears, He-normal (fan-out) convs."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.pos_embed.copy_(sincos_pos_embed(self.embed_dims[0], self.pretrain_grid)[None])

    def init_weights(self) -> None:
        """Loads ``init_cfg``'s checkpoint, or applies the official initialisation."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            known = ['type', 'checkpoint', 'prefix', 'strict', 'map_location']
            unknown = set(cfg) - set(known)
            if unknown:
                raise ValueError(
                    f'unknown keys in SGFormer init_cfg: {sorted(unknown)}; '
                    f'Pretrained takes {known}'
                )
            if not cfg.get('checkpoint'):
                raise ValueError("init_cfg type='Pretrained' needs checkpoint=PATH or URL")
            load_pretrained(
                self,
                cfg['checkpoint'],
                prefix=cfg.get('prefix'),
                strict=cfg.get('strict', True),
                map_location=cfg.get('map_location', 'cpu'),
            )
            self._is_init = True
        elif cfg is None:
            self._init_from_scratch()
        else:
            super().init_weights()
        self._freeze_stages()

    # ------------------------------------------------------------------ train/freeze
    def _frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        frozen: List[nn.Module] = [self.stages[0].downsample]
        frozen += list(self.stages[: self.frozen_stages])
        return frozen

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            self.pos_embed.requires_grad_(False)
        for module in self._frozen_modules():
            module.eval()
            module.requires_grad_(False)

    def train(self, mode: bool = True) -> 'SGFormer':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, (_BatchNorm, nn.LayerNorm, nn.GroupNorm)):
                    m.eval()
        return self

    # ------------------------------------------------------------------ forward
    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f'SGFormer expects a tensor of images (B, C, H, W), got {type(x).__name__}'
            )
        if x.dim() != 4:
            raise ValueError(
                f'SGFormer expects images as a 4D tensor (B, C, H, W), got shape '
                f'{tuple(x.shape)}; add a batch dimension with x[None]'
            )
        if known_zero(x.shape[0]):
            raise ValueError('SGFormer got an empty batch (B = 0); pass at least one image')
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f'SGFormer was built with in_channels={self.in_channels} but got '
                f'{x.shape[1]} channels (shape {tuple(x.shape)}); convert the images '
                f'or build the backbone with in_channels={x.shape[1]}'
            )
        if not x.is_floating_point():
            raise TypeError(
                f'SGFormer expects floating-point images, got {x.dtype}; convert '
                f'with x.float() and normalise (a data preprocessor does this)'
            )
        if runs_eagerly() and any(known_below(size, MIN_INPUT_SIZE) for size in x.shape[-2:]):
            raise ValueError(
                f'SGFormer needs inputs of at least {MIN_INPUT_SIZE}x'
                f'{MIN_INPUT_SIZE} (its last stage has stride 32), got '
                f'{x.shape[-2]}x{x.shape[-1]}; resize or pad the images'
            )
        self._finite_check(x, self.training)

    def resized_pos_embed(self, hw_shape: Tuple[Size, Size]) -> torch.Tensor:
        """The position embedding ``(1, H*W, C)`` for a stage-1 map of ``hw_shape`` (itself
        where the sizes are known to be its grid's)."""
        grid = (self.pretrain_grid, self.pretrain_grid)
        if known_equal(hw_shape, grid):
            return self.pos_embed
        pos = self.pos_embed.reshape(1, *grid, -1).permute(0, 3, 1, 2)
        pos = F.interpolate(pos.float(), size=hw_shape, mode='bicubic', align_corners=False)
        return map_to_tokens(pos).to(self.pos_embed.dtype)

    def _run_block(
        self,
        block: SGFormerBlock,
        x: torch.Tensor,
        hw_shape: Tuple[Size, Size],
        significance: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if self.with_cp and self.training and x.requires_grad:
            return activation_checkpoint(block, x, hw_shape, significance, use_reentrant=False)
        return block(x, hw_shape, significance)

    def _forward(self, x: torch.Tensor, records: Optional[list] = None) -> Tuple[torch.Tensor, ...]:
        self._check_input(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x, hw_shape = stage.downsample(x)
            if i == 0:
                x = x + self.resized_pos_embed(hw_shape)
            significance = None
            for j, block in enumerate(stage.blocks):
                if records is not None and significance is not None:
                    self._record(records, i, j - 1, block.attn, significance)
                x, significance = self._run_block(block, x, hw_shape, significance)
            if records is not None and significance is not None:
                self._record(records, i, len(stage.blocks) - 1, None, significance)
            x = tokens_to_map(stage.norm(x), hw_shape)
            if i in self.out_indices:
                outs.append(x.contiguous())
        return tuple(outs)

    @staticmethod
    def _record(
        records: list,
        stage: int,
        block: int,
        next_attn: Optional[nn.Module],
        significance: torch.Tensor,
    ) -> None:
        record = dict(stage=stage, block=block, significance=significance.detach())
        if isinstance(next_attn, SignificanceGuidedAttention):
            allocation = next_attn.reallocation.allocation(significance.flatten(1))
            record['allocation'] = allocation.view_as(significance)
        records.append(record)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Feature maps ``(B, C_i, H_i, W_i)`` of the stages in ``out_indices``."""
        return self._forward(x)

    def forward_with_significance(
        self, x: torch.Tensor
    ) -> Tuple[Tuple[torch.Tensor, ...], List[dict]]:
        """Like :meth:`forward`, also returning every hybrid-scale block's significance map.

        Returns:
            The feature maps and one dict per hybrid-scale block with ``stage``, ``block``,
            ``significance`` ``(B, H_i, W_i)`` (at the stage's resolution: the mean attention each
            token receives as a local key plus that of its reduced global key; per 7x7 window
            the local part sums to 1) and, when a significance-guided block follows,
            ``allocation`` ``(B, H_i, W_i)``: how many tokens were merged with each token into one
            key of that block.
        """
        records: List[dict] = []
        return self._forward(x, records), records


class SGFormerStage(nn.Module):
    """A downsampling layer, the stage's blocks and its output LayerNorm.

    Args:
        downsample: Stem or patch merging; returns tokens and their map size.
        blocks: The blocks in order.
        dims: Channels.
        norm_eps: Epsilon of the output LayerNorm.
    """

    def __init__(
        self,
        downsample: nn.Module,
        blocks: List['SGFormerBlock'],
        dims: int,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(dims, eps=norm_eps)


class ConvStem(nn.Module):
    """Stride-4 stem: three 3x3 ConvNorms (strides 2, 1, 2) with GELUs, then a LayerNorm.

    Args:
        in_channels: Image channels.
        dims: Output channels.
    """

    def __init__(self, in_channels: int, dims: int) -> None:
        super().__init__()
        self.conv1 = ConvNorm(in_channels, dims, 3, stride=2)
        self.conv2 = ConvNorm(dims, dims, 3)
        self.conv3 = ConvNorm(dims, dims, 3, stride=2)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(dims)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[Size, Size]]:
        """Tokens ``(B, H/4 * W/4, C)`` and their map size."""
        # Channels-last convolutions are faster here and give tokens without a copy.
        x = x.contiguous(memory_format=torch.channels_last)
        if memory_saving.norm_gelu_conv_applies(self, x):
            return memory_saving.conv_stem(self, x)
        x = self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))
        return self.norm(map_to_tokens(x)), tuple(x.shape[-2:])


class PatchMerging(nn.Module):
    """Stride-2 downsampling: 1x1 ConvNorm, depth-wise 3x3 stride-2 ConvNorm, 1x1 ConvNorm.

    Args:
        in_channels: Input channels.
        dims: Output channels.
    """

    def __init__(self, in_channels: int, dims: int) -> None:
        super().__init__()
        self.conv1 = ConvNorm(in_channels, dims)
        self.conv2 = ConvNorm(dims, dims, 3, stride=2, groups=dims)
        self.conv3 = ConvNorm(dims, dims)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[Size, Size]]:
        """Tokens at half the resolution of the map ``x`` and their map size."""
        if memory_saving.norm_gelu_conv_applies(self, x):
            return memory_saving.patch_merging(self, x)
        x = self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))
        return map_to_tokens(x), tuple(x.shape[-2:])


class SGFormerBlock(nn.Module):
    """Transformer block around one of SG-Former's attentions.

    Args:
        attn: The attention module (its forward takes and returns a significance map).
        dims: Channels.
        mlp_ratio: Hidden/input channel ratio of the MLP.
        drop_path: Stochastic depth rate.
        drop: Dropout rate in the MLP.
        norm_eps: LayerNorm epsilon.
    """

    def __init__(
        self,
        attn: nn.Module,
        dims: int,
        mlp_ratio: float,
        drop_path: float = 0.0,
        drop: float = 0.0,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dims, eps=norm_eps)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dims, eps=norm_eps)
        self.mlp = ConvMlp(dims, int(dims * mlp_ratio), drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(
        self,
        x: torch.Tensor,
        hw_shape: Tuple[Size, Size],
        significance: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        y, significance = self.attn(self.norm1(x), hw_shape, significance)
        x = residual_add(x, self.drop_path(y))
        x = residual_add(x, self.drop_path(self.mlp(x, hw_shape, norm=self.norm2)))
        return x, significance


class ConvMlp(nn.Module):
    """MLP with a depth-wise 3x3 convolution: ``fc2(gelu(h + dwconv(h)))``, ``h = fc1(x)``.

    Args:
        dims: Input and output channels.
        hidden_dims: Hidden channels.
        drop: Dropout rate after the activation and after ``fc2``.
    """

    def __init__(self, dims: int, hidden_dims: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dims, hidden_dims)
        self.dwconv = nn.Conv2d(hidden_dims, hidden_dims, 3, padding=1, groups=hidden_dims)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dims, dims)
        self.drop = dropout(drop)
        # h + dwconv(h) as one convolution: the identity is added to the kernel's centre tap,
        # which saves a pass over the largest activation of the block. (Not saved in state dicts.)
        identity = torch.zeros_like(self.dwconv.weight)
        identity[:, :, 1, 1] = 1
        self.register_buffer('identity_kernel', identity, persistent=False)

    def forward(
        self, x: torch.Tensor, hw_shape: Tuple[Size, Size], norm: Optional[nn.LayerNorm] = None
    ) -> torch.Tensor:
        """The MLP of ``x``, or of ``norm(x)``."""
        if memory_saving.conv_mlp_applies(self, x, norm):
            return memory_saving.conv_mlp(self, x, hw_shape, norm)
        h = self.fc1(x if norm is None else norm(x))
        return self.mix(tokens_to_map(h, hw_shape))

    def mix(self, h_map: torch.Tensor) -> torch.Tensor:
        """``fc2(gelu(h + dwconv(h)))`` of the hidden map ``h`` (with the dropouts), as tokens."""
        h_map = F.conv2d(
            h_map, self.mixing_kernel(), self.dwconv.bias, padding=1, groups=self.dwconv.groups
        )
        return self.drop(self.fc2(self.drop(self.act(map_to_tokens(h_map)))))

    def mixing_kernel(self) -> torch.Tensor:
        """The depth-wise kernel of ``h + dwconv(h)``."""
        return self.dwconv.weight + self.identity_kernel


class FiniteInputCheck:
    """Raises a clear error for images with NaN or infinite values, without stalling the GPU.

    Reading a CUDA result on the host waits for all queued GPU work; at the start of every
    training forward that wait would keep the host from queuing the next step. So in training
    on CUDA the result is copied to the host asynchronously and read at the next call: the error
    comes one step late and names the previous step (a NaN in the very last batch of a run is
    not reported). On the CPU and in eval mode the check is immediate; in a traced graph (an
    export or a compiled model) there is none.
    """

    DEFERRED_DEVICE_TYPES = ('cuda',)

    def __init__(self) -> None:
        self._pending: Optional[Tuple[torch.Tensor, Optional[torch.cuda.Event]]] = None

    def __call__(self, x: torch.Tensor, training: bool) -> None:
        if not runs_eagerly():
            return
        self.resolve()
        if training and x.device.type in self.DEFERRED_DEVICE_TYPES:
            finite = torch.isfinite(x).all().to('cpu', non_blocking=True)
            event = None
            if x.device.type == 'cuda':
                event = torch.cuda.Event()
                event.record()
            self._pending = (finite, event)
        elif not torch.isfinite(x).all():
            raise ValueError(
                'SGFormer input contains NaN or infinite values; check the data '
                'pipeline and normalisation'
            )

    def resolve(self) -> None:
        """Raises if the deferred check of the previous training step found a bad input."""
        if self._pending is None:
            return
        finite, event = self._pending
        self._pending = None
        if event is not None:
            event.synchronize()
        if not finite:
            raise ValueError(
                'SGFormer input of the previous training step contained NaN or '
                'infinite values (on CUDA this is checked one step late so as not '
                'to stall the GPU); check the data pipeline and normalisation'
            )

    def __deepcopy__(self, memo: dict) -> 'FiniteInputCheck':
        return FiniteInputCheck()  # copies (e.g. EMA models) start without a pending check

    def __getstate__(self) -> dict:
        return {'_pending': None}
