"""Language models (issue 23, items 1-3 and 8): token data, causal_lm, Hugging Face folders.

Every model here is a 2-layer GPT-2 built from ``GPT2Config`` with random weights: nothing
is downloaded. The truth is ``transformers``' own loss: ``model(input_ids,
attention_mask=..., labels=...).loss`` batch by batch, token-weighted over the split.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
#: On one pytest-xdist worker with test_tokens.py: the first model built from transformers' code imports its
#: modelling stack, ~3.5 s of CPU that each worker running one of these tests paid again.
pytestmark = pytest.mark.xdist_group("transformers")

from conftest import write_spec  # noqa: E402
from landscape_job import api as ls  # noqa: E402
from landscape_job.base.errors import UserError  # noqa: E402
from landscape_job.checks.preflight import check_inputs  # noqa: E402
from landscape_job.cli import main as pod  # noqa: E402
from landscape_job.models.hf import load_hf  # noqa: E402
from landscape_job.spec.localize import localize  # noqa: E402
from landscape_job.spec.parse import load_spec  # noqa: E402
from landscape_job.surface.centre import build_centre_model  # noqa: E402
from launcher.cli import main as launcher  # noqa: E402
from launcher.local.runner import open_run  # noqa: E402

VOCAB, POSITIONS = 256, 64
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _language_metrics_forgotten():
    """A token task's spec registers perplexity and token_accuracy in its process (a pod runs one
    spec); forgotten after each test, so the other tests see the registry as every other run does."""
    yield
    from landscape_job.spec import metrics

    for metric in metrics.LANGUAGE_METRICS:
        metrics.unregister(metric.key)


def gpt2(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=POSITIONS,
                                     bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(config).eval()


def padded_tokens(n: int = 13, length: int = 20, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random ids with right padding of different lengths (some rows unpadded)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (n, length), generator=g)
    lengths = torch.randint(3, length + 1, (n,), generator=g)
    lengths[0] = length
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    return {"input_ids": ids.masked_fill(mask == 0, 0), "attention_mask": mask}


def transformers_loss(model: torch.nn.Module, data: dict[str, torch.Tensor], batch: int) -> float:
    """transformers' causal-LM loss over the whole data, token-weighted from its per-batch means."""
    total, tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(data["input_ids"]), batch):
            ids = data["input_ids"][start:start + batch]
            mask = data["attention_mask"][start:start + batch]
            labels = ids.masked_fill(mask == 0, -100)
            n = int((labels[:, 1:] != -100).sum())
            total += float(model(input_ids=ids, attention_mask=mask, labels=labels).loss) * n
            tokens += n
    return total / tokens


def token_accuracy(model: torch.nn.Module, data: dict[str, torch.Tensor]) -> float:
    with torch.no_grad():
        logits = model(**data).logits
    labels = data["input_ids"].masked_fill(data["attention_mask"] == 0, -100)[:, 1:]
    keep = labels != -100
    return 100.0 * float((logits[:, :-1].argmax(-1)[keep] == labels[keep]).double().mean())


def centre(landscape, name: str) -> float:
    values = landscape[name]
    return float(values[len(values) // 2])


@pytest.mark.slow
def test_causal_lm_loss_is_transformers_loss_over_padded_batches() -> None:
    model, data = gpt2(), padded_tokens()
    curve = ls.line(model, data, x="-1:1:3", task="causal_lm", batch_size=5, progress=False)
    expected = transformers_loss(model, data, batch=4)  # other batches than ours: the mean is token-weighted
    assert abs(centre(curve, "train_loss") - expected) < 1e-6
    assert centre(curve, "train_perplexity") == pytest.approx(math.exp(centre(curve, "train_loss")), rel=1e-12)
    assert centre(curve, "train_token_acc") == pytest.approx(token_accuracy(model, data), abs=1e-9)
    # The batch size does not move the mean (sums over tokens, one division).
    whole = ls.line(model, data, x="-1:1:3", task="causal_lm", batch_size=13, progress=False)
    assert abs(centre(whole, "train_loss") - centre(curve, "train_loss")) < 1e-6


@pytest.mark.slow
def test_the_api_takes_ids_dicts_and_a_hugging_face_dataloader() -> None:
    model = gpt2()
    ids = torch.randint(0, VOCAB, (8, 16), generator=torch.Generator().manual_seed(2))
    from_ids = ls.line(model, ids, x="-1:1:3", task="causal_lm", progress=False)
    expected = transformers_loss(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, batch=8)
    assert abs(centre(from_ids, "train_loss") - expected) < 1e-6
    data = padded_tokens(n=10, length=12)
    lengths = data["attention_mask"].sum(1).tolist()
    rows = [{"input_ids": data["input_ids"][i, :n]} for i, n in enumerate(lengths)]

    def collate(batch):  # as a Hugging Face collator: each batch padded to its own longest row
        width = max(len(r["input_ids"]) for r in batch)
        ids = torch.stack([torch.nn.functional.pad(r["input_ids"], (0, width - len(r["input_ids"]))) for r in batch])
        mask = torch.stack([(torch.arange(width) < len(r["input_ids"])).long() for r in batch])
        return {"input_ids": ids, "attention_mask": mask}

    # A shuffling loader (read in order) whose batches have different lengths.
    loader = torch.utils.data.DataLoader(rows, batch_size=3, shuffle=True, collate_fn=collate)
    from_loader = ls.line(model, {"train": loader, "test": data}, x="-1:1:3", task="causal_lm", progress=False)
    np.testing.assert_allclose(from_loader["train_loss"], from_loader["test_loss"], rtol=0, atol=1e-6)
    assert abs(centre(from_loader, "train_loss") - transformers_loss(model, data, batch=10)) < 1e-6


def test_integer_ids_are_refused_without_a_language_model_task() -> None:
    ids = torch.randint(0, VOCAB, (8, 16))
    for data in (ids, (ids, ids), {"input_ids": ids}):
        with pytest.raises(UserError, match="integer token ids; name the language-model task: task='causal_lm'"):
            ls.line(gpt2(), data, x="-1:1:3", progress=False)


# -- files, the CLI and save_pretrained folders -----------------------------------------


def save_folder(path: Path, model: torch.nn.Module) -> Path:
    model.save_pretrained(path)
    return path


def token_spec(tmp_path: Path, **data) -> dict:
    return {"name": "lm", "task": "causal_lm", "model": {"hf": "gpt2-tiny"},
            "data": {"dataset": "tokens", "root": "tokens", "splits": ["train"], **data},
            "directions": {"type": "random", "seed": 0}, "grid": {"x": "-1:1:3"},
            "compute": {"batch_size": 4}, "storage": "runs"}


def write_tokens(folder: Path, stream: np.ndarray, name: str = "train.bin") -> None:
    folder.mkdir(exist_ok=True)
    if name.endswith(".bin"):
        stream.astype(np.uint16).tofile(folder / name)
    else:
        np.save(folder / name, stream)


@pytest.mark.slow
def test_a_save_pretrained_folder_with_tied_weights_loads_unchanged_through_the_cli(tmp_path: Path) -> None:
    model = gpt2(3)
    save_folder(tmp_path / "gpt2-tiny", model)
    stream = np.random.default_rng(0).integers(0, VOCAB, 32 * 16 + 5)
    write_tokens(tmp_path / "tokens", stream)
    spec = load_spec(write_spec(tmp_path, token_spec(tmp_path, context=32), "lm.yaml"))
    loaded = build_centre_model(localize(spec))
    assert loaded.lm_head.weight is loaded.transformer.wte.weight  # still tied
    own = model.state_dict()
    assert all(torch.equal(t, own[k]) for k, t in loaded.state_dict().items()) and set(own) == set(loaded.state_dict())
    assert check_inputs(spec) == {"train": 16}
    run = open_run(spec, "lm")
    assert pod(["--run", run.url, "prepare"]) == 0
    assert pod(["--run", run.url, "evaluate", "--shard", "0"]) == 0
    assert pod(["--run", run.url, "merge", "--no-plots"]) == 0
    with h5py.File(tmp_path / "runs" / "lm" / "surface.h5") as f:
        loss, perplexity = f["train_loss"][()], f["train_perplexity"][()]
    ids = torch.from_numpy(stream[:32 * 16].reshape(16, 32).astype(np.int64))
    expected = transformers_loss(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, batch=16)
    assert abs(float(loss[1]) - expected) < 1e-6
    np.testing.assert_allclose(perplexity, np.exp(loss), rtol=1e-12)


@pytest.mark.slow
def test_the_api_loads_the_folder_unchanged_too(tmp_path: Path) -> None:
    model = gpt2(4)
    folder = save_folder(tmp_path / "gpt2-tiny", model)
    again = transformers.AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    ids = torch.randint(0, VOCAB, (6, 16), generator=torch.Generator().manual_seed(5))
    a = ls.line(model, ids, x="-1:1:3", task="causal_lm", progress=False)
    b = ls.line(again, ids, x="-1:1:3", task="causal_lm", progress=False)
    np.testing.assert_array_equal(a["train_loss"], b["train_loss"])


def test_a_plain_safetensors_checkpoint_with_one_copy_of_a_tied_tensor_loads(tmp_path: Path) -> None:
    from safetensors.torch import save_model

    from landscape_job.models.checkpoints import load_into, load_state_dict, tied_aliases

    model, other = gpt2(5), gpt2(6)
    save_model(model, str(tmp_path / "weights.safetensors"))  # stores the tied tensor once
    assert tied_aliases(other) == {"lm_head.weight": "transformer.wte.weight"}
    load_into(other, load_state_dict(tmp_path / "weights.safetensors"), "weights.safetensors")
    assert all(torch.equal(t, model.state_dict()[k]) for k, t in other.state_dict().items())
    assert other.lm_head.weight is other.transformer.wte.weight
    untied = {k: v.clone() for k, v in model.state_dict().items()}
    untied["lm_head.weight"] += 1.0
    with pytest.raises(UserError, match="tied tensor in the model but differ"):
        load_into(gpt2(7), untied, "untied.pt")


@pytest.mark.parametrize("case, message", [
    ("big_id", "token id 256, but the model.s vocabulary has 256"),
    ("long_context", "data.context: sequences of 80 tokens, but the model takes at most 64"),
    ("empty", "holds 10 tokens, fewer than data.context"),
])
def test_bad_token_data_is_one_line_before_any_compute(tmp_path: Path, case: str, message: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    save_folder(tmp_path / "gpt2-tiny", gpt2())
    stream = np.random.default_rng(0).integers(0, VOCAB, 400)
    context = 32
    if case == "big_id":
        stream[123] = VOCAB  # the first id past the vocabulary
    elif case == "long_context":
        context = 80
    else:
        stream = stream[:10]
    write_tokens(tmp_path / "tokens", stream)
    spec = load_spec(write_spec(tmp_path, token_spec(tmp_path, context=context), "lm.yaml"))
    forwards = []
    monkeypatch.setattr(transformers.GPT2LMHeadModel, "forward",
                        lambda self, *a, **k: forwards.append(1) or pytest.fail("a forward pass ran"))
    with pytest.raises(UserError, match=message) as err:
        check_inputs(spec)
    assert "\n" not in str(err.value) and not forwards


# -- model.hf folders: what is refused, sharded weights, no key/value cache ----------------


def refusable_folder(tmp_path: Path, case: str) -> Path:
    """A GPT-2 folder that must not load: its config asks to run the folder's own code
    (auto_map, with a module that would leave a mark if it ran), or its weights are a pickle."""
    model, folder = gpt2(), tmp_path / "gpt2-tiny"
    if case == "auto_map":
        save_folder(folder, model)
        config = json.loads((folder / "config.json").read_text())
        config["auto_map"] = {"AutoConfig": "modeling_tiny.TinyConfig", "AutoModelForCausalLM": "modeling_tiny.Tiny"}
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "modeling_tiny.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    else:
        folder.mkdir()
        model.config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


@pytest.mark.parametrize("case, message", [
    ("auto_map", r"model\.hf: .*gpt2-tiny/config\.json asks to run the folder's own Python code \(auto_map\); set "
                 r"model\.trust_remote_code: true only if you trust it"),
    ("pickle", r"model\.hf: no model\.safetensors \(or its sharded index\) in .*gpt2-tiny; its pytorch_model\.bin "
               r"is a pickle: re-save with save_pretrained\(safe_serialization=True\)"),
])
def test_a_folder_that_would_run_code_is_refused_in_one_line_before_it_runs(
        tmp_path: Path, case: str, message: str, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Code shipped with a folder (config.json's auto_map) without model.trust_remote_code, and a
    pickled pytorch_model.bin (unpickling runs code), are one line, exit 2, neither executed."""
    folder = refusable_folder(tmp_path, case)
    write_tokens(tmp_path / "tokens", np.random.default_rng(0).integers(0, VOCAB, 64))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("a pickle was read"))
    assert launcher(["validate", str(write_spec(tmp_path, token_spec(tmp_path, context=16), "lm.yaml"))]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("launcher: error:")]
    assert len(errors) == 1 and re.search(message, errors[0]), errors
    with pytest.raises(UserError, match=message):
        load_hf(str(folder), "causal_lm")
    assert not (tmp_path / "ran").exists()


def test_sharded_safetensors_load_bit_for_bit_as_one_file(tmp_path: Path) -> None:
    """save_pretrained(max_shard_size=...) writes model.safetensors.index.json and its shards: the
    spec's model.hf loads the same tensors as the one-file folder, the tied head still tied."""
    model = gpt2(12)
    save_folder(tmp_path / "whole", model)
    model.save_pretrained(tmp_path / "gpt2-tiny", max_shard_size="20KB")
    shards = sorted((tmp_path / "gpt2-tiny").glob("*.safetensors"))
    assert len(shards) > 2 and (tmp_path / "gpt2-tiny" / "model.safetensors.index.json").is_file()
    assert not (tmp_path / "gpt2-tiny" / "model.safetensors").exists()
    write_tokens(tmp_path / "tokens", np.random.default_rng(0).integers(0, VOCAB, 64))
    sharded = build_centre_model(localize(load_spec(write_spec(tmp_path, token_spec(tmp_path, context=16), "lm.yaml"))))
    whole = load_hf(str(tmp_path / "whole"), "causal_lm").state_dict()
    assert set(sharded.state_dict()) == set(whole) == set(model.state_dict())
    for name, tensor in sharded.state_dict().items():
        assert tensor.dtype == whole[name].dtype and torch.equal(tensor, whole[name])
        assert torch.equal(tensor, model.state_dict()[name])
    assert sharded.lm_head.weight is sharded.transformer.wte.weight


def test_a_hugging_face_model_evaluates_without_a_key_value_cache(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """use_cache is off in the loaded folder and in every forward pass of a grid, even for a
    transformers model inside the user's own module; the caller's model keeps its config."""
    folder = save_folder(tmp_path / "gpt2-tiny", gpt2(13))
    assert json.loads((folder / "config.json").read_text())["use_cache"] is True
    assert load_hf(str(folder), "causal_lm").config.use_cache is False
    seen = []
    forward = transformers.GPT2LMHeadModel.forward
    monkeypatch.setattr(transformers.GPT2LMHeadModel, "forward",
                        lambda self, *a, **k: seen.append(self.config.use_cache) or forward(self, *a, **k))

    class Wrapped(torch.nn.Module):  # no config of its own: the cache is its inner model's
        def __init__(self, lm: torch.nn.Module) -> None:
            super().__init__()
            self.lm = lm

        def forward(self, input_ids, attention_mask=None):
            return self.lm(input_ids=input_ids, attention_mask=attention_mask).logits

    lm = gpt2(13)
    ids = torch.randint(0, VOCAB, (4, 16), generator=torch.Generator().manual_seed(7))
    ls.line(Wrapped(lm), ids, x="-1:1:3", task="causal_lm", progress=False)
    assert seen[-3:] == [False] * 3  # the grid's three points (the check pass before them may keep it: 2 rows)
    assert lm.config.use_cache is True


# -- the example ---------------------------------------------------------------------------


@pytest.mark.slow
def test_the_tiny_lm_example_runs_and_its_plane_passes_through_the_fine_tunes(tmp_path: Path) -> None:
    import importlib.util

    module_spec = importlib.util.spec_from_file_location("tiny_lm", ROOT / "examples" / "tiny_lm.py")
    example = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(example)
    results = example.main(tmp_path / "lm", steps=4, points=5, progress=False)
    plane, curve, models = results["plane"], results["interpolation"], results["models"]
    assert plane["train_loss"].shape == (5, 5) and curve["test_loss"].shape == (5,)
    # x = θ_arith − θ_base, so the point (1, 0) is the arithmetic fine-tune (Z[j, i] = f(x[i], y[j])).
    at_arith = float(plane["train_loss"][list(plane.y).index(0.0), list(plane.x).index(1.0)])
    ids = results["data"]["train"]
    expected = transformers_loss(models["arith"], {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, 64)
    assert abs(at_arith - expected) < 1e-4  # θ* + 1·(θ_arith − θ*) in float32 is θ_arith to rounding
    assert (tmp_path / "lm" / "train_loss_2d_contour.png").stat().st_size > 1000
    for name in ("base", "arith", "weather"):
        assert (tmp_path / "lm" / name / "model.safetensors").is_file()
    # The CLI spec beside it reads the same folders and token files.
    text = (ROOT / "examples" / "tiny-lm.yaml").read_text().replace("tiny-lm/", str(tmp_path / "lm") + "/")
    spec = load_spec(write_spec(tmp_path, __import__("yaml").safe_load(text), "tiny-lm.yaml"))
    assert check_inputs(spec) == {"train": 32, "test": 32}


def test_an_interpolation_between_tied_models_reaches_the_target() -> None:
    """interpolate moves states (state_dict): the tied lm_head/wte tensor must move once, not twice."""
    base, target = gpt2(8), gpt2(9)
    ids = torch.randint(0, VOCAB, (6, 16), generator=torch.Generator().manual_seed(3))
    curve = ls.interpolate(base, target, ids, x="0:1:2", task="causal_lm", progress=False)
    expected = transformers_loss(target, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, batch=6)
    assert abs(float(curve["train_loss"][1]) - expected) < 1e-5


def bert(seed: int, **config) -> transformers.BertConfig:
    torch.manual_seed(seed)
    return transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=64, max_position_embeddings=POSITIONS, **config)


def test_masked_lm_scores_the_labelled_positions_as_transformers_does() -> None:
    model = transformers.BertForMaskedLM(bert(10)).eval()
    data = padded_tokens(n=9, length=16, seed=4)
    chosen = (torch.rand(data["input_ids"].shape, generator=torch.Generator().manual_seed(5)) < 0.3)
    chosen &= data["attention_mask"] == 1
    labels = data["input_ids"].masked_fill(~chosen, -100)
    masked = {**data, "input_ids": data["input_ids"].masked_fill(chosen, 4), "labels": labels}
    curve = ls.line(model, masked, x="-1:1:3", task="masked_lm", batch_size=9, progress=False)
    with torch.no_grad():
        expected = float(model(**masked).loss)
    assert abs(centre(curve, "train_loss") - expected) < 1e-6
    assert centre(curve, "train_perplexity") == pytest.approx(math.exp(expected), rel=1e-6)


@pytest.mark.slow
def test_sequence_classification_is_one_label_per_sequence() -> None:
    model = transformers.BertForSequenceClassification(bert(11, num_labels=3)).eval()
    data = padded_tokens(n=10, length=12, seed=6)
    labels = torch.arange(10) % 3
    curve = ls.line(model, {**data, "labels": labels}, x="-1:1:3", task="sequence_classification", batch_size=4,
                    progress=False)
    with torch.no_grad():
        output = model(**data, labels=labels)
    assert abs(centre(curve, "train_loss") - float(output.loss)) < 1e-6
    assert centre(curve, "train_acc") == pytest.approx(100.0 * float((output.logits.argmax(1) == labels).double().mean()))
