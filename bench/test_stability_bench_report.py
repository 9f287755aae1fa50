#!/usr/bin/env python3
"""Checks the arithmetic of bench/stability_bench_report.py on run directories fabricated under a
temporary folder: a healthy run, an unstable run left alone (monitor off), one rescued by
rollbacks, one by a remedy child run, a clear abort, an abort without LR advice, a late abort, a
config error, a mid-run LR change (resume segment), and clean runs (one event + recovered, one
rollback). Standard library only; not part of ctest.

Usage: python3 bench/test_stability_bench_report.py
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import stability_bench_report as report  # noqa: E402

CONFIG = """run:
  name: ""  # run directory name under runs_root; empty = recipe-timestamp
  runs_root: "runs"  # folder holding run directories
  recipe: "vanilla"  # recipe name; empty = the config file's stem
model:
  vocab_size: 8192  # vocabulary
  context_length: 128  # tokens of context
  d_model: 192  # width: "#" inside a comment
train:
  steps: {steps}  # total optimizer steps
  batch_size: {batch}  # sequences per micro-batch per data-parallel rank
  seq_len: {seq_len}  # tokens per sequence; 0 = model.context_length
  grad_accum: {accum}  # micro-batches per optimizer step
  lr: 0.001  # peak learning rate
parallel:
  dp: 1  # data-parallel ranks
  tp: 1  # tensor-parallel ranks
"""


class Fab:
    """Writes run directories and bench sidecars under OUT/runs."""

    def __init__(self, out):
        self.out = out
        self.runs = os.path.join(out, "runs")
        os.makedirs(self.runs)
        self.seq = 0

    def run(self, name, *, steps=300, batch=8, seq_len=0, accum=1, info=None, metrics=(), events=(), sidecar=None):
        d = os.path.join(self.runs, name)
        os.makedirs(d)
        with open(os.path.join(d, "config.yaml"), "w") as f:
            f.write(CONFIG.format(steps=steps, batch=batch, seq_len=seq_len, accum=accum))
        if info is not None:
            with open(os.path.join(d, "run_info.json"), "w") as f:
                json.dump(info, f)
        with open(os.path.join(d, "metrics.jsonl"), "w") as f:
            for m in metrics:
                f.write(json.dumps(m) + "\n")
        with open(os.path.join(d, "events.jsonl"), "w") as f:
            for e in events:
                f.write(json.dumps(e) + "\n")
        if sidecar is not None:
            self.seq += 1
            meta = {"name": name, "seq": self.seq, "steps": steps, "segment_start": 0}
            meta.update(sidecar)
            with open(os.path.join(self.runs, name + ".bench.json"), "w") as f:
                json.dump(meta, f)
        return d


def steps(first, last, tps=1024, start_tokens=0, **extra):
    """Metrics records of applied steps first..last-1."""
    return [dict({"step": s, "loss": 6.5, "grad_norm": 0.5, "lr": 1e-3,
                  "tokens_seen": start_tokens + (s + 1 - first) * tps}, **extra) for s in range(first, last)]


def done(val, final_step=300, code=0, status="completed", message=None, parent=None):
    info = {"status": status, "exit_code": code, "final_step": final_step, "parent": parent}
    if val is not None:
        info["final_val_loss"] = val
    if message is not None:
        info["message"] = message
    return info


def fabricate(out):
    fab = Fab(out)
    H = {"kind": "healthy"}
    fab.run("healthy-vanilla", info=done(6.20), metrics=steps(0, 300) + [{"step": 299, "val_loss": 6.20}],
            sidecar=dict(H, scenario="healthy-vanilla"))
    # Small batch with grad_accum 2 and an explicit seq_len: 2 * 64 * 2 = 256 tokens per step.
    fab.run("healthy-batch2", batch=2, seq_len=64, accum=2, info=done(6.60), metrics=steps(0, 300, tps=256),
            sidecar=dict(H, scenario="healthy-batch2"))

    U = {"kind": "unstable", "scenario": "hi-lr", "healthy": "healthy-vanilla"}
    # Monitor off: collapsed, completes 0.9 worse -> confirms the scenario is unstable.
    fab.run("hi-lr-off", info=done(7.10), metrics=steps(0, 300), sidecar=dict(U, mode="off"))
    # Rollback mode: two rollbacks (120 -> 100, 180 -> 150), two skips, three events + one recovered;
    # ends 0.05 above healthy -> rescued. Wasted: (20 + 30) steps * 1024 tokens.
    m = steps(0, 120)
    m[60]["skipped"] = True
    m[61]["skipped"] = True
    m.append({"step": 120, "loss": 9.0, "grad_norm": 50.0, "lr": 1e-3, "rollback_to": 100, "events": ["loss_spike"]})
    m += steps(100, 180)
    m.append({"step": 180, "loss": 9.0, "grad_norm": 50.0, "lr": 1e-3, "rollback_to": 150})
    m += steps(150, 300)
    ev = [{"kind": "grad_explosion", "step": 60, "action": "skip_update"},
          {"kind": "loss_spike", "step": 120, "action": "rollback"},
          {"kind": "recovered", "step": 140, "action": "apply"},
          {"kind": "sustained_spike", "step": 180, "action": "rollback"}]
    fab.run("hi-lr-rollback", info=done(6.25), metrics=m, events=ev, sidecar=dict(U, mode="rollback"))
    # Remedy: the parent rolls back once (40 -> 0) and hands over at step 60; the child (scaled
    # embeddings, batch 4 => 512 tokens per step) completes at 6.28. Wasted: 40*1024 + 60*1024.
    m = steps(0, 40) + [{"step": 40, "loss": 9.0, "grad_norm": 200.0, "lr": 3e-2, "rollback_to": 0}] + steps(0, 60)
    m.append({"step": 60, "loss": 9.0, "grad_norm": 200.0, "lr": 3e-2})
    parent = fab.run("hi-lr-skip_only", info=done(None, final_step=60, status="remedy_restart",
                                                  message="spikes persist: remedy restart"),
                     metrics=m, events=[{"kind": "grad_explosion", "step": 40, "action": "rollback"},
                                        {"kind": "lr_too_high", "step": 60, "action": "remedy_restart"}],
                     sidecar=dict(U, mode="skip_only"))
    fab.run("hi-lr-skip_only-remedy", batch=4, info=done(6.28, parent=parent), metrics=steps(0, 300, tps=512),
            events=[{"kind": "grad_explosion", "step": 7, "action": "clip"}])
    # A clear abort: exit 3, LR advice, 25 executed steps (<= 30 = 10% of 300).
    fab.run("hi-lr-clip_only", info=done(None, final_step=24, code=3, status="aborted",
                                         message="loss flat at the unigram level; the learning rate is too high "
                                                 "(train.lr=3e-2): lower it to 3e-3"),
            metrics=steps(0, 24) + [{"step": 24, "loss": 7.2, "grad_norm": 1.0, "lr": 3e-2, "events": ["flat_loss"]}],
            events=[{"kind": "flat_loss", "step": 24, "action": "abort"}], sidecar=dict(U, mode="clip_only"))
    # Observe: completes but stays bad (delta +0.8) -> not rescued.
    fab.run("hi-lr-observe", info=done(7.00), metrics=steps(0, 300),
            events=[{"kind": "grad_explosion", "step": 3, "action": "observe"},
                    {"kind": "flat_loss", "step": 200, "action": "observe"}], sidecar=dict(U, mode="observe"))

    V = {"kind": "unstable", "scenario": "no-advice", "healthy": "healthy-vanilla"}
    fab.run("no-advice-off", info=done(7.30), metrics=steps(0, 300), sidecar=dict(V, mode="off"))
    # Abort without advice -> not rescued.
    fab.run("no-advice-rollback", info=done(0.0, final_step=10, code=3, status="aborted",
                                            message="rollbacks exhausted (3 in 1000 steps)"),
            metrics=steps(0, 10) + [{"step": 10, "loss": 9, "grad_norm": 1, "lr": 1}], sidecar=dict(V, mode="rollback"))
    # Abort with advice but late: 3 rollbacks of 50 steps + 100 applied + the abort step = 251 > 30.
    m = []
    for _ in range(3):
        m += steps(0, 50) + [{"step": 50, "loss": 9, "grad_norm": 1, "lr": 1, "rollback_to": 0}]
    m += steps(0, 100) + [{"step": 100, "loss": 9, "grad_norm": 1, "lr": 1}]
    fab.run("no-advice-clip_only", info=done(None, final_step=100, code=3, status="aborted",
                                             message="lower the learning rate"),
            metrics=m, sidecar=dict(V, mode="clip_only"))
    # A config error (the binary lacks the mode): not judged.
    fab.run("no-advice-observe", info=None, sidecar=dict(V, mode="observe", exit_code=2))

    # Monitor off already fine (delta +0.05): the scenario is not confirmed unstable.
    W = {"kind": "unstable", "scenario": "mild", "healthy": "healthy-batch2"}
    fab.run("mild-off", batch=2, seq_len=64, accum=2, info=done(6.65), metrics=steps(0, 300, tps=256),
            sidecar=dict(W, mode="off"))
    fab.run("mild-rollback", batch=2, seq_len=64, accum=2, info=done(6.80), metrics=steps(0, 300, tps=256),
            sidecar=dict(W, mode="rollback"))

    # Mid-run LR change: base records 0..149 (with a base-segment event and rollback that must not
    # count), then the resumed segment: rollback 170 -> 100 (70 steps wasted), completes at 6.22.
    R = {"kind": "unstable", "scenario": "resume", "healthy": "healthy-vanilla", "segment_start": 150}
    base = steps(0, 80) + [{"step": 80, "loss": 9, "grad_norm": 9, "lr": 1e-3, "rollback_to": 50}] + steps(50, 150)
    base_ev = [{"kind": "loss_spike", "step": 80, "action": "rollback"}]
    fab.run("resume-off", info=done(7.40), metrics=base + steps(150, 300), events=base_ev, sidecar=dict(R, mode="off"))
    m = base + steps(150, 170) + [{"step": 170, "loss": 9, "grad_norm": 9, "lr": 3e-2, "rollback_to": 100}]
    m += steps(100, 300)
    fab.run("resume-rollback", info=done(6.22), metrics=m,
            events=base_ev + [{"kind": "grad_explosion", "step": 170, "action": "rollback"},
                              {"kind": "update_ratio", "step": 120, "action": "clip"}],
            sidecar=dict(R, mode="rollback"))
    # Resumed segment aborted at once with advice: 5 executed steps after the resume <= 30.
    fab.run("resume-clip_only", info=done(None, final_step=154, code=3, status="aborted",
                                          message="the LR is too high for this model"),
            metrics=base + steps(150, 154) + [{"step": 154, "loss": 9, "grad_norm": 9, "lr": 3e-2}],
            events=base_ev, sidecar=dict(R, mode="clip_only"))

    C = {"kind": "clean", "recipe": "vanilla", "dataset": "epoch", "epochs_crossed": 2}
    fab.run("clean-vanilla-rollback-seed1", info=done(6.5), metrics=steps(0, 300),
            events=[{"kind": "loss_spike", "step": 131, "action": "skip_update"},
                    {"kind": "recovered", "step": 141, "action": "apply"}],
            sidecar=dict(C, mode="rollback", seed=1))
    m = steps(0, 200) + [{"step": 200, "loss": 9, "grad_norm": 9, "lr": 1e-3, "rollback_to": 150}] + steps(150, 300)
    fab.run("clean-vanilla-rollback-seed2", info=done(6.5), metrics=m,
            events=[{"kind": "sustained_spike", "step": 200, "action": "rollback"}],
            sidecar=dict(C, mode="rollback", seed=2))
    fab.run("clean-vanilla-observe-seed1", info=done(6.5), metrics=steps(0, 300), sidecar=dict(C, mode="observe", seed=1))
    return fab


class ReportArithmetic(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="keel-stability-bench-test-")
        cls.out = os.path.join(cls.tmp, "out")
        fabricate(cls.out)
        cls.report = report.build_report(cls.out)
        cls.rows = {r["name"]: r for r in cls.report["unstable"]}
        cls.clean = {r["name"]: r for r in cls.report["clean"]}

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_config_parsing(self):
        cfg = report.read_config(os.path.join(self.out, "runs", "healthy-vanilla", "config.yaml"))
        self.assertEqual(cfg["train.batch_size"], 8)
        self.assertEqual(cfg["model.d_model"], 192)
        self.assertEqual(cfg["run.name"], "")
        self.assertEqual(cfg["run.recipe"], "vanilla")
        self.assertAlmostEqual(cfg["train.lr"], 1e-3)
        self.assertEqual(report.tokens_per_step(cfg), 1024)
        cfg2 = report.read_config(os.path.join(self.out, "runs", "healthy-batch2", "config.yaml"))
        self.assertEqual(report.tokens_per_step(cfg2), 256)

    def test_healthy(self):
        vals = {h["name"]: h["final_val"] for h in self.report["healthy"]}
        self.assertEqual(vals, {"healthy-vanilla": 6.20, "healthy-batch2": 6.60})

    def test_off_run_not_rescued(self):
        r = self.rows["hi-lr-off"]
        self.assertFalse(r["rescued"])
        self.assertAlmostEqual(r["delta"], 0.90)
        self.assertEqual(r["tokens_wasted"], 0)

    def test_rollbacks(self):
        r = self.rows["hi-lr-rollback"]
        self.assertEqual(r["rollbacks"], 2)
        self.assertEqual(r["skips"], 2)
        self.assertEqual(r["events"], 3)  # "recovered" left out
        self.assertEqual(r["event_kinds"], {"grad_explosion": 1, "loss_spike": 1, "sustained_spike": 1})
        self.assertEqual(r["tokens_wasted"], (20 + 30) * 1024)
        self.assertAlmostEqual(r["delta"], 0.05)
        self.assertTrue(r["rescued"])
        self.assertEqual(r["how"], "val")

    def test_remedy_child(self):
        r = self.rows["hi-lr-skip_only"]
        self.assertEqual(len(r["chain"]), 2)
        self.assertTrue(r["chain"][1].endswith("hi-lr-skip_only-remedy"))
        self.assertEqual(r["remedy_restarts"], 1)
        self.assertEqual(r["rollbacks"], 1)
        self.assertEqual(r["tokens_wasted"], 40 * 1024 + 60 * 1024)
        self.assertEqual(r["events"], 3)  # parent 2 + child 1
        self.assertAlmostEqual(r["final_val"], 6.28)
        self.assertEqual(r["status"], "completed")
        self.assertTrue(r["rescued"])
        self.assertEqual(r["final_tokens_seen"], 300 * 512)

    def test_clear_abort(self):
        r = self.rows["hi-lr-clip_only"]
        self.assertEqual(r["exit_code"], 3)
        self.assertEqual(r["executed_steps"], 25)
        self.assertTrue(r["rescued"])
        self.assertEqual(r["how"], "abort")

    def test_bad_aborts(self):
        r = self.rows["no-advice-rollback"]
        self.assertFalse(r["rescued"])
        self.assertIn("no LR advice", r["how"])
        self.assertIsNone(r["final_val"])  # the 0.0 an aborted run may record is no loss
        r = self.rows["no-advice-clip_only"]
        self.assertEqual(r["executed_steps"], 3 * 51 + 101)
        self.assertEqual(r["tokens_wasted"], 3 * 50 * 1024)
        self.assertFalse(r["rescued"])
        self.assertIn("abort after 254 > 30 steps", r["how"])

    def test_config_error_not_judged(self):
        r = self.rows["no-advice-observe"]
        self.assertEqual(r["exit_code"], 2)
        self.assertIsNone(r["rescued"])

    def test_resume_segment(self):
        r = self.rows["resume-rollback"]
        self.assertEqual(r["rollbacks"], 1)  # the base segment's rollback is not counted
        self.assertEqual(r["tokens_wasted"], 70 * 1024)
        self.assertEqual(r["events"], 2)  # grad_explosion at 170 and update_ratio at 120 (after it)
        self.assertEqual(r["executed_steps"], 20 + 1 + 200)
        self.assertTrue(r["rescued"])
        self.assertEqual(self.rows["resume-off"]["events"], 0)
        self.assertEqual(self.rows["resume-off"]["rollbacks"], 0)
        a = self.rows["resume-clip_only"]
        self.assertEqual(a["executed_steps"], 5)
        self.assertTrue(a["rescued"])

    def test_rescue_rates(self):
        rates = self.report["rescue"]
        # Confirmed unstable: hi-lr, no-advice, resume (mild's off run is within 0.1).
        self.assertEqual(rates["off"]["rescued_confirmed"], 0)
        self.assertEqual(rates["off"]["confirmed_unstable"], 3)
        self.assertEqual(rates["off"]["rescued"], 1)  # mild: unneeded
        rb = rates["rollback"]  # hi-lr yes, no-advice no, resume yes; mild (no, not confirmed)
        self.assertEqual((rb["rescued_confirmed"], rb["confirmed_unstable"]), (2, 3))
        self.assertAlmostEqual(rb["rate"], 2 / 3)
        self.assertEqual((rb["rescued"], rb["judged"]), (2, 4))
        self.assertFalse(rb["meets_target"])
        self.assertEqual(rb["tokens_wasted"], 50 * 1024 + 0 + 0 + 70 * 1024)
        cl = rates["clip_only"]  # hi-lr abort yes, no-advice late abort no, resume abort yes
        self.assertEqual((cl["rescued_confirmed"], cl["confirmed_unstable"]), (2, 3))
        self.assertEqual(cl["aborts_rescued"], 2)
        ob = rates["observe"]  # hi-lr no; no-advice config error (not judged)
        self.assertEqual((ob["rescued_confirmed"], ob["confirmed_unstable"], ob["not_judged"]), (0, 1, 1))
        sk = rates["skip_only"]
        self.assertEqual(sk["rate"], 1.0)
        self.assertTrue(sk["meets_target"])

    def test_false_positives(self):
        fp = self.report["false_positives"]["rollback"]
        self.assertEqual(fp["runs"], 2)
        self.assertEqual(fp["steps"], 300 + 201 + 150)
        self.assertEqual(fp["events"], 2)  # loss_spike + sustained_spike; "recovered" left out
        self.assertAlmostEqual(fp["events_per_1000_steps"], 2000 / 651)
        self.assertEqual(fp["rollbacks"], 1)
        self.assertFalse(fp["meets_target"])
        one = self.clean["clean-vanilla-rollback-seed1"]
        self.assertEqual((one["events"], one["rollbacks"], one["executed_steps"]), (1, 0, 300))
        ob = self.report["false_positives"]["observe"]
        self.assertEqual((ob["events"], ob["rollbacks"]), (0, 0))
        self.assertTrue(ob["meets_target"])

    def test_cli_writes_outputs(self):
        proc = subprocess.run([sys.executable, os.path.join(HERE, "stability_bench_report.py"), self.out],
                              capture_output=True, text=True)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("| hi-lr | rollback |", proc.stdout)
        self.assertIn("51,200", proc.stdout)
        with open(os.path.join(self.out, "report.md")) as f:
            md = f.read()
        self.assertIn("## False positives on clean runs", md)
        with open(os.path.join(self.out, "report.json")) as f:
            data = json.load(f)
        self.assertEqual(len(data["unstable"]), 14)

    def test_missing_and_broken_files(self):
        # A run whose folder vanished and one with a truncated metrics line: rows, not crashes.
        tmp = tempfile.mkdtemp(prefix="keel-stability-bench-test-")
        try:
            fab = Fab(tmp)
            fab.run("healthy-vanilla", info=done(6.2), metrics=steps(0, 300), sidecar={"kind": "healthy"})
            d = fab.run("x-off", info=done(6.9), metrics=steps(0, 10),
                        sidecar={"kind": "unstable", "scenario": "x", "mode": "off", "healthy": "healthy-vanilla"})
            with open(os.path.join(d, "metrics.jsonl"), "a") as f:
                f.write('{"step": 10, "loss": 1')
            with open(os.path.join(fab.runs, "x-rollback.bench.json"), "w") as f:
                json.dump({"name": "x-rollback", "kind": "unstable", "scenario": "x", "mode": "rollback",
                           "healthy": "healthy-vanilla", "exit_code": 124, "steps": 300}, f)
            rep = report.build_report(tmp)
            rows = {r["name"]: r for r in rep["unstable"]}
            self.assertEqual(rows["x-off"]["executed_steps"], 10)
            self.assertEqual(rows["x-rollback"]["exit_code"], 124)
            self.assertEqual(rows["x-rollback"]["status"], "missing")
            self.assertFalse(rows["x-rollback"]["rescued"])
            report.render_markdown(rep)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=1)
