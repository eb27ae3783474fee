"""How fast this machine's CPU is right now: seconds for 3e7 multiply-adds in CPython, on one core.

The test suite's CPU time on this project's shared 2-core VM moves by a fifth between runs of the same
code (docs/performance.md, "The test suite's own time"): the host's other load slows every instruction,
which `time` counts as more user time, not as steal. Run before and after a timing to say how fast the
machine was: 3.25 s on a quiet evening, 3.56 s on a slow one.

    python benchmarks/cpu_probe.py
"""

import time

start = time.perf_counter()
total = 0
for i in range(30_000_000):
    total += i * i
print(f"cpu probe: {time.perf_counter() - start:.2f} s")
