#!/usr/bin/env python3
"""An independent GPT forward + loss for the modern recipe knobs, written from the papers'
definitions with Debian's python3-torch (1.13), float64, no Keel code: the reference that
tests/model/test_recipe_knobs.cpp compares Keel's loss terms and gradients against.

  norm=rms:       y = x / sqrt(mean(x^2) + 1e-6) * w                 (Zhang & Sennrich 2019)
  norm=pre_ln:    torch.nn.functional.layer_norm(eps=1e-5)
  qk_norm:        the same norms over each head's D dims of q and k, weights shared by the heads
  position=rope:  rotate-half pairs (i, i + D/2) by angle pos * 10000^(-2i/D)   (Su et al. 2021)
  z-loss:         mean over tokens of logsumexp(logits)^2                        (PaLM)

Usage: recipe_reference.py DIR, where DIR holds config.json (the model config, tokens, targets)
and one float64 .bin per parameter (names in config.json["parameters"]: name -> shape). Writes
DIR/reference.json: {"cross_entropy", "z", "objective", "grads": {name: [...]}} (gradients of
cross_entropy + z_loss * z).
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def norm(x, kind, weight, bias):
    if kind == "rms":
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6) * weight
    return F.layer_norm(x, (x.shape[-1],), weight, bias, 1e-5)


def rotary(x):  # (B, H, T, D)
    T, D = x.shape[-2], x.shape[-1]
    half = D // 2
    inv_freq = torch.tensor([10000.0 ** (-2.0 * i / D) for i in range(half)])
    angles = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]  # (T, D/2)
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def main():
    folder = sys.argv[1]
    cfg = json.load(open(os.path.join(folder, "config.json")))
    m = cfg["model"]
    P = {}
    for name, shape in cfg["parameters"].items():
        values = np.fromfile(os.path.join(folder, name + ".bin"), dtype="<f8")
        P[name] = torch.tensor(values.reshape(shape), requires_grad=True)
    idx = torch.tensor(cfg["tokens"], dtype=torch.long)      # (B, T)
    targets = torch.tensor(cfg["targets"], dtype=torch.long)  # (B, T)
    B, T = idx.shape
    C, H = m["d_model"], m["num_heads"]
    D = C // H
    get = lambda name: P.get(name)

    x = P["wte.weight"][idx]
    if m["position"] == "learned":
        x = x + P["wpe.weight"][:T]
    for i in range(m["num_layers"]):
        p = "blocks.%d." % i
        a_in = norm(x, m["norm"], get(p + "ln_1.weight"), get(p + "ln_1.bias")) if m["norm"] != "none" else x
        qkv = a_in @ P[p + "attn.c_attn.weight"].T
        if get(p + "attn.c_attn.bias") is not None:
            qkv = qkv + P[p + "attn.c_attn.bias"]
        q, k, v = [t.reshape(B, T, H, D).transpose(1, 2) for t in qkv.split(C, dim=-1)]
        if m["qk_norm"] != "none":
            q = norm(q, m["qk_norm"], P[p + "attn.q_norm.weight"], get(p + "attn.q_norm.bias"))
            k = norm(k, m["qk_norm"], P[p + "attn.k_norm.weight"], get(p + "attn.k_norm.bias"))
        if m["position"] == "rope":
            q, k = rotary(q), rotary(k)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
        y = torch.softmax(scores.masked_fill(mask, float("-inf")), -1) @ v  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(B, T, C) @ P[p + "attn.c_proj.weight"].T
        if get(p + "attn.c_proj.bias") is not None:
            y = y + P[p + "attn.c_proj.bias"]
        h = x + y
        m_in = norm(h, m["norm"], get(p + "ln_2.weight"), get(p + "ln_2.bias")) if m["norm"] != "none" else h
        lin = lambda t, name: t @ P[p + name + ".weight"].T + (P[p + name + ".bias"] if get(p + name + ".bias") is not None else 0)
        if m["activation"] == "swiglu":
            hidden = F.silu(lin(m_in, "mlp.w_gate")) * lin(m_in, "mlp.w_up")
        elif m["activation"] == "relu":
            hidden = torch.relu(lin(m_in, "mlp.c_fc"))
        else:
            hidden = F.gelu(lin(m_in, "mlp.c_fc"), approximate="tanh")
        x = h + lin(hidden, "mlp.c_proj")
    if m["norm"] != "none":
        x = norm(x, m["norm"], P["ln_f.weight"], get("ln_f.bias"))
    head = P["lm_head.weight"] if "lm_head.weight" in P else P["wte.weight"]
    logits = (x @ head.T).reshape(B * T, -1)
    ce = F.cross_entropy(logits, targets.reshape(-1))
    z = (torch.logsumexp(logits, -1) ** 2).mean()
    objective = ce + cfg["z_loss"] * z
    objective.backward()
    out = {"cross_entropy": ce.item(), "z": z.item(), "objective": objective.item(),
           "grads": {name: t.grad.reshape(-1).tolist() for name, t in P.items()}}
    json.dump(out, open(os.path.join(folder, "reference.json"), "w"))


if __name__ == "__main__":
    main()
