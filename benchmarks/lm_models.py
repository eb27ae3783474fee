"""Transformer language models built from a config, with no download and no ``transformers``:
what the directions-at-scale benchmarks and tests perturb (``python: {path: [benchmarks]}``).

``gpt(...)`` is GPT-2's layout (learned positions, LayerNorm, GELU MLP, tied embedding),
``llama(...)`` Llama's (RMSNorm, SwiGLU MLP, rotary-free here: positions learned, which
changes no tensor a direction sees but the two position tables). The names of the
tensors follow Hugging Face's (``transformer.h.0.attn.c_attn.weight``, ``model.layers.0.
self_attn.q_proj.weight``), so ``directions.params`` patterns read the same as for their models.

The forward takes token ids (as floats, as the evaluator feeds every data set; cast back to
long) and returns the next-token logits of the last position, (batch, vocabulary): with
``data.classes`` = vocabulary and the following token as the label, today's ``cross_entropy``
task is next-token prediction at one position per sequence. ``tokens(...)`` is such a data set.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class _Attention(nn.Module):
    def __init__(self, width: int, heads: int, fused: bool):
        super().__init__()
        self.heads = heads
        if fused:  # GPT-2: one (3·width, width) projection
            self.c_attn = nn.Linear(width, 3 * width)
            self.c_proj = nn.Linear(width, width)
        else:  # Llama: q, k, v, o without biases
            self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(width, width, bias=False)
                                                                  for _ in range(4))
        self.fused = fused

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, t, w = h.shape
        if self.fused:
            q, k, v = self.c_attn(h).split(w, dim=2)
        else:
            q, k, v = self.q_proj(h), self.k_proj(h), self.v_proj(h)
        q, k, v = (z.view(b, t, self.heads, w // self.heads).transpose(1, 2) for z in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, w)
        return self.c_proj(out) if self.fused else self.o_proj(out)


class _RMSNorm(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class _Block(nn.Module):
    def __init__(self, width: int, heads: int, style: str, hidden: int):
        super().__init__()
        gpt2 = style == "gpt2"
        norm = (lambda: nn.LayerNorm(width)) if gpt2 else (lambda: _RMSNorm(width))
        if gpt2:
            self.ln_1, self.attn, self.ln_2 = norm(), _Attention(width, heads, True), norm()
            self.mlp = nn.ModuleDict({"c_fc": nn.Linear(width, hidden), "c_proj": nn.Linear(hidden, width)})
        else:
            self.input_layernorm, self.self_attn = norm(), _Attention(width, heads, False)
            self.post_attention_layernorm = norm()
            self.mlp = nn.ModuleDict({name: nn.Linear(*dims, bias=False) for name, dims in (
                ("gate_proj", (width, hidden)), ("up_proj", (width, hidden)), ("down_proj", (hidden, width)))})
        self.gpt2 = gpt2

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.gpt2:
            h = h + self.attn(self.ln_1(h))
            return h + self.mlp["c_proj"](F.gelu(self.mlp["c_fc"](self.ln_2(h)), approximate="tanh"))
        h = h + self.self_attn(self.input_layernorm(h))
        x = self.post_attention_layernorm(h)
        return h + self.mlp["down_proj"](F.silu(self.mlp["gate_proj"](x)) * self.mlp["up_proj"](x))


class _Trunk(nn.Module):
    def __init__(self, vocab: int, width: int, layers: int, heads: int, context: int, style: str, hidden: int):
        super().__init__()
        if style == "gpt2":
            self.wte, self.wpe = nn.Embedding(vocab, width), nn.Embedding(context, width)
            self.h = nn.ModuleList(_Block(width, heads, style, hidden) for _ in range(layers))
            self.ln_f = nn.LayerNorm(width)
        else:
            self.embed_tokens, self.embed_positions = nn.Embedding(vocab, width), nn.Embedding(context, width)
            self.layers = nn.ModuleList(_Block(width, heads, style, hidden) for _ in range(layers))
            self.norm = _RMSNorm(width)
        self.style = style

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        if self.style == "gpt2":
            h = self.wte(ids) + self.wpe(positions)
            for block in self.h:
                h = block(h)
            return self.ln_f(h)
        h = self.embed_tokens(ids) + self.embed_positions(positions)
        for block in self.layers:
            h = block(h)
        return self.norm(h)


class LanguageModel(nn.Module):
    """A decoder-only transformer; the output head is tied to the token embedding for GPT-2."""

    def __init__(self, vocab: int, width: int, layers: int, heads: int, context: int, style: str = "gpt2",
                 hidden: int | None = None):
        super().__init__()
        hidden = hidden or (4 * width if style == "gpt2" else int(8 * width / 3 / 64 + 1) * 64)
        trunk = _Trunk(vocab, width, layers, heads, context, style, hidden)
        if style == "gpt2":
            self.transformer = trunk
            self.lm_head = None  # tied: logits = h · wte
        else:
            self.model = trunk
            self.lm_head = nn.Linear(width, vocab, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        trunk = self.transformer if self.lm_head is None else self.model
        h = trunk(ids.long())[:, -1]  # the last position's next-token logits
        weight = trunk.wte.weight if self.lm_head is None else self.lm_head.weight
        return h @ weight.to(h.dtype).t()


def gpt(vocab: int = 50257, width: int = 768, layers: int = 12, heads: int = 12, context: int = 1024) -> nn.Module:
    """GPT-2 small by default: 124M parameters (124,439,808 with the tied head)."""
    return LanguageModel(vocab, width, layers, heads, context, style="gpt2")


def llama(vocab: int = 32000, width: int = 2048, layers: int = 16, heads: int = 16, context: int = 2048,
          hidden: int = 5632) -> nn.Module:
    """Llama-style, ~1.1B parameters by default (TinyLlama's widths, 16 layers)."""
    return LanguageModel(vocab, width, layers, heads, context, style="llama", hidden=hidden)


def tokens(vocab: int, context: int, sequences: int = 8, seed: int = 0, split: str = "train"):
    """Random token sequences of ``context`` ids and the next id as the label (a TensorDataset),
    the inputs as floats (the evaluator's data contract). float32 holds ids below 2**24 exactly."""
    generator = torch.Generator().manual_seed(seed + (0 if split == "train" else 1))
    ids = torch.randint(0, vocab, (sequences, context + 1), generator=generator)
    return torch.utils.data.TensorDataset(ids[:, :-1].float(), ids[:, -1])
