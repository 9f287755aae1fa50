#!/usr/bin/env python3
"""Summaries for bench/train_bench.sh (stdlib only).

  bench_report.py keel RUN_DIR WARMUP PEAK_FLOPS     one `keel train` run -> one JSON line
  bench_report.py table RESULTS.jsonl                 the table of every case and reference
  bench_report.py compare RESULTS.jsonl KEEL_CASE [REF_PREFIX]
                                                      Keel vs the PyTorch references whose case starts with
                                                      REF_PREFIX (default "pytorch-"): ratios + losses

A Keel run's figures come from its metrics.jsonl (every step's wall time, measured by the trainer
from the start of the step to the end of its bookkeeping) and its train.log (parameter count,
device). Steps before WARMUP are not timed. MFU = (6N + 12 L d T) * tokens/s / PEAK_FLOPS
(PaLM appendix B; N = non-embedding parameters).
"""
import json
import re
import statistics
import sys


def keel_case(run_dir, warmup, peak):
    rows = [json.loads(line) for line in open(f"{run_dir}/metrics.jsonl") if line.strip()]
    cfg = open(f"{run_dir}/config.yaml").read()

    def cfg_int(section, key):
        block = re.search(rf"^{section}:\n((?:[ \t]+.*\n)+)", cfg, re.M).group(1)
        return int(re.search(rf"^\s+{key}:\s*(-?\d+)", block, re.M).group(1))

    B, L, d, T = cfg_int("train", "batch_size"), cfg_int("model", "num_layers"), cfg_int("model", "d_model"), \
        cfg_int("model", "context_length")
    seq = cfg_int("train", "seq_len") or T
    accum = cfg_int("train", "grad_accum")
    log = open(f"{run_dir}/train.log").read() if _exists(f"{run_dir}/train.log") else ""
    m = re.search(r"model: (\d+) parameters \((\d+) non-embedding\)", log)
    n_non_embedding = int(m.group(2)) if m else None
    timed = [r for r in rows[warmup:] if "val_loss" not in r and "rollback_to" not in r]
    times = [r["step_time"] for r in timed]
    tokens_per_step = B * seq * accum
    result = {"run_dir": run_dir, "batch": B, "seq": seq, "layers": L, "d_model": d, "timed_steps": len(times),
              "warmup_steps": warmup, "losses": [r["loss"] for r in rows]}
    if times:
        q = statistics.quantiles(times, n=10) if len(times) >= 2 else [times[0], times[0]]
        result.update({"tokens_per_second": tokens_per_step * len(times) / sum(times),
                       "step_time_median": statistics.median(times), "step_time_p10": q[0], "step_time_p90": q[-1],
                       "peak_memory_bytes": max(r.get("gpu_memory_peak_bytes", 0) for r in rows)})
        if n_non_embedding:
            flops_per_token = 6 * n_non_embedding + 12 * L * d * seq
            result.update({"non_embedding_parameters": n_non_embedding, "flops_per_token": flops_per_token,
                           "peak_flops": peak, "mfu": flops_per_token * result["tokens_per_second"] / peak})
        if timed and "mfu" in timed[0]:
            result["mfu_trainer_median"] = statistics.median(r["mfu"] for r in timed)
        # Keel's own timeline (device/phase_clock.h): median ms per phase, host and GPU clocks.
        for clock in ("host_phase_ms", "device_phase_ms"):
            phases = {}
            for r in timed:
                for phase, ms in r.get(clock, {}).items():
                    phases.setdefault(phase, []).append(ms)
            if phases:
                result[clock + "_median"] = {k: statistics.median(v) for k, v in phases.items()}
    return result


def _exists(path):
    try:
        open(path).close()
        return True
    except OSError:
        return False


def table(results):
    print(f"{'case':34} {'tokens/s':>10} {'step ms (p10-p90)':>22} {'MFU':>6} {'peak GiB':>9}")
    for r in results:
        if "tokens_per_second" not in r:
            print(f"{r['case']:34} {'failed: ' + r.get('error', '?')}")
            continue
        spread = f"{r['step_time_median'] * 1e3:.1f} ({r['step_time_p10'] * 1e3:.1f}-{r['step_time_p90'] * 1e3:.1f})"
        mfu = f"{100 * r['mfu']:.1f}%" if "mfu" in r else "-"
        print(f"{r['case']:34} {r['tokens_per_second']:>10.0f} {spread:>22} {mfu:>6} "
              f"{r['peak_memory_bytes'] / 2**30:>9.2f}")


def compare(results, keel_name, ref_prefix="pytorch-"):
    by_case = {r["case"]: r for r in results}
    keel = by_case.get(keel_name)
    refs = [r for r in results if r["case"].startswith(ref_prefix)]
    if not keel or "tokens_per_second" not in keel or not refs:
        print(f"compare: no results for {keel_name} and a PyTorch reference")
        return
    for ref in refs:
        print(f"Keel {keel_name} / {ref['case']}: {keel['tokens_per_second'] / ref['tokens_per_second']:.3f}x "
              f"({keel['tokens_per_second']:.0f} vs {ref['tokens_per_second']:.0f} tokens/s)")
    n = min(20, len(keel["losses"]), *(len(r["losses"]) for r in refs))
    print("loss of the first steps (same init, same batches):")
    print(f"{'step':>4} {'keel':>9} " + " ".join(f"{r['case']:>17}" for r in refs))
    for s in range(n):
        print(f"{s:>4} {keel['losses'][s]:>9.4f} " + " ".join(f"{r['losses'][s]:>17.4f}" for r in refs))
    for r in refs:
        prof = r.get("kernel_profile")
        if prof:
            cats = ", ".join(f"{k} {v:.1f}" for k, v in prof["ms_per_step_by_category"].items())
            print(f"{r['case']} kernel time per step (torch.profiler): {prof['kernel_ms_per_step']:.1f} ms of "
                  f"{prof['wall_ms_per_step_profiled']:.1f} ms wall: {cats}")
    for clock, what in (("device_phase_ms_median", "GPU time"), ("host_phase_ms_median", "host time")):
        if clock in keel:
            phases = ", ".join(f"{k} {v:.1f}" for k, v in keel[clock].items())
            print(f"Keel {keel_name} {what} per step by phase (median ms): {phases}; "
                  f"sum {sum(keel[clock].values()):.1f} of a {keel['step_time_median'] * 1e3:.1f} ms step")
    for r in refs:
        diff = max(abs(a - b) for a, b in zip(keel["losses"][:n], r["losses"][:n]))
        print(f"max |keel - {r['case']}| over {n} steps: {diff:.4f}")


def main():
    cmd = sys.argv[1]
    if cmd == "keel":
        print(json.dumps(keel_case(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))))
    else:
        results = [json.loads(line) for line in open(sys.argv[2]) if line.strip()]
        table(results) if cmd == "table" else compare(results, sys.argv[3], *sys.argv[4:5])


if __name__ == "__main__":
    main()
