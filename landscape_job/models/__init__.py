"""Building the spec's ``model.arch``: a name -> an untrained ``nn.Module``.

Three kinds of ``model.arch``:

* a built-in zoo name (:func:`available_models`): ``mlp`` and ``cnn`` for the small
  embedded problems, and the paper's CIFAR networks under the names of the paper's own
  ``cifar10/model_loader.py`` (resnet56, resnet56_noshort, vgg9, densenet121, wrn56_4, ...),
  built with the paper's module names so its released checkpoints load unchanged.
  Beyond the listed names, ``resnet<6n+2>[_noshort]`` and ``wrn<6n+2>_<k>[_noshort]`` are
  accepted for any depth and width, as the paper's classes allow;
* ``torchvision:<name>``: any torchvision classification model, untrained;
* ``python:package.module:function``: the user's own factory, called as ``function(**kwargs)``.

The zoo's names are registered by each family's module (``models.registry``); this module
only dispatches. Everything a user can get wrong here raises :class:`UserError` naming ``model.arch`` or
``model.kwargs``, so the launcher can reject a spec before it submits anything.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from torch import nn

from landscape_job.base import pyref
from landscape_job.base.errors import UserError

if TYPE_CHECKING:  # the registry where a model is built: models.outputs (the API's path) needs none
    from landscape_job.models.registry import Builder


__all__ = ["available_models", "build_model"]


def _families() -> None:
    """Imports the zoo's families; each registers its names in models.registry where it is defined.

    On first use, not when the package is imported: ``models.outputs`` and ``models.checkpoints``
    (the Python API's path) need no CIFAR network defined.
    """
    from landscape_job.models import cifar_resnet, densenet, small, vgg, wide_resnet  # noqa: F401


def available_models() -> list[str]:
    """The built-in zoo names, sorted (patterned resnet/wrn variants not enumerated)."""
    from landscape_job.models.registry import listed_names

    _families()
    return listed_names()


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
    if "weights" in kwargs:
        raise UserError("model.kwargs.weights: remove it; pretrained weights are never downloaded; give them as "
                        "model.checkpoint")
    if "num_classes" in kwargs:
        # torchvision's own keyword, as its users write it: welcome when it says what the data says.
        given = kwargs.pop("num_classes")
        if isinstance(given, bool) or not isinstance(given, int) or given != num_classes:
            raise UserError(f"model.kwargs.num_classes: {given!r}, but the data set has {num_classes} classes; "
                            "remove it (it comes from the data set) or set data.classes for your own data")
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
    from landscape_job.models.registry import builder_for

    _families()
    builder = builder_for(arch)
    if builder is None:
        names = available_models()
        close = difflib.get_close_matches(arch, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UserError(f"model.arch: unknown model '{arch}'{hint}; choose one of {', '.join(names)} "
                        "or torchvision:<name> or python:module:function")
    return _build_zoo(arch, builder, num_classes, input_shape, kwargs)
