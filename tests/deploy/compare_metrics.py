#!/usr/bin/env python3
"""Compare the per-step losses of two Keel runs' metrics.jsonl files.

  compare_metrics.py A/metrics.jsonl B/metrics.jsonl [--rtol 1e-5] [--min-steps 20] [--key loss]

Both files must hold the same steps (at least --min-steps of them), each with a finite value of every
--key, and the values must agree within the relative tolerance (|a - b| <= rtol * max(|a|, |b|)).
Exit 0 when they match, 1 (with the first differences) otherwise.
"""
import argparse
import json
import math
import sys


def load(path, keys):
    rows = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            obj = json.loads(line)
            if "step" not in obj or not all(k in obj for k in keys):
                continue  # e.g. an evaluation-only line
            rows[int(obj["step"])] = {k: float(obj[k]) for k in keys}
    return rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--rtol", type=float, default=1e-5)
    p.add_argument("--min-steps", type=int, default=20)
    p.add_argument("--key", action="append", default=None)
    args = p.parse_args()
    keys = args.key or ["loss"]
    a, b = load(args.a, keys), load(args.b, keys)
    problems = []
    if sorted(a) != sorted(b):
        problems.append(f"different steps: {args.a} has {len(a)} ({min(a, default=None)}..{max(a, default=None)}), "
                        f"{args.b} has {len(b)} ({min(b, default=None)}..{max(b, default=None)}); "
                        f"only in A: {sorted(set(a) - set(b))[:10]}, only in B: {sorted(set(b) - set(a))[:10]}")
    if len(a) < args.min_steps:
        problems.append(f"{args.a} has {len(a)} steps, fewer than {args.min_steps}")
    worst = 0.0
    for step in sorted(set(a) & set(b)):
        for k in keys:
            x, y = a[step][k], b[step][k]
            if not (math.isfinite(x) and math.isfinite(y)):
                problems.append(f"step {step}: {k} not finite ({x} vs {y})")
                continue
            scale = max(abs(x), abs(y))
            rel = abs(x - y) / scale if scale > 0 else 0.0
            worst = max(worst, rel)
            if rel > args.rtol:
                problems.append(f"step {step}: {k} {x!r} vs {y!r} (relative difference {rel:.3g} > {args.rtol:g})")
    if problems:
        print("metrics differ:\n  " + "\n  ".join(problems[:20]), file=sys.stderr)
        return 1
    print(f"{len(a)} steps match ({', '.join(keys)}; worst relative difference {worst:.3g}, tolerance {args.rtol:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
