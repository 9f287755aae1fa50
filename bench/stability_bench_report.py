#!/usr/bin/env python3
"""Report of bench/stability_bench.sh: does the stability monitor rescue genuinely unstable runs,
and how often does it act on clean ones? Standard library only.

Usage: stability_bench_report.py OUT [--json PATH] [--md PATH] [--quiet]

Reads OUT/runs/*.bench.json (one sidecar per run, written by the bench: name, kind = unstable |
healthy | clean | base, scenario, mode, seed, recipe, healthy = the name of the reference run,
segment_start, steps, exit_code, ...) and each run directory OUT/runs/<name>:
  run_info.json   status, exit_code, final_val_loss, final_step, message, parent
  metrics.jsonl   one record per executed step (step, loss, grad_norm, lr, tokens_seen, optional
                  skipped, rollback_to, val_loss, events)
  events.jsonl    one record per stability event (kind, step, action, reason, ...)
  config.yaml     tokens per step = batch_size * (seq_len or model.context_length) * grad_accum * dp
A remedy child run <run_dir>-remedy (its run_info.json names the parent) is followed, and its final
val loss is the run's.

Definitions (each also printed under the tables):
  segment         the steps this scenario trained: everything in the files from the first record
                  with step >= segment_start (0, or the resume step of a mid-run LR change; the
                  records before it are the healthy first part, copied from the base run).
  rollbacks       metrics records with rollback_to (in-process restarts from step 0 included);
                  remedy child runs are counted apart (remedy_restarts).
  tokens wasted   sum over rollbacks of (step ordered - rollback_to) * tokens per step, plus, for
                  each remedy child run, the parent's final_step * its tokens per step.
  executed steps  metrics records in the segment (every computed step: applied, skipped, rolled
                  back or aborted, replays included), over the remedy chain.
  rescued         final val within RESCUE_DELTA of the healthy run (same shape and steps) after a
                  complete run, or a clear abort (exit 3, status aborted) whose message mentions
                  the learning rate, after at most ABORT_WASTE_FRACTION of the run's steps executed.
  unstable        a scenario whose monitor-off run is not within RESCUE_DELTA of its healthy run;
                  the rescue rate is given over those (and over every scenario).
  false positives events (all kinds but "recovered") per 1,000 executed clean steps; rollbacks,
                  remedy restarts and aborts on clean runs (target: 0 rollbacks).
"""
import glob
import json
import math
import os
import re
import sys

RESCUE_DELTA = 0.1
ABORT_WASTE_FRACTION = 0.10
RESCUE_TARGET = 0.75
# Exit codes of `keel train`: kExitStabilityAbort and kExitConfigError of common/exit_codes.h.
EXIT_STABILITY_ABORT = 3
EXIT_CONFIG_ERROR = 2
LR_ADVICE = re.compile(r"learning[ _-]?rate|\blr\b|train\.lr", re.IGNORECASE)
MODE_ORDER = ["off", "rollback", "skip_only", "clip_only", "observe"]


# ---------------------------------------------------------------------------------------------
# Reading run directories


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_jsonl(path):
    """Records of a JSON-lines file; a malformed line (a crash mid-write) is skipped."""
    records = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    value = json.loads(line)
                except ValueError:
                    continue
                if isinstance(value, dict):
                    records.append(value)
    except OSError:
        pass
    return records


def _strip_comment(text):
    quote = None
    for i, c in enumerate(text):
        if quote:
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip()
    return text


def _scalar(text):
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def read_config(path):
    """The two-level config.yaml Keel writes, flattened to {"section.key": value}."""
    config, section = {}, None
    try:
        with open(path) as f:
            lines = f.readlines()
    except OSError:
        return config
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        text = _strip_comment(line.strip())
        if indent == 0:
            section = text[:-1].strip() if text.endswith(":") else None
            continue
        if section and ":" in text:
            key, _, value = text.partition(":")
            config[f"{section}.{key.strip()}"] = _scalar(value.strip())
    return config


def tokens_per_step(config):
    try:
        seq = int(config.get("train.seq_len", 0)) or int(config["model.context_length"])
        return (int(config["train.batch_size"]) * seq * int(config.get("train.grad_accum", 1)) *
                int(config.get("parallel.dp", 1)))
    except (KeyError, TypeError, ValueError):
        return None


def finite(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def segment(records, segment_start):
    """Records from the first one whose step >= segment_start, in file order (see the docstring)."""
    if segment_start <= 0:
        return records
    for i, r in enumerate(records):
        if isinstance(r.get("step"), int) and r["step"] >= segment_start:
            return records[i:]
    return []


def analyze_one(run_dir, segment_start, fallback_tps=None):
    """Figures of one run directory (no remedy following)."""
    info = read_json(os.path.join(run_dir, "run_info.json")) or {}
    config = read_config(os.path.join(run_dir, "config.yaml"))
    tps = tokens_per_step(config) or fallback_tps
    metrics = segment(read_jsonl(os.path.join(run_dir, "metrics.jsonl")), segment_start)
    events = segment(read_jsonl(os.path.join(run_dir, "events.jsonl")), segment_start)
    if not events:  # fall back on the kinds listed in metrics.jsonl
        events = [{"kind": k, "step": m.get("step")} for m in metrics for k in (m.get("events") or [])]
    real_events = [e for e in events if e.get("kind") != "recovered"]
    kinds, actions = {}, {}
    for e in real_events:
        kinds[e.get("kind", "?")] = kinds.get(e.get("kind", "?"), 0) + 1
        actions[e.get("action", "?")] = actions.get(e.get("action", "?"), 0) + 1
    rollbacks = [m for m in metrics if m.get("rollback_to") is not None]
    rollback_steps = sum(max(0, int(m["step"]) - int(m["rollback_to"])) for m in rollbacks)
    vals = [m["val_loss"] for m in metrics if finite(m.get("val_loss")) and m["val_loss"] > 0]
    final_val = info.get("final_val_loss")
    # An aborted run may record 0 (TrainResult's default) where it never evaluated: not a loss.
    if not finite(final_val) or final_val <= 0:
        final_val = vals[-1] if vals else None
    tokens_seen = [m["tokens_seen"] for m in metrics if isinstance(m.get("tokens_seen"), int)]
    steps_total = config.get("train.steps")
    return {
        "run_dir": run_dir,
        "exists": os.path.isdir(run_dir),
        "status": info.get("status", "missing" if not info else "?"),
        "exit_code": info.get("exit_code"),
        "message": info.get("message") or "",
        "parent": info.get("parent"),
        "final_step": info.get("final_step"),
        "final_val": final_val,
        "train_steps": steps_total if isinstance(steps_total, int) else None,
        "tokens_per_step": tps,
        "executed_steps": len(metrics),
        "events": len(real_events),
        "event_kinds": kinds,
        "event_actions": actions,
        "recovered": len(events) - len(real_events),
        "skips": sum(1 for m in metrics if m.get("skipped") is True),
        "rollbacks": len(rollbacks),
        "rollback_steps_wasted": rollback_steps,
        "last_tokens_seen": tokens_seen[-1] if tokens_seen else None,
        "abort_reasons": [e.get("reason", "") for e in events if e.get("action") == "abort"],
    }


def analyze(run_dir, segment_start=0, fallback_tps=None, max_hops=3):
    """One run and its remedy children (<run_dir>-remedy, ...): the chain's totals, the last
    run's outcome."""
    chain = [analyze_one(run_dir, segment_start, fallback_tps)]
    while len(chain) <= max_hops:
        child_dir = chain[-1]["run_dir"] + "-remedy"
        if not os.path.isdir(child_dir):
            break
        chain.append(analyze_one(child_dir, 0, chain[-1]["tokens_per_step"] or fallback_tps))
    last = chain[-1]
    wasted_steps_tokens = 0
    for i, run in enumerate(chain):
        tps = run["tokens_per_step"] or 0
        wasted_steps_tokens += run["rollback_steps_wasted"] * tps
        if i + 1 < len(chain):  # superseded by a remedy child from step 0: its progress is lost
            wasted_steps_tokens += int(run["final_step"] or 0) * tps
    kinds = {}
    for run in chain:
        for k, n in run["event_kinds"].items():
            kinds[k] = kinds.get(k, 0) + n
    exit_code = last["exit_code"]
    return {
        "run_dir": run_dir,
        "chain": [r["run_dir"] for r in chain],
        "status": last["status"],
        "exit_code": exit_code,
        "message": last["message"] or " ".join(last["abort_reasons"]),
        "final_step": last["final_step"],
        "final_val": last["final_val"],
        "train_steps": last["train_steps"] or chain[0]["train_steps"],
        "tokens_per_step": chain[0]["tokens_per_step"],
        "last_tokens_seen": last["last_tokens_seen"],
        "executed_steps": sum(r["executed_steps"] for r in chain),
        "events": sum(r["events"] for r in chain),
        "event_kinds": kinds,
        "recovered": sum(r["recovered"] for r in chain),
        "skips": sum(r["skips"] for r in chain),
        "rollbacks": sum(r["rollbacks"] for r in chain),
        "remedy_restarts": len(chain) - 1,
        "tokens_wasted": wasted_steps_tokens,
    }


# ---------------------------------------------------------------------------------------------
# Verdicts


def completed(run, steps):
    """The run (its last remedy child) trained to the end."""
    if run["exit_code"] not in (0, None) or run["status"] in ("aborted", "failed", "missing", "running",
                                                             "preempted", "remedy_restart", "stopped"):
        return run["status"] == "completed" and run["exit_code"] in (0, None)
    return run["status"] == "completed" or (run["final_step"] is not None and steps is not None and
                                            run["final_step"] >= steps)


def verdict(run, healthy_val, steps):
    """(rescued: True/False/None, how) for one unstable run; None = cannot judge."""
    if run["exit_code"] == EXIT_CONFIG_ERROR:
        return None, "config error"
    if run["exit_code"] == EXIT_STABILITY_ABORT and run["status"] == "aborted":
        limit = ABORT_WASTE_FRACTION * (steps or 0)
        advice = bool(LR_ADVICE.search(run["message"] or ""))
        if advice and run["executed_steps"] <= limit:
            return True, "abort"
        why = [] if advice else ["no LR advice"]
        if run["executed_steps"] > limit:
            why.append(f"abort after {run['executed_steps']} > {limit:g} steps")
        return False, "abort: " + ", ".join(why)
    if not finite(healthy_val):
        return None, "no healthy val"
    if not completed(run, steps):
        return False, f"{run['status']} (exit {run['exit_code']})"
    if not finite(run["final_val"]):
        return False, "no val loss"
    if run["final_val"] - healthy_val <= RESCUE_DELTA:
        return True, "val"
    return False, "val"


def load_sidecars(out):
    rows = []
    for path in sorted(glob.glob(os.path.join(out, "runs", "*.bench.json"))):
        meta = read_json(path)
        if isinstance(meta, dict) and meta.get("name"):
            rows.append(meta)
    rows.sort(key=lambda m: (m.get("seq", 0), m["name"]))
    return rows


def mode_key(mode):
    return (MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER), mode)


def rate(numerator, denominator):
    return numerator / denominator if denominator else None


def build_report(out):
    sidecars = load_sidecars(out)
    runs_dir = os.path.join(out, "runs")
    analysed = {}
    for meta in sidecars:
        run = analyze(os.path.join(runs_dir, meta["name"]), int(meta.get("segment_start") or 0),
                      meta.get("tokens_per_step"))
        if meta.get("exit_code") is not None:
            # The command's own exit code is the truth (a run killed by the bench's timeout, or one
            # that failed before it rewrote run_info.json, leaves an older or no exit code there).
            run["exit_code"] = meta["exit_code"]
        run["meta"] = meta
        analysed[meta["name"]] = run

    healthy_vals = {}
    for name, run in analysed.items():
        if run["meta"].get("kind") == "healthy":
            steps = run["meta"].get("steps") or run["train_steps"]
            healthy_vals[name] = run["final_val"] if completed(run, steps) else None

    unstable_rows = []
    for name, run in analysed.items():
        meta = run["meta"]
        if meta.get("kind") != "unstable":
            continue
        steps = meta.get("steps") or run["train_steps"]
        healthy_val = healthy_vals.get(meta.get("healthy"))
        rescued, how = verdict(run, healthy_val, steps)
        delta = run["final_val"] - healthy_val if finite(run["final_val"]) and finite(healthy_val) else None
        unstable_rows.append({
            "name": name, "scenario": meta.get("scenario"), "mode": meta.get("mode"), "healthy": meta.get("healthy"),
            "description": meta.get("description", ""),
            "exit_code": run["exit_code"], "status": run["status"], "events": run["events"],
            "event_kinds": run["event_kinds"], "skips": run["skips"], "rollbacks": run["rollbacks"],
            "remedy_restarts": run["remedy_restarts"], "tokens_wasted": run["tokens_wasted"],
            "executed_steps": run["executed_steps"], "steps": steps, "final_val": run["final_val"],
            "healthy_val": healthy_val, "delta": delta, "rescued": rescued, "how": how,
            "message": run["message"], "chain": run["chain"], "wall_seconds": meta.get("wall_seconds"),
            "final_tokens_seen": run["last_tokens_seen"],
        })
    scenario_order = []
    for r in unstable_rows:
        if r["scenario"] not in scenario_order:
            scenario_order.append(r["scenario"])
    unstable_rows.sort(key=lambda r: (scenario_order.index(r["scenario"]), mode_key(r["mode"])))

    # A scenario is confirmed unstable when its monitor-off run ends worse than healthy + delta.
    confirmed = {}
    for r in unstable_rows:
        if r["mode"] == "off" and r["rescued"] is not None:
            confirmed[r["scenario"]] = not r["rescued"]
    rescue = {}
    for mode in sorted({r["mode"] for r in unstable_rows}, key=mode_key):
        rows = [r for r in unstable_rows if r["mode"] == mode]
        judged = [r for r in rows if r["rescued"] is not None]
        conf = [r for r in judged if confirmed.get(r["scenario"], True)]
        rescue[mode] = {
            "runs": len(rows), "judged": len(judged), "not_judged": len(rows) - len(judged),
            "rescued": sum(1 for r in judged if r["rescued"]), "rate_all": rate(sum(1 for r in judged if r["rescued"]), len(judged)),
            "confirmed_unstable": len(conf), "rescued_confirmed": sum(1 for r in conf if r["rescued"]),
            "rate": rate(sum(1 for r in conf if r["rescued"]), len(conf)),
            "aborts_rescued": sum(1 for r in judged if r["rescued"] and r["how"] == "abort"),
            "tokens_wasted": sum(r["tokens_wasted"] for r in rows),
            "meets_target": None,
        }
        if mode != "off" and rescue[mode]["rate"] is not None:
            rescue[mode]["meets_target"] = rescue[mode]["rate"] >= RESCUE_TARGET

    clean_rows = []
    for name, run in analysed.items():
        meta = run["meta"]
        if meta.get("kind") != "clean":
            continue
        clean_rows.append({
            "name": name, "recipe": meta.get("recipe"), "seed": meta.get("seed"), "mode": meta.get("mode"),
            "dataset": meta.get("dataset"), "epochs_crossed": meta.get("epochs_crossed"),
            "exit_code": run["exit_code"], "status": run["status"], "executed_steps": run["executed_steps"],
            "events": run["events"], "event_kinds": run["event_kinds"], "skips": run["skips"],
            "rollbacks": run["rollbacks"], "remedy_restarts": run["remedy_restarts"],
            "aborted": run["exit_code"] == EXIT_STABILITY_ABORT, "tokens_wasted": run["tokens_wasted"],
            "final_val": run["final_val"], "wall_seconds": meta.get("wall_seconds"),
        })
    clean_rows.sort(key=lambda r: (mode_key(r["mode"] or ""), str(r["recipe"]), r["seed"] or 0))
    false_positives = {}
    for mode in sorted({r["mode"] for r in clean_rows}, key=mode_key):
        rows = [r for r in clean_rows if r["mode"] == mode and r["exit_code"] != EXIT_CONFIG_ERROR]
        steps = sum(r["executed_steps"] for r in rows)
        events = sum(r["events"] for r in rows)
        kinds = {}
        for r in rows:
            for k, n in r["event_kinds"].items():
                kinds[k] = kinds.get(k, 0) + n
        rollbacks = sum(r["rollbacks"] for r in rows)
        false_positives[mode] = {
            "runs": len(rows), "steps": steps, "events": events, "event_kinds": kinds,
            "events_per_1000_steps": 1000.0 * events / steps if steps else None,
            "skips": sum(r["skips"] for r in rows), "rollbacks": rollbacks,
            "remedy_restarts": sum(r["remedy_restarts"] for r in rows),
            "aborts": sum(1 for r in rows if r["aborted"]),
            "failed": sum(1 for r in rows if r["exit_code"] not in (0, EXIT_STABILITY_ABORT, None)),
            "meets_target": rollbacks == 0 if rows else None,
        }

    healthy_rows = []
    for name, run in analysed.items():
        if run["meta"].get("kind") == "healthy":
            healthy_rows.append({"name": name, "description": run["meta"].get("description", ""),
                                 "exit_code": run["exit_code"], "status": run["status"],
                                 "final_val": run["final_val"], "steps": run["meta"].get("steps"),
                                 "final_tokens_seen": run["last_tokens_seen"]})
    walls = [m.get("wall_seconds") for m in sidecars if isinstance(m.get("wall_seconds"), (int, float))]
    return {
        "out": out,
        "runs": len(sidecars),
        "run_seconds": sum(walls),
        "definitions": {"rescue_delta": RESCUE_DELTA, "abort_waste_fraction": ABORT_WASTE_FRACTION,
                        "rescue_target": RESCUE_TARGET, "clean_rollbacks_target": 0},
        "healthy": healthy_rows,
        "unstable": unstable_rows,
        "rescue": rescue,
        "clean": clean_rows,
        "false_positives": false_positives,
    }


# ---------------------------------------------------------------------------------------------
# Rendering


def fmt_val(x, digits=4):
    return f"{x:.{digits}f}" if finite(x) else "-"


def fmt_pct(x):
    return f"{100 * x:.0f}%" if x is not None else "n/a"


def fmt_kinds(count, kinds):
    if not count:
        return "0"
    return f"{count}: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))


def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in row) + " |")
    return lines


def render_markdown(report):
    d = report["definitions"]
    lines = ["# Stability benchmark", ""]
    if report["healthy"]:
        lines += ["## Healthy references (monitor off, default LR)", ""]
        lines += md_table(["run", "what", "exit", "status", "final val loss"],
                          [[h["name"], h["description"], h["exit_code"], h["status"], fmt_val(h["final_val"])]
                           for h in report["healthy"]])
        lines.append("")
    lines += ["## Unstable scenarios", ""]
    rows = []
    for r in report["unstable"]:
        rb = str(r["rollbacks"]) + (f" +{r['remedy_restarts']} remedy" if r["remedy_restarts"] else "")
        if r["rescued"] is None:
            rescued = f"n/a ({r['how']})"
        elif r["mode"] == "off":
            rescued = "unneeded" if r["rescued"] else "no (unstable)"
        else:
            rescued = ("yes" if r["rescued"] else "no") + (f" ({r['how']})" if r["how"] != "val" else "")
        delta = f"{r['delta']:+.3f}" if finite(r["delta"]) else "-"
        rows.append([r["scenario"], r["mode"], r["exit_code"], r["status"], fmt_kinds(r["events"], r["event_kinds"]),
                     r["skips"], rb, f"{r['tokens_wasted']:,}", fmt_val(r["final_val"]), fmt_val(r["healthy_val"]),
                     delta, rescued])
    lines += md_table(["scenario", "mode", "exit", "status", "events", "skips", "rollbacks", "tokens wasted",
                       "final val", "healthy val", "delta", "rescued"], rows)
    lines += ["", "## Rescue rate per mode", ""]
    rows = []
    for mode, s in report["rescue"].items():
        target = "-" if mode == "off" else (f">= {fmt_pct(d['rescue_target'])}: " +
                                            ("met" if s["meets_target"] else "NOT met" if s["meets_target"] is False else "n/a"))
        rows.append([mode, f"{s['rescued_confirmed']}/{s['confirmed_unstable']}", fmt_pct(s["rate"]),
                     f"{s['rescued']}/{s['judged']}", fmt_pct(s["rate_all"]), s["aborts_rescued"],
                     f"{s['tokens_wasted']:,}", s["not_judged"], target])
    lines += md_table(["mode", "rescued (confirmed unstable)", "rate", "rescued (all scenarios)", "rate (all)",
                       "of them by abort", "tokens wasted", "not judged", "target"], rows)
    lines += ["", "## Clean runs", ""]
    rows = [[r["recipe"], r["seed"], r["mode"], r["dataset"] or "-",
             r["epochs_crossed"] if r["epochs_crossed"] is not None else "-", r["exit_code"], r["executed_steps"],
             fmt_kinds(r["events"], r["event_kinds"]), r["skips"], r["rollbacks"] + r["remedy_restarts"],
             fmt_val(r["final_val"])] for r in report["clean"]]
    lines += md_table(["recipe", "seed", "mode", "data", "epochs crossed", "exit", "steps", "events", "skips",
                       "rollbacks", "final val"], rows)
    lines += ["", "## False positives on clean runs", ""]
    rows = []
    for mode, s in report["false_positives"].items():
        per_k = f"{s['events_per_1000_steps']:.2f}" if s["events_per_1000_steps"] is not None else "n/a"
        target = "0: " + ("met" if s["meets_target"] else "NOT met" if s["meets_target"] is False else "n/a")
        rows.append([mode, s["runs"], s["steps"], fmt_kinds(s["events"], s["event_kinds"]), per_k, s["skips"],
                     s["rollbacks"], target, s["remedy_restarts"], s["aborts"], s["failed"]])
    lines += md_table(["mode", "runs", "steps", "events", "events / 1,000 steps", "skips", "rollbacks",
                       "rollback target", "remedy restarts", "aborts", "failed runs"], rows)
    lines += ["", "Definitions:",
              f"- rescued: a complete run whose final val loss is within {d['rescue_delta']} of the healthy run's "
              f"(same shape, seed and steps, so equal tokens), or a clear abort (exit 3, status aborted) whose message "
              f"mentions the learning rate after at most {fmt_pct(d['abort_waste_fraction'])} of the run's steps "
              f"executed (replays included; for the mid-run LR change counted from the resume).",
              "- off rows: `unneeded` = the run ends within the margin without a monitor, so the scenario is not "
              "confirmed unstable and is left out of the first rate; `rate (all)` counts every scenario.",
              "- tokens wasted: sum over rollbacks of (step ordered - rollback target) x tokens per step, plus the "
              "steps of a run superseded by a remedy child run (restart from step 0).",
              "- events: stability events of every kind but `recovered`; rollbacks: `rollback_to` records in "
              "metrics.jsonl (in-process restarts included) + remedy child runs.",
              "- not judged: runs with a config error (exit 2: the binary lacks a key or mode) or no healthy value.",
              "", f"{report.get('runs', 0)} runs, {report.get('run_seconds', 0) / 60:.1f} min of training in all.", ""]
    return "\n".join(lines)


def main(argv):
    args = list(argv)
    json_path = md_path = None
    quiet = False
    if "--quiet" in args:
        args.remove("--quiet")
        quiet = True
    for flag in ("--json", "--md"):
        if flag in args:
            i = args.index(flag)
            if i + 1 >= len(args):
                print(__doc__, file=sys.stderr)
                return 2
            if flag == "--json":
                json_path = args[i + 1]
            else:
                md_path = args[i + 1]
            del args[i:i + 2]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = args[0]
    report = build_report(out)
    json_path = json_path or os.path.join(out, "report.json")
    md_path = md_path or os.path.join(out, "report.md")
    markdown = render_markdown(report)
    with open(json_path, "w") as f:
        json.dump(report, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
    with open(md_path, "w") as f:
        f.write(markdown)
    if not quiet:
        print(markdown)
        print(f"written: {md_path}, {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
