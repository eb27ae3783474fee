"""Token data files (``data.dataset: tokens``, landscape_job/datasets/tokens.py): every format gives the
sequences an independent reading of the same tokens gives.

The truth for a flat stream is numpy's own slicing (``stream[:W * T].reshape(W, T)``, the
trailing partial window dropped); for ``data.sequences`` the rows of a seeded ``randperm``
(``data.subset_seed``) kept in file order; for text a word-level tokenizer built here in code
(no download), whose ids are its vocabulary's, looked up word by word.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from landscape_job.datasets.tokens import IGNORE_INDEX, load_token_split
from landscape_job.spec.sections import DataSpec

#: On the worker that runs test_language_models.py (why: its pytestmark): tokenizers and a model from transformers.
pytestmark = pytest.mark.xdist_group("transformers")

CONTEXT = 8
#: A word-level vocabulary: the specials first, [PAD] not at 0 (a pad that fell back to 0 would show).
SPECIALS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
WORDS = "the a cat dog sat on mat ran far away and then slept".split()
VOCAB = {w: i for i, w in enumerate(SPECIALS + WORDS)}


def windows(stream: np.ndarray, context: int = CONTEXT) -> np.ndarray:
    """numpy's slicing of a flat stream into consecutive windows, the partial last one dropped."""
    return stream[: len(stream) // context * context].reshape(-1, context).astype(np.int64)


def seeded_rows(total: int, n: int, seed: int) -> np.ndarray:
    """The rows ``data.sequences: n`` keeps: a seeded permutation's first n, in file order."""
    chosen = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n]
    return np.sort(chosen.numpy())


def spec(root: Path, **data) -> DataSpec:
    return DataSpec(dataset="tokens", root=str(root), splits=("train",), **data)


def stream_of(n: int, high: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, high, n)


def write(root: Path, kind: str, stream: np.ndarray) -> None:
    """The same tokens in one of the file formats."""
    root.mkdir(exist_ok=True)
    if kind == "uint16.bin":
        stream.astype(np.uint16).tofile(root / "train.bin")
    elif kind == "uint32.bin":
        stream.astype(np.uint32).tofile(root / "train.bin")
    elif kind == "flat.npy":
        np.save(root / "train.npy", stream.astype(np.int32))
    elif kind == "rows.npy":
        np.save(root / "train.npy", windows(stream).astype(np.uint16))
    else:
        np.savez(root / "train.npz", input_ids=windows(stream))


# -- ids: .bin, .npy, .npz ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["uint16.bin", "flat.npy", "rows.npy", "npz"])
@pytest.mark.parametrize("sequences, seed", [(None, 0), (5, 3), (5, 4)])
def test_every_id_format_gives_numpys_windows_and_the_seeded_selection(tmp_path: Path, kind: str,
                                                                         sequences: int | None, seed: int) -> None:
    stream = stream_of(CONTEXT * 23 + 5, 65_536)  # the whole uint16 range, and a partial last window
    write(tmp_path, kind, stream)
    split = load_token_split(spec(tmp_path, context=CONTEXT, sequences=sequences, subset_seed=seed), "train",
                             "causal_lm")
    expected = windows(stream)
    if sequences is not None:
        expected = expected[seeded_rows(len(expected), sequences, seed)]
    assert split.inputs.dtype == torch.int64
    np.testing.assert_array_equal(split.inputs.numpy(), expected)
    assert torch.equal(split.attention_mask, torch.ones_like(split.inputs))
    assert torch.equal(split.labels, split.inputs)  # causal_lm without padding: every token scored


def test_a_uint32_bin_is_read_with_the_dtype_option(tmp_path: Path) -> None:
    """Vocabularies above 65,536 (data.options.dtype: uint32): ids past uint16 come back whole."""
    stream = stream_of(CONTEXT * 11 + 3, 200_000, seed=1)
    assert stream.max() > 65_535
    write(tmp_path, "uint32.bin", stream)
    split = load_token_split(spec(tmp_path, context=CONTEXT, sequences=4, subset_seed=2,
                                  options={"dtype": "uint32"}), "train", "causal_lm")
    expected = windows(stream)[seeded_rows(11, 4, 2)]
    np.testing.assert_array_equal(split.inputs.numpy(), expected)


def test_an_npz_keeps_its_mask_and_labels_on_the_selected_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 1000, (12, CONTEXT))
    lengths = rng.integers(2, CONTEXT + 1, 12)
    mask = (np.arange(CONTEXT)[None, :] < lengths[:, None]).astype(np.int8)
    labels = np.where(rng.random((12, CONTEXT)) < 0.3, ids, IGNORE_INDEX)  # the user's own (N, T) labels
    np.savez(tmp_path / "train.npz", input_ids=ids, attention_mask=mask, labels=labels)
    rows = seeded_rows(12, 5, 7)
    split = load_token_split(spec(tmp_path, sequences=5, subset_seed=7), "train", "masked_lm")
    np.testing.assert_array_equal(split.inputs.numpy(), ids[rows])
    np.testing.assert_array_equal(split.attention_mask.numpy(), mask[rows])
    np.testing.assert_array_equal(split.labels.numpy(), labels[rows])  # given labels are kept as given
    # Without labels, causal_lm scores the real tokens of those rows and not their padding.
    np.savez(tmp_path / "train.npz", input_ids=ids, attention_mask=mask)
    split = load_token_split(spec(tmp_path, sequences=5, subset_seed=7), "train", "causal_lm")
    np.testing.assert_array_equal(split.labels.numpy(), np.where(mask[rows] == 1, ids[rows], IGNORE_INDEX))
    # sequence_classification: one class per row, the selected rows' classes.
    classes = np.arange(12) % 3
    np.savez(tmp_path / "train.npz", input_ids=ids, attention_mask=mask, labels=classes)
    split = load_token_split(spec(tmp_path, sequences=5, subset_seed=7), "train", "sequence_classification")
    np.testing.assert_array_equal(split.labels.numpy(), classes[rows])
    assert split.num_classes == 3


# -- text: .txt and .jsonl with the model folder's own tokenizer ----------------------------


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder's tokenizer files, made in code: a word-level vocabulary split on whitespace
    that wraps each encoded text in [CLS] ... [SEP] (as BERT's does)."""
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", VOCAB["[CLS]"]), ("[SEP]", VOCAB["[SEP]"])])
    folder = tmp_path_factory.mktemp("model")
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                            pad_token="[PAD]", mask_token="[MASK]").save_pretrained(folder)
    return folder


def words(n: int, seed: int) -> list[str]:
    return [WORDS[i] for i in np.random.default_rng(seed).integers(0, len(WORDS), n)]


def test_text_is_one_stream_of_the_tokenizers_ids_without_specials(tmp_path: Path, tokenizer_folder: Path) -> None:
    from transformers import AutoTokenizer

    text = words(CONTEXT * 9 + 4, seed=8)
    lines = "\n".join(" ".join(text[i:i + 7]) for i in range(0, len(text), 7)) + "\n"  # a window spans lines
    (tmp_path / "train.txt").write_text(lines, encoding="utf-8")
    stream = np.array([VOCAB[w] for w in text])
    own = AutoTokenizer.from_pretrained(tokenizer_folder)(lines, add_special_tokens=False)["input_ids"]
    assert own == stream.tolist()  # the tokenizer's own encoding is the vocabulary's, word by word
    split = load_token_split(spec(tmp_path, context=CONTEXT), "train", "causal_lm", str(tokenizer_folder))
    np.testing.assert_array_equal(split.inputs.numpy(), windows(stream))
    split = load_token_split(spec(tmp_path, context=CONTEXT, sequences=3, subset_seed=1), "train", "causal_lm",
                             str(tokenizer_folder))
    np.testing.assert_array_equal(split.inputs.numpy(), windows(stream)[seeded_rows(9, 3, 1)])


def test_jsonl_records_are_the_tokenizers_sequences_right_padded(tmp_path: Path, tokenizer_folder: Path) -> None:
    """Each record is one sequence as the tokenizer encodes it (with [CLS] and [SEP]), cut to data.context,
    padded on the right with the tokenizer's [PAD] to the longest kept, with its mask; blank lines skipped."""
    texts = [words(n, seed=n) for n in (3, 10, 1, 5, 2, 6)]  # 10 words: 12 tokens, cut to 8
    records = [json.dumps({"text": " ".join(t), "label": i % 2}) for i, t in enumerate(texts)]
    (tmp_path / "train.jsonl").write_text("\n".join(records[:3]) + "\n\n" + "\n".join(records[3:]) + "\n",
                                          encoding="utf-8")

    def expected(rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
        encoded = [([VOCAB["[CLS]"]] + [VOCAB[w] for w in texts[r]] + [VOCAB["[SEP]"]])[:CONTEXT] for r in rows]
        width = max(len(e) for e in encoded)
        ids = np.array([e + [VOCAB["[PAD]"]] * (width - len(e)) for e in encoded])
        mask = np.array([[1] * len(e) + [0] * (width - len(e)) for e in encoded])
        return ids, mask

    split = load_token_split(spec(tmp_path, context=CONTEXT), "train", "causal_lm", str(tokenizer_folder))
    ids, mask = expected(list(range(6)))
    assert ids.shape == (6, CONTEXT)
    np.testing.assert_array_equal(split.inputs.numpy(), ids)
    np.testing.assert_array_equal(split.attention_mask.numpy(), mask)
    np.testing.assert_array_equal(split.labels.numpy(), np.where(mask == 1, ids, IGNORE_INDEX))
    # A seeded selection of the records, in file order, padded to its own longest; their labels with them.
    rows = seeded_rows(6, 3, 2).tolist()
    split = load_token_split(spec(tmp_path, context=CONTEXT, sequences=3, subset_seed=2), "train",
                             "sequence_classification", str(tokenizer_folder))
    ids, mask = expected(rows)
    np.testing.assert_array_equal(split.inputs.numpy(), ids)
    np.testing.assert_array_equal(split.attention_mask.numpy(), mask)
    np.testing.assert_array_equal(split.labels.numpy(), [r % 2 for r in rows])


def test_masked_lm_masks_a_seeded_share_of_real_tokens_with_the_tokenizers_mask(tmp_path: Path,
                                                                               tokenizer_folder: Path) -> None:
    stream = stream_of(CONTEXT * 40, 1000, seed=9)
    write(tmp_path, "uint16.bin", stream)
    split = load_token_split(spec(tmp_path, context=CONTEXT, subset_seed=6, options={"mask_probability": 0.25}),
                             "train", "masked_lm", str(tokenizer_folder))
    original = windows(stream)
    chosen = (torch.rand(original.shape, generator=torch.Generator().manual_seed(6)) < 0.25).numpy()
    assert 0.15 < chosen.mean() < 0.35
    np.testing.assert_array_equal(split.inputs.numpy(), np.where(chosen, VOCAB["[MASK]"], original))
    np.testing.assert_array_equal(split.labels.numpy(), np.where(chosen, original, IGNORE_INDEX))


def test_a_specs_text_is_tokenized_with_its_model_hf_folders_tokenizer(tmp_path: Path,
                                                                      tokenizer_folder: Path) -> None:
    """Through the spec: model.hf's folder (a GPT-2 saved with the tokenizer beside it) tokenizes train.txt."""
    import shutil

    import transformers

    from conftest import write_spec
    from landscape_job.checks.preflight import check_inputs
    from landscape_job.spec.localize import localize
    from landscape_job.spec.parse import load_spec
    from landscape_job.surface.centre import load_splits

    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=1, n_embd=8, n_head=1, vocab_size=len(VOCAB), n_positions=CONTEXT,
                                     bos_token_id=VOCAB["[CLS]"], eos_token_id=VOCAB["[SEP]"])
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "model")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_folder / name, tmp_path / "model" / name)
    text = words(CONTEXT * 6 + 3, seed=11)
    (tmp_path / "tokens").mkdir()
    (tmp_path / "tokens" / "train.txt").write_text(" ".join(text), encoding="utf-8")
    spec = load_spec(write_spec(tmp_path, {
        "name": "lm", "task": "causal_lm", "model": {"hf": "model"},
        "data": {"dataset": "tokens", "root": "tokens", "splits": ["train"], "context": CONTEXT, "sequences": 4},
        "directions": {"type": "random", "seed": 0}, "grid": {"x": "-1:1:3"}, "storage": "runs"}, "lm.yaml"))
    assert check_inputs(spec) == {"train": 4}
    (split,) = load_splits(localize(spec))
    stream = np.array([VOCAB[w] for w in text])
    np.testing.assert_array_equal(split.inputs.numpy(), windows(stream)[seeded_rows(6, 4, 0)])
