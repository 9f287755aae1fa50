#!/usr/bin/env python3
"""The PyTorch reference for Keel's GPU benchmark (bench/train_bench.sh): the same GPT, init,
optimizer, precision, batch and data as `keel train`, run in eager mode and with torch.compile.

Mirrors model/gpt.cpp for the recipes the benchmark uses (pre-LN, GELU-tanh, learned positions,
tied embeddings, biases, no dropout) and worker/trainer.cpp's step: bf16 autocast around the
forward, fp32 master weights, global grad-norm clipping at train.grad_clip, AdamW (fused, decay
on linear matrices only, betas/eps/decay from the config) with linear warm-up + cosine LR.
Same init as Keel for the same seed: parameters are registered in Keel's order (block: ln_1,
ln_2, attn, mlp) and drawn one after another from the CPU generator right after
manual_seed(seed), exactly as GptImpl::reset_parameters does. Same data: the batches of step s
are read from the first training shard (llm.c layout: 256 int32 header, uint16 tokens) at token
offset s*B*T, as Keel's DataLoader does for one rank.

Prints one JSON object per mode (eager, compile) on stdout lines starting with "RESULT ":
tokens/s over the timed steps (wall clock between two synchronisations), step-time median and
spread (CUDA events), peak memory, and the losses of every step (warm-up included).
The timed loop never synchronises with the host: losses stay on the GPU until the end.
"""
import argparse
import glob
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)

    def forward(self, x):  # (B, T, C) -> (B, T, C)
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class Mlp(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.c_fc = nn.Linear(d, 4 * d)
        self.c_proj = nn.Linear(4 * d, d)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        # Keel's BlockImpl registers ln_1, ln_2, attn, mlp in this order (parameter order = RNG order).
        self.ln_1 = nn.LayerNorm(d)
        self.ln_2 = nn.LayerNorm(d)
        self.attn = Attention(d, heads)
        self.mlp = Mlp(d)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Gpt(nn.Module):
    def __init__(self, vocab, context, layers, heads, d):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(context, d)
        self.blocks = nn.ModuleList([Block(d, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)

    def forward(self, idx, targets):  # (B, T), (B, T) -> scalar loss
        T = idx.size(1)
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for block in self.blocks:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.t()  # (B, T, V), tied head
        return F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1))


def keel_init(model, seed, layers, std=0.02):
    """GptImpl::reset_parameters for init=normal_0.02, scaled_out_proj=true."""
    torch.manual_seed(seed)
    out_std = std / math.sqrt(2.0 * layers)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln_" in name:
                p.zero_() if name.endswith(".bias") else p.fill_(1.0)
            elif name.endswith(".bias"):
                p.zero_()
            elif ".c_proj.weight" in name:
                p.normal_(0.0, out_std)
            else:
                p.normal_(0.0, std)


def decays(name):  # GptImpl::decays
    if name.startswith("wte.") or name.startswith("wpe.") or "ln_" in name:
        return False
    return name.endswith(".weight")


def lr_at(step, peak, warmup, total, min_ratio):  # optim/lr_schedule.h
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    min_lr = peak * min_ratio
    progress = min(max((step - warmup) / max(1, total - warmup), 0.0), 1.0)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (peak - min_lr)


class Shard:
    def __init__(self, data_dir):
        path = sorted(glob.glob(os.path.join(data_dir, "train_*.bin")))[0]
        header = np.fromfile(path, dtype=np.int32, count=256)
        assert header[0] == 20240520 and header[1] == 1, f"{path}: not an llm.c token shard"
        self.tokens = np.fromfile(path, dtype=np.uint16, offset=1024, count=int(header[2]))
        self.path = path

    def batches(self, B, T, device):
        """Keel's DataLoader for one rank: sequential windows of B*T+1 tokens, wrapping at the end."""
        pos, n = 0, B * T
        while True:
            if pos + n + 1 > len(self.tokens):
                pos = 0
            w = torch.from_numpy(self.tokens[pos:pos + n + 1].astype(np.int64))
            pos += n
            yield (w[:-1].view(B, T).pin_memory().to(device, non_blocking=True),
                   w[1:].view(B, T).pin_memory().to(device, non_blocking=True))


def kernel_category(name):
    n = name.lower()
    if "flash" in n or "fmha" in n or "attention" in n:
        return "attention (SDPA)"
    if any(k in n for k in ("gemm", "cutlass", "xmma", "nvjet", "cublas", "sm90_")):
        return "matmul (cuBLAS)"
    if "adam" in n:
        return "optimizer"
    if "triton" in n:
        return "fused (Triton)"
    if "norm" in n and "layer" in n:
        return "layer norm"
    if "softmax" in n or "cross_entropy" in n or "nll" in n or "log_softmax" in n:
        return "softmax/cross-entropy"
    if "elementwise" in n or "vectorized" in n or "gelu" in n or "reduce" in n or "copy" in n or "fill" in n:
        return "elementwise/reduce"
    return "other"


def kernel_profile(step, args, steps=3):
    """GPU kernel time per category over a few steps (torch.profiler), and the GPU-busy fraction."""
    from torch.profiler import ProfilerActivity, profile
    torch.cuda.synchronize()
    start = time.time()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for i in range(steps):
            step(10_000 + i)
        torch.cuda.synchronize()
    wall = time.time() - start
    per_category, total = {}, 0.0
    for e in prof.key_averages():
        t = e.device_time_total if hasattr(e, "device_time_total") else e.cuda_time_total
        if t <= 0:
            continue
        c = kernel_category(e.key)
        per_category[c] = per_category.get(c, 0.0) + t / 1e3 / steps
        total += t / 1e3 / steps
    top = sorted(((e.device_time_total if hasattr(e, "device_time_total") else e.cuda_time_total, e.key)
                  for e in prof.key_averages()), reverse=True)[:12]
    return {"ms_per_step_by_category": {k: round(v, 2) for k, v in sorted(per_category.items(), key=lambda kv: -kv[1])},
            "kernel_ms_per_step": round(total, 2), "wall_ms_per_step_profiled": round(1e3 * wall / steps, 2),
            "top_kernels_ms_per_step": [[k[:90], round(t / 1e3 / steps, 2)] for t, k in top]}


def run(mode, args, shard):
    device = torch.device("cuda")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = Gpt(args.vocab, args.context, args.layers, args.heads, args.d)
    keel_init(model, args.seed, args.layers)
    model.to(device)
    groups = [{"params": [p for n, p in model.named_parameters() if decays(n)], "weight_decay": args.weight_decay},
              {"params": [p for n, p in model.named_parameters() if not decays(n)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps, fused=True)
    loss_fn = torch.compile(model) if mode == "compile" else model
    data = shard.batches(args.batch, args.context, device)
    params = list(model.parameters())

    def step(s):
        x, y = next(data)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, args.grad_clip, foreach=True)
        for g in opt.param_groups:
            g["lr"] = lr_at(s, args.lr, args.warmup, args.total_steps, args.min_lr_ratio)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    losses = []
    t0 = time.time()
    for s in range(args.warmup_steps):
        losses.append(step(s))
    torch.cuda.synchronize()
    warmup_seconds = time.time() - t0
    events = [torch.cuda.Event(enable_timing=True) for _ in range(args.steps + 1)]
    start = time.time()
    events[0].record()
    for i in range(args.steps):
        losses.append(step(args.warmup_steps + i))
        events[i + 1].record()
    torch.cuda.synchronize()
    seconds = time.time() - start
    times = [events[i].elapsed_time(events[i + 1]) / 1e3 for i in range(args.steps)]
    profile = kernel_profile(step, args) if args.profile else None
    q = statistics.quantiles(times, n=10)
    tokens = args.steps * args.batch * args.context
    result = {
        "mode": mode, "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
        "batch": args.batch, "seq": args.context, "timed_steps": args.steps, "warmup_steps": args.warmup_steps,
        "warmup_seconds": round(warmup_seconds, 2),
        "tokens_per_second": tokens / seconds, "step_time_median": statistics.median(times),
        "step_time_p10": q[0], "step_time_p90": q[-1],
        "peak_memory_bytes": torch.cuda.max_memory_allocated(),
        "losses": [float(v) for v in torch.stack(losses).cpu()],
    }
    if profile:
        result["kernel_profile"] = profile
    del model, opt, loss_fn
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=".cache/keel/data/embedded")
    p.add_argument("--modes", default="eager,compile")
    p.add_argument("--vocab", type=int, default=50304)
    p.add_argument("--context", type=int, default=1024)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--d", type=int, default=768)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--warmup-steps", type=int, default=5, help="untimed steps first (compilation, allocator)")
    p.add_argument("--steps", type=int, default=30, help="timed steps")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--warmup", type=int, default=200, help="LR warm-up steps (train.warmup_steps)")
    p.add_argument("--total-steps", type=int, default=5000, help="train.steps (the cosine's length)")
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.95)
    p.add_argument("--eps", type=float, default=1e-8)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--profile", action="store_true", help="add a kernel-time breakdown (torch.profiler, 3 steps)")
    args = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False  # LibTorch's default, as in Keel
    shard = Shard(args.data_dir)
    for mode in args.modes.split(","):
        print("RESULT " + json.dumps(run(mode, args, shard)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
