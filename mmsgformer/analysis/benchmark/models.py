"""The models a benchmark run times: :class:`Entry` (a model and its step functions), built by
:func:`build_entries`, and what each row is compared with (:func:`baseline_names`)."""

from __future__ import annotations

import copy
import importlib
import os
import os.path as osp
import sys
import types
from typing import List, Optional, Tuple

import torch

from ...utils.config import load_config
from ..baselines import (
    BASELINES,
    DEFAULT_MODELS,
    SGFORMER,
    build_backbone,
    build_from_config,
    is_sgformer,
    supports_cp,
    whole_model_fns,
)
from .options import BenchmarkOptions

COMPILED = '+compile'
"""Name suffix of the compiled twins of ``compile_vs_eager``."""

OFFICIAL_MODELS = dict(official_sgformer_s='s', official_sgformer_m='m', official_sgformer_b='b')
"""Model names built from the official implementation (``official``), with their arch."""

CHECKOUT = 'checkout_'
"""Name prefix of the SG-Formers built from another checkout of this project (``checkout``):
``checkout_sgformer_s`` is that checkout's ``sgformer_s`` (custom archs likewise)."""

CHECKOUT_PACKAGE = 'mmsgformer_checkout'
"""The module name the other checkout's package is imported under."""


def compile_fn(fn, options: BenchmarkOptions):
    """``torch.compile`` with the options' backend and mode, static shapes."""
    return torch.compile(
        fn, dynamic=False, backend=options.compile_backend, mode=options.compile_mode
    )


class Entry:
    """One benchmarked model: its module and the per-mode step functions.

    Args:
        name: A backbone name (``baselines``, ``options.custom_archs``, :data:`OFFICIAL_MODELS`)
            or, with ``model``, the name of a whole model.
        options: The run's options.
        model: A whole model (``task`` given); None builds the backbone ``name``.
        task: ``'det'``, ``'seg'`` or ``'cls'`` for a whole model.
    """

    def __init__(
        self, name: str, options: BenchmarkOptions, model=None, task: Optional[str] = None
    ) -> None:
        self.eager_name = name  # the model's name (without COMPILED for a compiled twin)
        self.name = name
        self.task = task
        self.options = options
        if model is None:
            with_cp = (
                options.with_cp == 'all'
                or options.with_cp == 'sgformer'
                and is_sgformer(name.removeprefix(CHECKOUT), options.custom_archs)
            )
            if name in OFFICIAL_MODELS:
                model, with_cp = build_official(name, options.official), False
            elif name.startswith(CHECKOUT):
                model = build_from_checkout(name, options, with_cp)
            else:
                model = build_backbone(name, options.custom_archs, with_cp=with_cp)
            self.with_cp = with_cp and supports_cp(name)
        else:
            self.with_cp = False
        self.model = model.to(options.device)
        self.compiled = compile_fn(self.model, options) if options.compile else None

    def compiled_twin(self) -> 'Entry':
        """The same model (shared weights) timed through ``torch.compile``."""
        twin = copy.copy(self)
        twin.name = self.name + COMPILED
        twin.compiled = compile_fn(self.model, self.options)
        return twin

    def callables(self, batch: int, hw: Tuple[int, int]):
        """``(infer, loss)`` of an input batch."""
        if self.task is None:
            fn = self.model if self.compiled is None else self.compiled

            def loss(x):
                return sum(o.float().sum() for o in fn(x))

            return fn, loss
        infer, loss = whole_model_fns(self.model, self.task, batch, hw)
        if self.compiled is not None:  # compile the network inside (backbone etc. stay eager)
            infer, loss = compile_fn(infer, self.options), compile_fn(loss, self.options)
        return infer, loss


class OfficialFeatures(torch.nn.Module):
    """The official SG-Former without its classifier: returns ``(pooled features,)``.

    Its ``forward_features`` runs every stage with the stage norms (as our backbone does) and
    pools the last one; the classifier is an identity (``num_classes=0``).

    Args:
        net: The official model.
    """

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        return (self.net.forward_features(x),)


def build_official(name: str, folder: Optional[str]) -> torch.nn.Module:
    """The official implementation's model ``name`` (see ``OFFICIAL_MODELS``), randomly
    initialised, imported from ``folder`` by :func:`mmsgformer.testing.reference.import_official`
    (nothing of it is part of this project; it is only timed next to ours)."""
    if not folder:
        raise ValueError(
            f'{name} is the official implementation: pass --official PATH, a folder '
            f'with the official sgformer.py and pos_embed.py (a clone of '
            f'github.com/OliverRensu/SG-Former)'
        )
    from mmsgformer.testing.reference import build_official as build
    from mmsgformer.testing.reference import import_official

    return OfficialFeatures(build(import_official(folder), OFFICIAL_MODELS[name], num_classes=0))


def import_checkout(folder: str) -> types.ModuleType:
    """``mmsgformer.models`` of another checkout of this project (``folder`` holds its
    ``mmsgformer`` package, e.g. ``git worktree add /tmp/old REV``), imported as
    ``mmsgformer_checkout.models`` beside ours (once per process).

    Its package ``__init__`` is not run and its registry is replaced by one that registers
    nothing: its classes keep our names, which MMEngine's registries hold already, and are only
    built directly here. Everything else (its models, layers, utils) is that checkout's code.
    """
    if CHECKOUT_PACKAGE + '.models' in sys.modules:
        return sys.modules[CHECKOUT_PACKAGE + '.models']
    package_dir = osp.join(folder, 'mmsgformer')
    if not osp.isfile(osp.join(package_dir, 'models', 'sgformer.py')):
        raise FileNotFoundError(
            f'{package_dir}/models/sgformer.py not found; pass the root of a checkout of this '
            f'project (e.g. made by git worktree add)'
        )
    package = types.ModuleType(CHECKOUT_PACKAGE)
    package.__path__ = [package_dir]
    registry = types.ModuleType(CHECKOUT_PACKAGE + '.registry')
    registry.MODELS = None
    registry.register_in_root = lambda _registry: lambda cls: cls
    sys.modules[CHECKOUT_PACKAGE] = package
    sys.modules[registry.__name__] = registry
    return importlib.import_module(CHECKOUT_PACKAGE + '.models')


def build_from_checkout(name: str, options: BenchmarkOptions, with_cp: bool) -> torch.nn.Module:
    """The SG-Former ``name`` (:data:`CHECKOUT` + an SG-Former name) of the checkout
    ``options.checkout`` (see :func:`import_checkout`), initialised as ours is."""
    if not options.checkout:
        raise ValueError(f'{name} is built from another checkout: pass --checkout PATH')
    arch_name = name[len(CHECKOUT) :]
    if not is_sgformer(arch_name, options.custom_archs):
        raise ValueError(f'{name}: {arch_name!r} is not an SG-Former name or custom arch')
    arch = SGFORMER.get(arch_name) or copy.deepcopy(options.custom_archs[arch_name])
    models = import_checkout(options.checkout)
    return models.SGFormer(arch=arch, out_indices=(0, 1, 2, 3), with_cp=with_cp)


def build_entries(options: BenchmarkOptions, only: Optional[str] = None) -> List[Entry]:
    """The models to time; ``only`` (a memory subprocess) builds that one eager model."""
    entries = []
    if options.whole_model:
        for config in options.whole_model:
            name = os.path.splitext(os.path.basename(config))[0]
            if only is not None and name != only:
                continue
            model, task = build_from_config(load_config(config, options.cfg_options))
            entries.append(Entry(name, options, model=model, task=task))
    else:
        for name in options.models or DEFAULT_MODELS:
            if only is None or name == only:
                entries.append(Entry(name, options))
    if options.compile_vs_eager and only is None:
        entries = [twin for entry in entries for twin in (entry, entry.compiled_twin())]
    return entries


def baseline_names(name: str, names: List[str]) -> List[str]:
    """What a row is compared with: an SG-Former's baselines (first the same model of another
    checkout where one is timed); a compiled twin's eager model (and, for an SG-Former, the
    compiled baselines)."""
    if name.endswith(COMPILED):
        eager = name[: -len(COMPILED)]
        return [eager] + [b + COMPILED for b in BASELINES.get(eager, []) if b + COMPILED in names]
    candidates = [CHECKOUT + name] + BASELINES.get(name, [])
    return [b for b in candidates if b in names]
