"""Model registry: the spec's ``model.arch`` string -> an ``nn.Module``.

Three kinds of ``model.arch``:

* a built-in zoo name (:func:`available_models`): ``mlp`` and ``cnn`` for the small
  embedded problems, and the paper's CIFAR networks under the names of the paper's own
  ``cifar10/model_loader.py`` (resnet56, resnet56_noshort, vgg9, densenet121, wrn56_4, ...),
  built with the paper's module names so its released checkpoints load unchanged.
  Beyond the listed names, ``resnet<6n+2>[_noshort]`` and ``wrn<6n+2>_<k>[_noshort]`` are
  accepted for any depth and width, as the paper's classes allow;
* ``torchvision:<name>``: any torchvision classification model, untrained;
* ``python:package.module:function``: the user's own factory, called as ``function(**kwargs)``.

Everything a user can get wrong here raises :class:`UserError` naming ``model.arch`` or
``model.kwargs``, so the launcher can reject a spec before it submits anything.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from landscape_job.base import pyref
from landscape_job.base.errors import UserError
from landscape_job.models.cifar_resnet import IMAGENET_LAYOUTS, CifarResNet, ResNet
from landscape_job.models.densenet import CONFIGS as DENSENET_CONFIGS
from landscape_job.models.densenet import DenseNet
from landscape_job.models.small import MLP, SmallCNN, flat_size
from landscape_job.models.vgg import CONFIGS as VGG_CONFIGS
from landscape_job.models.vgg import VGG
from landscape_job.models.wide_resnet import wide_resnet

__all__ = ["available_models", "build_model"]

# A zoo builder is called as builder(arch, num_classes, input_shape, **model.kwargs).
Builder = Callable[..., nn.Module]


def _image_shape(arch: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The zoo's conv nets need (C, H, W) samples; say so instead of failing in forward()."""
    if len(input_shape) != 3:
        raise UserError(f"model.arch: '{arch}' takes images of shape (C, H, W) but the data's samples "
                        f"have shape {tuple(input_shape)}; choose 'mlp' or an image data set")
    c, h, w = input_shape
    return c, h, w


def _mlp(arch: str, num_classes: int, input_shape: tuple[int, ...], hidden: int | list[int] = 64) -> nn.Module:
    widths = [hidden] if isinstance(hidden, int) and not isinstance(hidden, bool) else hidden
    if not isinstance(widths, (list, tuple)) or not all(
            isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in widths):
        raise UserError(f"model.kwargs.hidden: expected a positive integer or a list of them, got {hidden!r}")
    return MLP(flat_size(input_shape), num_classes, hidden=list(widths))


def _cnn(arch: str, num_classes: int, input_shape: tuple[int, ...], channels: Sequence[int] = (16, 32)) -> nn.Module:
    c, _, _ = _image_shape(arch, input_shape)
    if not (isinstance(channels, (list, tuple)) and len(channels) == 2
            and all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in channels)):
        raise UserError(f"model.kwargs.channels: expected two positive integers like [16, 32], got {channels!r}")
    return SmallCNN(c, num_classes, channels=tuple(channels))


def _cifar_resnet(depth: int, width: int, shortcut: bool) -> Builder:
    def build(arch: str, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        c, _, _ = _image_shape(arch, input_shape)
        try:
            if width == 1:
                return CifarResNet(depth, num_classes=num_classes, in_channels=c, shortcut=shortcut)
            return wide_resnet(depth, width, num_classes=num_classes, in_channels=c, shortcut=shortcut)
        except ValueError as e:
            raise UserError(f"model.arch: '{arch}': {e}") from None
    return build


def _imagenet_resnet(depth: int, shortcut: bool) -> Builder:
    def build(arch: str, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        c, _, _ = _image_shape(arch, input_shape)
        return ResNet(depth, num_classes=num_classes, in_channels=c, shortcut=shortcut)
    return build


def _vgg(name: str) -> Builder:
    def build(arch: str, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        c, h, w = _image_shape(arch, input_shape)
        return VGG(VGG_CONFIGS[name], num_classes=num_classes, in_channels=c, spatial=(h, w))
    return build


def _densenet(name: str) -> Builder:
    def build(arch: str, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        c, h, w = _image_shape(arch, input_shape)
        if min(h, w) < 8:
            # Three 2x2 average pools: anything smaller vanishes before the classifier.
            raise UserError(f"model.arch: '{arch}' needs images of at least 8x8, the data's are {h}x{w}")
        nblocks, growth = DENSENET_CONFIGS[name]
        return DenseNet(nblocks, growth_rate=growth, num_classes=num_classes, in_channels=c)
    return build


def _named_zoo() -> dict[str, Builder]:
    """Every listed name; the resnet/wrn names are those of the paper's model_loader.py."""
    zoo: dict[str, Builder] = {"mlp": _mlp, "cnn": _cnn}
    for name in VGG_CONFIGS:
        zoo[name] = _vgg(name)
    for name in DENSENET_CONFIGS:
        zoo[name] = _densenet(name)
    for depth in IMAGENET_LAYOUTS:
        zoo[f"resnet{depth}"] = _imagenet_resnet(depth, True)
        zoo[f"resnet{depth}_noshort"] = _imagenet_resnet(depth, False)
    for depth in (20, 56, 110):
        zoo[f"resnet{depth}"] = _cifar_resnet(depth, 1, True)
    for depth in (20, 32, 44, 56, 110):
        zoo[f"resnet{depth}_noshort"] = _cifar_resnet(depth, 1, False)
    zoo["resnet50_16_noshort"] = _cifar_resnet(50, 1, False)  # CIFAR layout; "16" is its base width
    for k in (2, 4, 8):
        zoo[f"wrn56_{k}"] = _cifar_resnet(56, k, True)
        zoo[f"wrn56_{k}_noshort"] = _cifar_resnet(56, k, False)
    for k in (2, 4):
        zoo[f"wrn110_{k}_noshort"] = _cifar_resnet(110, k, False)
    return zoo


_ZOO = _named_zoo()
_RESNET = re.compile(r"resnet(\d+)(_16)?(_noshort)?")
_WRN = re.compile(r"wrn(\d+)_(\d+)(_noshort)?")


def _zoo_builder(arch: str) -> Builder | None:
    """A listed name, or a resnet/wrn name of a depth and width the paper's classes allow."""
    if arch in _ZOO:
        return _ZOO[arch]
    if m := _RESNET.fullmatch(arch):
        depth, cifar, noshort = int(m[1]), bool(m[2]), bool(m[3])
        if depth in IMAGENET_LAYOUTS and not cifar:
            return _imagenet_resnet(depth, not noshort)
        return _cifar_resnet(depth, 1, not noshort)
    if m := _WRN.fullmatch(arch):
        return _cifar_resnet(int(m[1]), int(m[2]), not m[3])
    return None


def available_models() -> list[str]:
    """The built-in zoo names, sorted (patterned resnet/wrn variants not enumerated)."""
    return sorted(_ZOO)


_one_line = pyref.one_line


def _check_kwargs(fn: Callable[..., Any], what: str, *args: Any, **kwargs: Any) -> None:
    """Bind before calling, so a wrong kwarg is blamed on model.kwargs, not on the factory."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # builtins and C callables: let the call itself complain
    try:
        sig.bind(*args, **kwargs)
    except TypeError as e:
        accepted = [p.name for p in list(sig.parameters.values())[len(args):]
                    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        hint = f"it accepts: {', '.join(accepted)}" if accepted else "it takes none; remove model.kwargs"
        raise UserError(f"model.kwargs: {what} does not accept {sorted(kwargs)} ({e}); {hint}") from None


def _build_zoo(arch: str, builder: Builder, num_classes: int, input_shape: tuple[int, ...],
               kwargs: dict[str, Any]) -> nn.Module:
    _check_kwargs(builder, f"'{arch}'", arch, num_classes, input_shape, **kwargs)
    return builder(arch, num_classes, input_shape, **kwargs)


def _build_torchvision(name: str, num_classes: int, kwargs: dict[str, Any]) -> nn.Module:
    import torchvision

    classification = torchvision.models.list_models(module=torchvision.models)
    if name not in classification:
        if name in torchvision.models.list_models():
            raise UserError(f"model.arch: torchvision model '{name}' is not an image classifier; choose one of "
                            "torchvision.models.list_models(module=torchvision.models)")
        close = difflib.get_close_matches(name, classification, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UserError(f"model.arch: unknown torchvision model '{name}'{hint}; see "
                        "torchvision.models.list_models() for the names")
    for key in ("weights", "num_classes"):
        if key in kwargs:
            why = ("pretrained weights are never downloaded; give them as model.checkpoint"
                   if key == "weights" else "it comes from the data set")
            raise UserError(f"model.kwargs.{key}: remove it; {why}")
    try:
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    except (TypeError, ValueError) as e:
        raise UserError(f"model.kwargs: torchvision:{name} rejected them ({_one_line(e)})") from None


def _build_python(target: str, kwargs: dict[str, Any]) -> nn.Module:
    ref = f"{pyref.PREFIX}{target}"
    module_name, func_name = pyref.split_ref(ref, "model.arch")
    factory = pyref.resolve(ref, "model.arch")
    _check_kwargs(factory, f"{module_name}:{func_name}", **kwargs)
    model = pyref.call(ref, "model.arch", factory, **kwargs)
    if not isinstance(model, nn.Module):
        raise UserError(f"model.arch: python:{target} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def build_model(arch: str, num_classes: int, input_shape: tuple[int, ...],
                kwargs: dict | None = None) -> nn.Module:
    """Build an untrained model for ``model.arch``; the checkpoint is loaded separately.

    ``input_shape`` is one sample's shape (e.g. ``(3, 32, 32)``); zoo models take their
    input channels (and, for vgg, the spatial size feeding ``fc``) from it.
    """
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise UserError(f"model.kwargs: expected a mapping of argument names to values, got {kwargs!r}")
    kwargs = dict(kwargs)
    input_shape = tuple(int(d) for d in input_shape)
    if not isinstance(arch, str) or not arch:
        raise UserError(f"model.arch: expected a model name, got {arch!r}")

    if arch.startswith("torchvision:"):
        return _build_torchvision(arch.split(":", 1)[1], num_classes, kwargs)
    if arch.startswith("python:"):
        return _build_python(arch.split(":", 1)[1], kwargs)
    builder = _zoo_builder(arch)
    if builder is None:
        names = available_models()
        close = difflib.get_close_matches(arch, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UserError(f"model.arch: unknown model '{arch}'{hint}; choose one of {', '.join(names)} "
                        "or torchvision:<name> or python:module:function")
    return _build_zoo(arch, builder, num_classes, input_shape, kwargs)
