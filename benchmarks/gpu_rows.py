"""Turns ``evaluator_speed.py``'s output into a row of docs/performance.md's GPU table.

    python benchmarks/evaluator_speed.py ... --precision fp16 | python benchmarks/gpu_rows.py "ResNet-56, 50,000 images, V100" fp16
    python benchmarks/lm_speed.py --directions seeded | python benchmarks/gpu_rows.py --lm "Llama 1.1B, ..." seeded

``benchmarks/gpu_check.sh`` pipes each precision's run through it. A run the evaluator
refused (bf16 on a GPU before Ampere) becomes a row that says so, not an empty one.
"""

from __future__ import annotations

import re
import sys

_FIELDS = {
    "ceiling": r"^ceiling \(batch (?P<batch>\d+)[^)]*\): (?P<value>[\d.]+) s/pass",
    "point": r"^evaluator: (?P<value>[\d.]+) s/point",
    "ratio": r"^ratio evaluator/ceiling: (?P<value>[\d.]+)",
    "memory": r"^peak memory: (?P<value>[\d,]+ MiB)",
    "deviation": r"^largest relative loss deviation from fp32: (?P<value>\S+)",
}
_REFUSED = re.compile(r"^precision refused: (?P<why>.+)$", re.M)


def row(output: str, label: str, precision: str) -> str:
    """One Markdown row: model, precision, ceiling, s/point, ratio, deviation from fp32, peak memory."""
    refused = _REFUSED.search(output)
    if refused:
        return f"| {label} | {precision} | refused: {refused.group('why')} | | | | |"
    found = {name: re.search(pattern, output, re.M) for name, pattern in _FIELDS.items()}
    missing = [name for name, match in found.items() if match is None and name != "deviation"]
    if missing:
        return f"| {label} | {precision} | failed (no {', '.join(missing)} in the output) | | | | |"
    value = {name: (match.group("value") if match else "") for name, match in found.items()}
    deviation = value["deviation"] or ("(reference)" if precision == "fp32" else "")
    return (f"| {label} | {precision} | {value['ceiling']} | {value['point']} | {value['ratio']} | "
            f"{deviation} | {value['memory']} |")


_LM_FIELDS = {
    "setup": r"^setup \([a-z]+ directions\): (?P<value>[\d.]+) s",
    "point": r"^lm: (?P<value>[\d.]+) s/point",
    "tokens": r"^lm tokens/s: (?P<value>[\d,]+)",
    "memory": r"^lm peak memory: (?P<value>[\d,]+ MiB)",
    "mfu": r"^lm MFU: (?P<value>\S+)",
}


def lm_row(output: str, label: str, directions: str) -> str:
    """One Markdown row of the language-model table (``lm_speed.py``'s output)."""
    found = {name: re.search(pattern, output, re.M) for name, pattern in _LM_FIELDS.items()}
    missing = [name for name, match in found.items() if match is None]
    if missing:
        return f"| {label} | {directions} | failed (no {', '.join(missing)} in the output) | | | | |"
    v = {name: match.group("value") for name, match in found.items()}
    return f"| {label} | {directions} | {v['setup']} | {v['point']} | {v['tokens']} | {v['memory']} | {v['mfu']} |"


if __name__ == "__main__":
    if sys.argv[1] == "--lm":
        print(lm_row(sys.stdin.read(), sys.argv[2], sys.argv[3]))
    else:
        print(row(sys.stdin.read(), sys.argv[1], sys.argv[2]))
