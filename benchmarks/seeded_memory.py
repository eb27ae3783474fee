"""Host memory of a GPT-2-small-sized plane (124M parameters, random init) on a CPU, with seeded
directions against the paper's direction file (issue 23): each stage in a process of its own, its
peak resident set (``ru_maxrss``) and what it wrote.

    python benchmarks/seeded_memory.py                         # GPT-2 small, 5x5, both storages
    python benchmarks/seeded_memory.py --storage seeded --width 64 --layers 2 --vocab 512   # quick

The goal it checks (``docs/performance.md``): with ``directions.storage: seeded`` no direction
file of model size is written, and the evaluate stage's peak stays below model + two directions
+ 1.5 GiB (the evaluator holds the model, θ*'s copy and the two directions: four model sizes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from lm_models import gpt  # noqa: E402

GiB = 1 << 30

_STAGE = """
import json, resource, sys, time
from landscape_job import stages
from landscape_job.spec.parse import load_spec
from launcher.local.runner import open_run
spec = load_spec({spec!r})
run = open_run(spec, {run!r})
started = time.time()
quiet = lambda _msg: None
stage = {stage!r}
if stage == "prepare":
    stages.prepare(run, log=quiet)
elif stage == "evaluate":
    stages.evaluate(run, 0, log=quiet)
else:
    stages.merge(run, log=quiet, plots=False)
print(json.dumps({{"stage": stage, "seconds": time.time() - started,
                  "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}}))
"""


def _stage(stage: str, spec: Path, run: str) -> dict:
    code = _STAGE.format(spec=str(spec), run=run, stage=stage)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=spec.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(folder: Path, storage: str, size: dict, grid: int, sequences: int, context: int) -> dict:
    raw = {"name": f"gpt-{storage}", "python": {"path": [str(HERE)]},
           "model": {"arch": "python:lm_models:gpt", "checkpoint": "lm.pt", "kwargs": size},
           "data": {"dataset": "python:lm_models:tokens", "classes": size["vocab"], "splits": ["train"],
                    "options": {"vocab": size["vocab"], "context": context, "sequences": sequences}},
           "directions": {"type": "random", "seed": 0, "storage": storage},
           "grid": {"x": f"-1:1:{grid}", "y": f"-1:1:{grid}"},
           "compute": {"shards": 1, "precision": "fp32", "batch_size": sequences, "device": "cpu"},
           "storage": "runs"}
    spec = folder / f"{storage}.yaml"
    spec.write_text(json.dumps(raw))
    stages = [_stage(name, spec, storage) for name in ("prepare", "evaluate", "merge")]
    run = folder / "runs" / storage
    return {"storage": storage, "stages": stages, "directions_h5": (run / "directions.h5").stat().st_size,
            "run_bytes": sum(p.stat().st_size for p in run.rglob("*") if p.is_file())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", choices=("seeded", "file", "both"), default="both")
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--grid", type=int, default=5)
    parser.add_argument("--sequences", type=int, default=4)
    parser.add_argument("--context", type=int, default=64, help="tokens per sequence evaluated")
    parser.add_argument("--positions", type=int, default=1024, help="the model's position table (GPT-2: 1024)")
    parser.add_argument("--json", action="store_true", help="one JSON line per storage instead of the table")
    args = parser.parse_args()
    size = {"vocab": args.vocab, "width": args.width, "layers": args.layers, "heads": args.heads,
            "context": max(args.context, args.positions)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        torch.manual_seed(0)
        model = gpt(**size)
        params = sum(p.numel() for p in model.parameters())
        torch.save(model.state_dict(), folder / "lm.pt")
        del model
        model_bytes = params * 4
        budget = 3 * model_bytes + 1.5 * GiB
        print(f"GPT-2-style model: {params:,} parameters ({model_bytes / GiB:.2f} GiB fp32); {args.grid}x{args.grid} "
              f"plane over {args.sequences} x {args.context} tokens on the CPU ({torch.get_num_threads()} threads); "
              f"budget model + two directions + 1.5 GiB = {budget / GiB:.2f} GiB "
              f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")
        for storage in (("seeded", "file") if args.storage == "both" else (args.storage,)):
            result = measure(folder, storage, size, args.grid, args.sequences, args.context)
            if args.json:
                print(json.dumps({**result, "parameters": params, "budget": budget}))
                continue
            peaks = ", ".join(f"{s['stage']} {s['peak_rss'] / GiB:.2f} GiB in {s['seconds']:.1f} s"
                              for s in result["stages"])
            evaluate = result["stages"][1]["peak_rss"]
            verdict = "below" if evaluate < budget else "ABOVE"
            print(f"{storage}: directions.h5 {result['directions_h5'] / 2**20:,.2f} MiB, run folder "
                  f"{result['run_bytes'] / 2**20:,.1f} MiB; peak RSS {peaks}; evaluate {verdict} the budget")


if __name__ == "__main__":
    main()
