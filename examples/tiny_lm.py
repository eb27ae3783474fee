# %% [markdown]
# # The loss landscape of a small language model, without a download
#
# A GPT-2-style model (2 layers, byte-level: its vocabulary is the 256 byte values, so no
# tokenizer is needed) is trained on a corpus this script writes, then fine-tuned twice on
# different text: once on arithmetic, once on weather reports. Then, through the Python
# API (docs/language-models.md):
#
# - the plane through the base model and its two fine-tunes (task vectors: x = θ_arith − θ_base,
#   y = θ_weather − θ_base), the causal-LM loss on each fine-tune's text;
# - the 1-D interpolation from one fine-tune to the other.
#
# The models are saved as `save_pretrained` folders and the text as nanoGPT-style `uint16`
# `.bin` token files, so the same plane can be run by the CLI: `examples/tiny-lm.yaml`.
#
#     python examples/tiny_lm.py                    # a few minutes on two CPU cores
#     python examples/tiny_lm.py --steps 4 --points 5 --out /tmp/lm    # a minute (the tests)

# %%
from __future__ import annotations

import argparse
import random
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # in Jupyter, drop this line

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

from landscape_job import api as ls  # noqa: E402

CONTEXT = 64


# %% The corpora: three kinds of text, made here from a seed.
def base_text(rng: random.Random, lines: int) -> str:
    """Simple English sentences: the base model learns bytes, words and full stops."""
    subjects = ["the cat", "a dog", "my friend", "the old man", "a small bird", "the teacher"]
    verbs = ["sees", "likes", "finds", "carries", "watches", "paints"]
    objects = ["the red ball", "a green tree", "the river", "an open door", "the blue house", "a long road"]
    return "".join(f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}.\n" for _ in range(lines))


def arithmetic_text(rng: random.Random, lines: int) -> str:
    return "".join(f"{a} + {b} = {a + b}.\n" for a, b in ((rng.randint(0, 50), rng.randint(0, 50))
                                                          for _ in range(lines)))


def weather_text(rng: random.Random, lines: int) -> str:
    places = ["london", "paris", "oslo", "rome", "lima", "tokyo"]
    skies = ["sunny", "cloudy", "rainy", "windy", "foggy"]
    return "".join(f"in {rng.choice(places)} it is {rng.choice(skies)} and {rng.randint(-5, 35)} degrees.\n"
                   for _ in range(lines))


def write_tokens(folder: Path, train: str, test: str) -> None:
    """Byte ids as nanoGPT's prepare.py writes token ids: a flat uint16 stream per split."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, text in (("train", train), ("test", test)):
        np.frombuffer(text.encode(), dtype=np.uint8).astype(np.uint16).tofile(folder / f"{split}.bin")


def ids_of(text: str) -> torch.Tensor:
    stream = torch.tensor(list(text.encode()), dtype=torch.int64)
    windows = len(stream) // CONTEXT
    return stream[:windows * CONTEXT].view(windows, CONTEXT)


# %% Training: plain AdamW on random windows of the text, next-token loss from transformers.
def train(model: GPT2LMHeadModel, text: str, steps: int, lr: float, seed: int) -> GPT2LMHeadModel:
    data = ids_of(text)
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        batch = data[torch.randint(0, len(data), (16,), generator=generator)]
        loss = model(input_ids=batch, labels=batch).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def main(out: Path, steps: int = 600, points: int = 21, progress: bool = True) -> dict[str, ls.Landscape]:
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    corpora = {"base": base_text(rng, 4000), "arith": arithmetic_text(rng, 3000), "weather": weather_text(rng, 2000)}
    held_out = {"arith": arithmetic_text(rng, 300), "weather": weather_text(rng, 200)}
    write_tokens(out / "arith-tokens", corpora["arith"], held_out["arith"])
    write_tokens(out / "weather-tokens", corpora["weather"], held_out["weather"])

    # %% The base model, then two fine-tunes of it (copies: the base stays as it was).
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=256, n_positions=CONTEXT, bos_token_id=10,
                        eos_token_id=10)
    base = train(GPT2LMHeadModel(config), corpora["base"], steps, lr=3e-3, seed=1)
    tuned = {}
    for seed, name in enumerate(("arith", "weather"), start=2):
        model = GPT2LMHeadModel(config)
        model.load_state_dict(base.state_dict())
        tuned[name] = train(model, corpora[name], max(1, steps // 3), lr=1e-3, seed=seed)
    for name, model in (("base", base), *tuned.items()):
        model.save_pretrained(out / name)  # tied weights stored once; `launcher submit examples/tiny-lm.yaml`

    # %% The plane through base (0, 0), the arithmetic fine-tune (1, 0) and the weather one (0, 1),
    # on the arithmetic text: token ids straight in, the task says how to score them.
    arith = {"train": ids_of(corpora["arith"])[:64], "test": ids_of(held_out["arith"])}
    plane = ls.plane(base, arith, x=f"-0.5:1.5:{points}", y=f"-0.5:1.5:{points}", directions="plane",
                     targets=[tuned["arith"], tuned["weather"]], task="causal_lm", progress=progress)
    print(plane, "train perplexity at the arithmetic fine-tune:",
          float(plane["train_perplexity"][_index(plane.y, 0.0), _index(plane.x, 1.0)]))

    # %% From the arithmetic fine-tune (α = 0) to the weather one (α = 1), on the weather text.
    weather = {"train": ids_of(corpora["weather"])[:64], "test": ids_of(held_out["weather"])}
    curve = ls.interpolate(tuned["arith"], tuned["weather"], weather, x=f"-0.5:1.5:{points}", task="causal_lm",
                           progress=progress)
    print(curve, "weather test loss along the line:", np.round(curve["test_loss"], 3))

    for landscape in (plane, curve):
        for stem, figure in landscape.plot().items():
            figure.savefig(out / f"{stem}.png", dpi=100)
    plane.save(out / "plane.h5")
    curve.save(out / "interpolation.h5")
    return {"plane": plane, "interpolation": curve, "models": {"base": base, **tuned}, "data": arith}


def _index(axis: np.ndarray, value: float) -> int:
    return int(np.argmin(np.abs(np.asarray(axis) - value)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "tiny-lm")
    parser.add_argument("--steps", type=int, default=600, help="training steps of the base model")
    parser.add_argument("--points", type=int, default=21, help="grid points per axis")
    args = parser.parse_args()
    main(args.out, steps=args.steps, points=args.points)
