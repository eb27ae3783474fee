"""Model zoo, registry and checkpoint I/O.

The CIFAR architectures must reproduce the module names and shapes of
github.com/tomgoldstein/loss-landscape (cifar10/models/*.py) so that the paper's released
checkpoints load unchanged and direction files index the same tensors; the key and
count checks below pin that down.
"""

from __future__ import annotations

import textwrap
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from landscape_job.models.checkpoints import load_into, load_state_dict, save_checkpoint
from landscape_job.base.errors import UserError
from landscape_job.models import available_models, build_model

CIFAR = (3, 32, 32)
DIGITS = (1, 8, 8)
# The paper's checkpoints are 10-class; the zoo forward test uses 7 classes so that a
# hard-coded 10 (as in the paper's vgg.py) would be caught.
ODD_CLASSES = 7
# Models above this size (densenet121, wrn56_4/8, the ImageNet-layout resnets) would cost
# seconds each to initialise and run at 32x32 on 2 CPU cores. They are built for CIFAR on
# the meta device, given constant weights instead of a random init, and run on 8x8 inputs:
# their final pooling is global, so the same code path and output shape are exercised.
LIGHT = 5_000_000


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These forwards are tiny: on a shared 2-core runner, OpenMP threads spinning against
    other processes made this file 5x slower (70 s vs 12 s). Restored for other modules."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
    _REUSED.clear()


def is_light(model: nn.Module) -> bool:
    return n_params(model) <= LIGHT


_REUSED: dict[str, nn.Module] = {}


def cifar_model(name: str) -> nn.Module:
    """A zoo model built for CIFAR; densenet121 and resnet110 only once (slow on 2 cores).

    Only those two are kept: holding all of them would pin over a gigabyte for the session.
    """
    if name in _REUSED:
        return _REUSED[name]
    model = _build_for_cifar(name)
    if name in ("densenet121", "resnet110"):
        _REUSED[name] = model
    return model


def _build_for_cifar(name: str) -> nn.Module:
    with torch.device("meta"):
        skeleton = build_model(name, ODD_CLASSES, CIFAR)
    if is_light(skeleton):
        torch.manual_seed(0)
        return build_model(name, ODD_CLASSES, CIFAR).eval()
    model = skeleton.to_empty(device="cpu")
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.fill_(0.01)
    return model.eval()


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# ---------------------------------------------------------------- zoo: build + forward

PAPER_NAMES = ["resnet20", "resnet56", "resnet110", "resnet20_noshort", "resnet56_noshort",
               "resnet110_noshort", "vgg9", "densenet121", "wrn56_2", "wrn56_4", "wrn56_8"]


def test_available_models_is_sorted_and_holds_the_papers_names() -> None:
    names = available_models()
    assert names == sorted(names)
    assert {"mlp", "cnn", *PAPER_NAMES} <= set(names)


@pytest.mark.parametrize("name", available_models())
def test_every_zoo_model_runs_on_cifar_shaped_input(name: str) -> None:
    model = cifar_model(name)
    side = 32 if is_light(model) else 8
    with torch.no_grad():
        out = model(torch.randn(2, 3, side, side))
    assert out.shape == (2, ODD_CLASSES)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("shape", [DIGITS, (1, 28, 28), CIFAR])
def test_small_models_run_on_digits_mnist_and_cifar(name: str, shape: tuple[int, ...]) -> None:
    model = build_model(name, 10, shape).eval()
    with torch.no_grad():
        assert model(torch.randn(2, *shape)).shape == (2, 10)


def test_zoo_models_take_input_channels_from_the_shape() -> None:
    for name in ("resnet20", "vgg9", "wrn56_2"):
        model = build_model(name, 10, DIGITS).eval()
        first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        assert first_conv.in_channels == 1
        with torch.no_grad():
            assert model(torch.randn(2, *DIGITS)).shape == (2, 10)


def test_cnn_has_batchnorm_statistics_beyond_its_parameters() -> None:
    model = build_model("cnn", 10, DIGITS)
    params = {k for k, _ in model.named_parameters()}
    buffers = set(model.state_dict()) - params
    assert any(k.endswith("running_mean") for k in buffers)


def test_mlp_hidden_kwarg() -> None:
    default = build_model("mlp", 10, DIGITS)
    assert [m.out_features for m in default.modules() if isinstance(m, nn.Linear)] == [64, 10]
    assert default.layers[1].in_features == 64
    deep = build_model("mlp", 10, DIGITS, {"hidden": [32, 16]})
    assert [m.out_features for m in deep.modules() if isinstance(m, nn.Linear)] == [32, 16, 10]
    assert [m.out_features for m in build_model("mlp", 3, DIGITS, {"hidden": 5}).modules()
            if isinstance(m, nn.Linear)] == [5, 3]
    with pytest.raises(UserError, match=r"model\.kwargs\.hidden"):
        build_model("mlp", 10, DIGITS, {"hidden": "wide"})


# ---------------------------------------------------------------- the paper's layouts


def test_resnet56_matches_the_papers_resnet_cifar() -> None:
    """The paper's ResNet_cifar uses option-B shortcuts (1x1 conv + BN when the shape changes).

    Count with 10 classes. A full block of width p is two 3x3 convs and two BNs: 18p^2 + 4p.
    stem:   3*16*9 + 2*16                                             =     464
    stage1: 9 * (18*16^2 + 4*16)                                      =  42,048
    stage2: 9 * (18*32^2 + 4*32) - 9*16*32 (conv1 is 16->32) + 16*32 + 2*32 (projection)
                                                                      = 163,008
    stage3: 9 * (18*64^2 + 4*64) - 9*32*64 + 32*64 + 2*64             = 649,600
    linear: 64*10 + 10                                                =     650
    total                                                             = 855,770
    Option A (parameter-free shortcuts) would give 853,018, which is the noshort count.
    """
    model = build_model("resnet56", 10, CIFAR)
    assert n_params(model) == 855_770
    assert n_params(build_model("resnet56_noshort", 10, CIFAR)) == 853_018
    s = shapes(model)
    assert s["conv1.weight"] == (16, 3, 3, 3)
    assert s["bn1.running_mean"] == (16,)
    assert s["layer1.0.conv1.weight"] == (16, 16, 3, 3)
    assert s["layer2.0.conv1.weight"] == (32, 16, 3, 3)
    assert s["layer2.0.shortcut.0.weight"] == (32, 16, 1, 1)
    assert s["layer2.0.shortcut.1.running_var"] == (32,)
    assert s["layer3.0.shortcut.0.weight"] == (64, 32, 1, 1)
    assert s["layer3.8.bn2.num_batches_tracked"] == ()
    assert s["linear.weight"] == (10, 64) and s["linear.bias"] == (10,)
    assert "layer1.0.shortcut.0.weight" not in s  # identity shortcut: empty Sequential
    assert "layer3.9.conv1.weight" not in s
    # parameters() order is the direction file's order: registration order of the paper.
    names = [k for k, _ in model.named_parameters()]
    assert names[:6] == ["conv1.weight", "bn1.weight", "bn1.bias", "layer1.0.conv1.weight",
                         "layer1.0.bn1.weight", "layer1.0.bn1.bias"]
    assert names[-2:] == ["linear.weight", "linear.bias"]
    first = names.index("layer2.0.conv1.weight")
    assert names[first:first + 9] == [
        "layer2.0.conv1.weight", "layer2.0.bn1.weight", "layer2.0.bn1.bias", "layer2.0.conv2.weight",
        "layer2.0.bn2.weight", "layer2.0.bn2.bias", "layer2.0.shortcut.0.weight",
        "layer2.0.shortcut.1.weight", "layer2.0.shortcut.1.bias"]
    assert [k for k in model.state_dict() if k in dict(model.named_parameters())] == names


def test_resnet110_depth() -> None:
    s = shapes(cifar_model("resnet110"))
    assert "layer3.17.conv2.weight" in s and "layer3.18.conv1.weight" not in s


def test_vgg9_matches_the_papers_vgg() -> None:
    model = build_model("vgg9", 10, CIFAR)
    assert n_params(model) == 2_789_706
    s = shapes(model)
    assert s["features.0.weight"] == (64, 3, 3, 3) and s["features.0.bias"] == (64,)
    assert s["features.1.running_mean"] == (64,)
    assert s["features.7.weight"] == (128, 64, 3, 3)  # index 6 is the first max pool
    assert s["features.20.weight"] == (256, 256, 3, 3)  # last conv; 23 is the last pool
    assert "features.21.weight" in s and "features.22.weight" not in s
    assert s["fc.0.weight"] == (256, 256 * 4 * 4)
    assert s["fc.1.running_var"] == (256,)
    assert s["classifier.weight"] == (10, 256)


def test_densenet121_matches_the_papers_densenet() -> None:
    model = cifar_model("densenet121")
    s = shapes(model)
    assert s["conv1.weight"] == (64, 3, 3, 3)
    assert s["dense1.0.bn1.running_mean"] == (64,)
    assert s["dense1.0.conv1.weight"] == (128, 64, 1, 1)
    assert s["dense1.0.conv2.weight"] == (32, 128, 3, 3)
    assert s["dense1.5.bn1.weight"] == (64 + 5 * 32,)
    assert s["trans1.conv.weight"] == (128, 256, 1, 1)
    assert s["trans3.conv.weight"] == (512, 1024, 1, 1)
    assert s["dense4.15.conv2.weight"] == (32, 128, 3, 3)
    assert s["bn.weight"] == (1024,)
    assert s["linear.weight"] == (ODD_CLASSES, 1024)
    assert n_params(model) == 6_956_298 - 3 * 1025  # 6,956,298 with 10 classes
    names = [k for k, _ in model.named_parameters()]
    assert names[:3] == ["conv1.weight", "dense1.0.bn1.weight", "dense1.0.bn1.bias"]
    assert names.index("trans1.bn.weight") < names.index("dense2.0.bn1.weight")


def test_wide_resnets_are_resnet_cifar_k_times_wider() -> None:
    s = shapes(build_model("wrn56_2", 10, CIFAR))
    assert s["conv1.weight"] == (32, 3, 3, 3)
    assert s["layer1.0.conv1.weight"] == (32, 32, 3, 3)
    assert "layer1.0.shortcut.0.weight" not in s
    assert s["layer2.0.shortcut.0.weight"] == (64, 32, 1, 1)
    assert s["linear.weight"] == (10, 128)
    assert shapes(build_model("wrn20_1", 10, CIFAR)) == shapes(build_model("resnet20", 10, CIFAR))
    assert shapes(build_model("wrn14_3_noshort", 10, CIFAR))["layer3.1.conv2.weight"] == (192, 192, 3, 3)


def test_noshort_has_the_same_keys_minus_shortcuts_and_computes_something_else() -> None:
    torch.manual_seed(0)
    short = build_model("resnet20", 10, CIFAR).eval()
    noshort = build_model("resnet20_noshort", 10, CIFAR).eval()
    shortcut_keys = [k for k in short.state_dict() if ".shortcut." in k]
    assert shortcut_keys  # layer2.0 and layer3.0 project
    kept = OrderedDict((k, v) for k, v in short.state_dict().items() if ".shortcut." not in k)
    assert list(noshort.state_dict()) == list(kept)
    assert [k for k, _ in noshort.named_parameters()] == [
        k for k, _ in short.named_parameters() if ".shortcut." not in k]
    load_into(noshort, kept, "resnet20.pt")
    x = torch.randn(2, *CIFAR)
    with torch.no_grad():
        assert not torch.allclose(short(x), noshort(x), atol=1e-4)


def test_imagenet_layout_resnets_of_the_paper() -> None:
    s = shapes(build_model("resnet18", 10, CIFAR))
    assert s["conv1.weight"] == (64, 3, 3, 3)
    assert s["layer4.1.conv2.weight"] == (512, 512, 3, 3)
    assert s["linear.weight"] == (10, 512)
    assert s["layer2.0.shortcut.0.weight"] == (128, 64, 1, 1)


def test_patterned_depths_and_bad_depths() -> None:
    assert "layer1.4.conv1.weight" in build_model("resnet32", 10, CIFAR).state_dict()
    with pytest.raises(UserError, match=r"model\.arch: 'resnet21'.*6n\+2"):
        build_model("resnet21", 10, CIFAR)


# ---------------------------------------------------------------- registry errors


def test_unknown_zoo_name() -> None:
    with pytest.raises(UserError) as e:
        build_model("xyz", 10, CIFAR)
    msg = str(e.value)
    assert msg.startswith("model.arch: unknown model 'xyz'")
    assert "resnet56" in msg and "torchvision:<name>" in msg and "python:module:function" in msg
    assert "\n" not in msg


def test_unknown_zoo_name_suggests_a_close_one() -> None:
    with pytest.raises(UserError, match=r"did you mean densenet121"):
        build_model("densnet121", 10, CIFAR)


def test_bad_kwargs_name_model_kwargs() -> None:
    with pytest.raises(UserError, match=r"^model\.kwargs: .*'resnet56'.*foo"):
        build_model("resnet56", 10, CIFAR, {"foo": 1})
    with pytest.raises(UserError, match=r"^model\.kwargs: .*accepts: hidden"):
        build_model("mlp", 10, DIGITS, {"width": 3})


def test_conv_zoo_model_on_flat_samples_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"model\.arch: 'resnet20' takes images"):
        build_model("resnet20", 10, (64,))


def test_torchvision_models() -> None:
    model = build_model("torchvision:resnet18", 10, CIFAR).eval()
    assert model.fc.out_features == 10
    with torch.no_grad():
        assert model(torch.randn(1, *CIFAR)).shape == (1, 10)
    with pytest.raises(UserError, match=r"model\.arch: unknown torchvision model 'nope'.*list_models"):
        build_model("torchvision:nope", 10, CIFAR)
    with pytest.raises(UserError, match=r"model\.kwargs\.weights"):
        build_model("torchvision:resnet18", 10, CIFAR, {"weights": "DEFAULT"})
    with pytest.raises(UserError, match=r"^model\.kwargs: torchvision:resnet18"):
        build_model("torchvision:resnet18", 10, CIFAR, {"no_such_option": 1})


def _write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> None:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))


def test_python_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_module(tmp_path, monkeypatch, "lsj_user_models_ok", """
        import torch.nn as nn
        def tiny(width=4, classes=3):
            return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, classes))
        def broken():
            raise RuntimeError("the factory is on fire")
        def not_a_model():
            return 42
        """)
    model = build_model("python:lsj_user_models_ok:tiny", 10, DIGITS, {"width": 5})
    assert model[1].out_features == 5
    with pytest.raises(UserError, match=r"^model\.arch: .*RuntimeError: the factory is on fire"):
        build_model("python:lsj_user_models_ok:broken", 10, DIGITS)
    with pytest.raises(UserError, match=r"^model\.arch: .*returned int, not a torch\.nn\.Module"):
        build_model("python:lsj_user_models_ok:not_a_model", 10, DIGITS)
    with pytest.raises(UserError, match=r"^model\.arch: module 'lsj_user_models_ok' has no function 'nope'"):
        build_model("python:lsj_user_models_ok:nope", 10, DIGITS)
    with pytest.raises(UserError, match=r"^model\.kwargs: .*it accepts: width, classes"):
        build_model("python:lsj_user_models_ok:tiny", 10, DIGITS, {"depth": 2})


def test_python_factory_import_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_module(tmp_path, monkeypatch, "lsj_user_models_bad", "import no_such_dependency_xyz\n")
    with pytest.raises(UserError, match=r"^model\.arch: cannot import 'lsj_user_models_bad'.*no_such_dependency"):
        build_model("python:lsj_user_models_bad:f", 10, DIGITS)
    with pytest.raises(UserError, match=r"^model\.arch: cannot import 'lsj_absent_module'"):
        build_model("python:lsj_absent_module:f", 10, DIGITS)
    with pytest.raises(UserError, match=r"python:package\.module:function"):
        build_model("python:just_a_module", 10, DIGITS)


# ---------------------------------------------------------------- checkpoints


def _trained_like(name: str = "cnn") -> nn.Module:
    """A model whose tensors (BN statistics included) are not at their initial values."""
    torch.manual_seed(1)
    model = build_model(name, 10, DIGITS)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn_like(t).abs() + 0.1)
    return model.eval()


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("layout", ["paper", "bare", "paper+module", "bare+module"])
def test_checkpoint_round_trip(tmp_path: Path, layout: str) -> None:
    model = _trained_like()
    sd = model.state_dict()
    if "module" in layout:
        sd = nn.DataParallel(model).state_dict()  # real DataParallel keys: module.conv1.weight
        assert next(iter(sd)).startswith("module.")
    path = tmp_path / "model.t7"
    torch.save({"state_dict": sd, "epoch": 300, "acc": 93.1} if layout.startswith("paper") else sd, path)
    loaded = load_state_dict(path)
    _assert_same(loaded, model.state_dict())
    fresh = build_model("cnn", 10, DIGITS).eval()
    load_into(fresh, loaded, str(path))
    x = torch.randn(3, *DIGITS)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


def test_save_checkpoint_writes_the_papers_layout(tmp_path: Path) -> None:
    model = _trained_like()
    path = tmp_path / "sub" / "ckpt.pt"
    save_checkpoint(model, path, epoch=7, acc=55.5)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert set(raw) == {"state_dict", "epoch", "acc"} and raw["epoch"] == 7
    _assert_same(load_state_dict(path), model.state_dict())
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]  # no temporary left behind


def test_legacy_serialization_like_the_papers_t7_files(tmp_path: Path) -> None:
    model = build_model("resnet20", 10, CIFAR)
    path = tmp_path / "model_300.t7"
    torch.save({"acc": 92.0, "epoch": 300, "state_dict": model.state_dict()}, path,
               _use_new_zipfile_serialization=False)
    _assert_same(load_state_dict(path), model.state_dict())


class Payload:
    """Unpickling this would create a file: weights-only loading must never run it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (open, (str(self.marker), "w"))


def test_pickled_objects_are_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _trained_like().state_dict(), "extra": Payload(marker)}, path)
    with pytest.raises(UserError) as e:
        load_state_dict(path)
    msg = str(e.value)
    assert str(path) in msg and "weights-only" in msg and "torch.save" in msg
    assert "\n" not in msg and "weights_only=False" not in msg
    assert not marker.exists()


class Config:
    """A harmless custom class: still refused, since loading it means importing code."""

    def __init__(self) -> None:
        self.lr = 0.1


def test_a_custom_class_instance_in_a_dict_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "obj.pt"
    torch.save({"state_dict": {"w": torch.ones(1)}, "cfg": {"run": Config()}}, path)
    with pytest.raises(UserError, match=r"it pickles .*Config"):
        load_state_dict(path)


@pytest.mark.parametrize("content, expected", [
    (b"this is not a checkpoint", r"cannot read checkpoint"),
    (None, r"does not exist"),
])
def test_unreadable_or_missing_files(tmp_path: Path, content: bytes | None, expected: str) -> None:
    path = tmp_path / "x.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match=expected) as e:
        load_state_dict(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("obj, expected", [
    ([torch.ones(2)], r"holds a list, not a state_dict"),
    ({"weights": {"w": torch.ones(1)}, "epoch": 3}, r"none of state_dict, model_state_dict, model"),
    ({"state_dict": {"w": torch.ones(1), "step": 3}}, r"'step'.* not named tensors"),
    ({"state_dict": [1, 2]}, r"'state_dict' is a list"),
    ({}, r"empty"),
])
def test_content_that_is_not_a_state_dict(tmp_path: Path, obj: object, expected: str) -> None:
    path = tmp_path / "x.pt"
    torch.save(obj, path)
    with pytest.raises(UserError, match=expected):
        load_state_dict(path)


def test_mismatch_names_missing_unexpected_and_shapes() -> None:
    model = build_model("cnn", 10, DIGITS)
    sd = OrderedDict(model.state_dict())
    del sd["bn1.running_mean"]
    sd["head.weight"] = torch.zeros(3)
    sd["conv1.weight"] = torch.zeros(8, 1, 3, 3)
    with pytest.raises(UserError) as e:
        load_into(model, sd, "/data/ckpt.pt")
    msg = str(e.value)
    assert msg.startswith("/data/ckpt.pt: ")
    assert "missing keys: bn1.running_mean" in msg
    assert "unexpected keys: head.weight" in msg
    assert "conv1.weight: checkpoint (8, 1, 3, 3) vs model (16, 1, 3, 3)" in msg
    assert "\n" not in msg


def test_mismatch_lists_are_truncated() -> None:
    small = build_model("resnet20", 10, CIFAR).state_dict()
    big = build_model("resnet32", 10, CIFAR)
    n_missing = sum(1 for k in big.state_dict() if k not in small and not k.endswith("num_batches_tracked"))
    with pytest.raises(UserError, match=rf"missing keys: (\S+, ){{4}}\S+ and {n_missing - 5} more"):
        load_into(big, small, "r20.pt")


def test_checkpoint_without_num_batches_tracked_loads() -> None:
    """Checkpoints from PyTorch < 0.4.1 (the paper's era) lack num_batches_tracked."""
    source = _trained_like()
    old = OrderedDict((k, v) for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked"))
    target = build_model("cnn", 10, DIGITS)
    load_into(target, old, "old.t7")
    _assert_same({k: v for k, v in target.state_dict().items() if k in old}, old)


def test_a_model_family_registers_where_it_is_defined(monkeypatch):
    """A family is one register() call in its own module: build_model and available_models follow."""
    import re

    from torch import nn

    from landscape_job.models import registry

    monkeypatch.setattr(registry, "_FAMILIES", dict(registry._FAMILIES))
    built = lambda arch, num_classes, input_shape, width=3: nn.Linear(input_shape[0], width)  # noqa: E731
    registry.register(registry.Family("toy", {"toy": built}, re.compile(r"toy(\d+)"),
                                      lambda m: lambda arch, n, shape: nn.Linear(shape[0], int(m[1]))))
    assert "toy" in available_models()
    assert build_model("toy", 2, (5,), {"width": 4}).out_features == 4
    assert build_model("toy7", 2, (5,)).out_features == 7
    with pytest.raises(ValueError, match="already in family 'toy'"):
        registry.register(registry.Family("copy", {"toy": built}))
