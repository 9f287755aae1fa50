#!/usr/bin/env python3
"""Summarises Keel run directories: a Markdown table of stability events and losses, and (with
--plot) loss and grad-norm curves with event markers drawn by gnuplot. Standard library only.

Usage: summarize_runs.py [--plot OUT.png] RUN_DIR...
"""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile


def read_jsonl(path):
    records = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    records.append(json.loads(line))
    return records


def summarize(run_dir):
    metrics = read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
    events = read_jsonl(os.path.join(run_dir, "events.jsonl"))
    info = {}
    if os.path.exists(os.path.join(run_dir, "run_info.json")):
        with open(os.path.join(run_dir, "run_info.json")) as f:
            info = json.load(f)
    vals = [m["val_loss"] for m in metrics if "val_loss" in m]
    kinds = {}
    for e in events:
        kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
    actions = [e["action"] for e in events]
    return {
        "run": os.path.basename(run_dir.rstrip("/")),
        "status": info.get("status", "?"),
        "steps": len(metrics),
        "spikes": kinds.get("loss_spike", 0) + kinds.get("sustained_spike", 0),
        "explosions": kinds.get("grad_explosion", 0),
        "nonfinite": kinds.get("nonfinite", 0),
        "skips": actions.count("skip_update"),
        "rollbacks": actions.count("rollback"),
        "final_val": vals[-1] if vals else float("nan"),
        "best_val": min(vals) if vals else float("nan"),
        "max_grad_norm": max((m["grad_norm"] for m in metrics if math.isfinite(m["grad_norm"])), default=float("nan")),
        "metrics": metrics,
        "events": events,
    }


def table(rows):
    header = ("| run | status | steps | loss spikes | grad explosions | non-finite | skips | rollbacks "
              "| final val loss | best val loss | max grad norm |")
    lines = [header, "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r['run']} | {r['status']} | {r['steps']} | {r['spikes']} | {r['explosions']} | "
                     f"{r['nonfinite']} | {r['skips']} | {r['rollbacks']} | {r['final_val']:.4f} | "
                     f"{r['best_val']:.4f} | {r['max_grad_norm']:.2f} |")
    return "\n".join(lines)


def plot(rows, out_png):
    tmp = tempfile.mkdtemp(prefix="keel-plot-")
    script = [f"set terminal pngcairo size 1400,520 font ',10'", f"set output '{out_png}'",
              "set multiplot layout 1,2", "set xlabel 'step'", "set grid", "set key top right"]
    loss_plots, grad_plots = [], []
    for i, r in enumerate(rows):
        data = os.path.join(tmp, f"{i}.dat")
        with open(data, "w") as f:
            for n, m in enumerate(r["metrics"]):
                # Rolled-back steps are replayed: plot in execution order (x = executed step count).
                loss = m["loss"] if math.isfinite(m["loss"]) else float("nan")
                grad = m["grad_norm"] if math.isfinite(m["grad_norm"]) else float("nan")
                f.write(f"{n} {loss} {grad}\n")
        marks = os.path.join(tmp, f"{i}.events")
        with open(marks, "w") as f:
            index = {m["step"]: n for n, m in enumerate(r["metrics"])}
            for e in r["events"]:
                if e["kind"] != "recovered" and e["step"] in index:
                    n = index[e["step"]]
                    f.write(f"{n} {r['metrics'][n]['loss']} {r['metrics'][n]['grad_norm']}\n")
        loss_plots.append(f"'{data}' using 1:2 with lines lw 1.5 title '{r['run']}'")
        grad_plots.append(f"'{data}' using 1:3 with lines lw 1.2 title '{r['run']}'")
        if os.path.getsize(marks) > 0:
            loss_plots.append(f"'{marks}' using 1:2 with points pt 7 ps 1.2 notitle")
            grad_plots.append(f"'{marks}' using 1:3 with points pt 7 ps 1.2 notitle")
    script += ["set title 'training loss (dots: stability events)'", "set ylabel 'loss'",
               "plot " + ", ".join(loss_plots),
               "set title 'global grad norm'", "set ylabel 'grad norm'", "set logscale y",
               "plot " + ", ".join(grad_plots), "unset multiplot"]
    subprocess.run(["gnuplot"], input="\n".join(script), text=True, check=True)


def main(argv):
    out_png = None
    if len(argv) > 1 and argv[0] == "--plot":
        out_png, argv = argv[1], argv[2:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    rows = [summarize(d) for d in argv]
    print(table(rows))
    if out_png and shutil.which("gnuplot") is None:
        print("\n(gnuplot not found: no curves drawn)")
    elif out_png:
        plot(rows, out_png)
        print(f"\ncurves: {out_png}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
