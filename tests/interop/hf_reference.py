#!/usr/bin/env python3
"""An independent Hugging Face GPT-2 reference for Keel's export/import/score (tests/interop).

Shares no code with Keel: it reads safetensors with tests/checkpoint/read_safetensors.py (Python
standard library) and runs GPT-2's forward pass from scratch in float64 with python3-torch, with
transformers' GPT2LMHeadModel names and layouts (Conv1D weights (in, out), q|k|v fused in c_attn,
lm_head tied to wte unless tie_word_embeddings is false, gelu_new = tanh GELU). transformers itself
is not needed.

    hf_reference.py check DIR
        DIR is a GPT2LMHeadModel folder: config.json fields, safetensors metadata {"format": "pt"},
        and exactly the tensors GPT2LMHeadModel expects with their shapes (what transformers would
        report as missing or unexpected weights)
    hf_reference.py compare DIR SCORE_JSON [--tol 1e-4]
        the log-probs of `keel score --json` against this forward on the same tokens; prints the
        largest difference; exit 1 above the tolerance
    hf_reference.py make DIR [--variant gpt2|untied-relu|f16-head] [--seed N] [--set KEY=JSON ...]
        writes a random GPT-2 folder (config.json + model.safetensors, written here by hand)
    hf_reference.py tokens FILE --vocab V --length T [--count N] [--seed S]
        writes N random sequences of T ids in [0, V) as a JSON array of arrays
Exit status 0 on success, 1 on a mismatch or a malformed folder, 2 on bad usage.
"""
import json
import math
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "checkpoint"))
import read_safetensors  # noqa: E402  (tests/checkpoint/read_safetensors.py)

# GPT2Config's defaults for fields a config.json may leave out.
DEFAULTS = {"vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12, "n_inner": None,
            "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True,
            "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False}


class Mismatch(Exception):
    pass


def load_config(folder):
    with open(os.path.join(folder, "config.json")) as f:
        return load_config_dict(json.load(f))


def load_config_dict(config):
    """(config.json as written, the same with GPT2Config's defaults filled in)."""
    cfg = dict(DEFAULTS)
    cfg.update({k: v for k, v in config.items() if v is not None or k == "n_inner"})
    return config, cfg


def expected_shapes(cfg):
    """HF name -> shape for GPT2LMHeadModel (prefixed names)."""
    V, T, C, L = cfg["vocab_size"], cfg["n_positions"], cfg["n_embd"], cfg["n_layer"]
    Hd = cfg["n_inner"] or 4 * C
    shapes = {"transformer.wte.weight": [V, C], "transformer.wpe.weight": [T, C],
              "transformer.ln_f.weight": [C], "transformer.ln_f.bias": [C]}
    for i in range(L):
        p = "transformer.h.%d." % i
        shapes.update({p + "ln_1.weight": [C], p + "ln_1.bias": [C], p + "ln_2.weight": [C], p + "ln_2.bias": [C],
                       p + "attn.c_attn.weight": [C, 3 * C], p + "attn.c_attn.bias": [3 * C],
                       p + "attn.c_proj.weight": [C, C], p + "attn.c_proj.bias": [C],
                       p + "mlp.c_fc.weight": [C, Hd], p + "mlp.c_fc.bias": [Hd],
                       p + "mlp.c_proj.weight": [Hd, C], p + "mlp.c_proj.bias": [C]})
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head.weight"] = [V, C]
    return shapes


def load_weights(folder, cfg, exported=True):
    """HF name -> float64 tensor, exactly the tensors GPT2LMHeadModel expects (what transformers
    warns about otherwise). exported: also no lm_head.weight beside a tied head (Keel's export
    writes it as save_pretrained does); else a tied copy is tolerated and ignored."""
    metadata, tensors, _ = read_safetensors.read(os.path.join(folder, "model.safetensors"))
    weights = {}
    for name, dtype, shape, values in tensors:
        canonical = name if name.startswith(("transformer.", "lm_head.")) else "transformer." + name
        if canonical.endswith((".attn.bias", ".attn.masked_bias")):  # not ".c_attn.bias"
            continue  # causal-mask buffers of older files
        weights[canonical] = torch.tensor(values, dtype=torch.float64).reshape(shape)
    shapes = expected_shapes(cfg)
    if not exported and cfg["tie_word_embeddings"]:
        weights.pop("lm_head.weight", None)  # transformers ties it to wte on load
    if metadata.get("format") != "pt":
        raise Mismatch("safetensors metadata %r lacks format=pt (transformers refuses the file)" % metadata)
    missing = sorted(set(shapes) - set(weights))
    unexpected = sorted(set(weights) - set(shapes))
    if missing or unexpected:
        raise Mismatch("missing weights %s, unexpected weights %s" % (missing, unexpected))
    for name, shape in shapes.items():
        if name in weights and list(weights[name].shape) != shape:
            raise Mismatch("%s has shape %s, GPT2LMHeadModel expects %s" % (name, list(weights[name].shape), shape))
    return weights


def check_config(config, cfg, exported=True):
    """exported: what Keel's export writes (gelu_new or relu); else any tanh-GELU name transformers has."""
    problems = []
    if config.get("model_type") != "gpt2":
        problems.append("model_type %r" % config.get("model_type"))
    if config.get("architectures") != ["GPT2LMHeadModel"]:
        problems.append("architectures %r" % config.get("architectures"))
    allowed = ("gelu_new", "relu") if exported else ("gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu")
    if cfg["activation_function"] not in allowed:
        problems.append("activation_function %r" % cfg["activation_function"])
    if abs(cfg["layer_norm_epsilon"] - 1e-5) > 1e-12:
        problems.append("layer_norm_epsilon %r" % cfg["layer_norm_epsilon"])
    if cfg["n_embd"] % cfg["n_head"]:
        problems.append("n_embd %% n_head != 0")
    if problems:
        raise Mismatch("config.json: " + "; ".join(problems))


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def activation(name, x):
    if name == "relu":
        return torch.clamp(x, min=0)
    # gelu_new (transformers' NewGELUActivation), and the same tanh formula for gelu_pytorch_tanh.
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def forward(W, cfg, tokens):
    """GPT2LMHeadModel's logits (T, V) in float64 for one sequence of ids."""
    C, H, eps = cfg["n_embd"], cfg["n_head"], cfg["layer_norm_epsilon"]
    D = C // H
    T = len(tokens)
    idx = torch.tensor(tokens, dtype=torch.long)
    x = W["transformer.wte.weight"][idx] + W["transformer.wpe.weight"][torch.arange(T)]
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    for i in range(cfg["n_layer"]):
        p = "transformer.h.%d." % i
        h = layer_norm(x, W[p + "ln_1.weight"], W[p + "ln_1.bias"], eps)
        qkv = h @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]  # Conv1D: (T, C) @ (C, 3C)
        q, k, v = (t.reshape(T, H, D).transpose(0, 1) for t in qkv.split(C, dim=-1))  # (H, T, D)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        probs = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
        y = (probs @ v).transpose(0, 1).reshape(T, C)
        x = x + y @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]
        h = layer_norm(x, W[p + "ln_2.weight"], W[p + "ln_2.bias"], eps)
        a = activation(cfg["activation_function"], h @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"])
        x = x + a @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]
    x = layer_norm(x, W["transformer.ln_f.weight"], W["transformer.ln_f.bias"], eps)
    head = W["transformer.wte.weight"] if cfg["tie_word_embeddings"] else W["lm_head.weight"]
    return x @ head.t()


def logprobs(W, cfg, tokens):
    logp = torch.log_softmax(forward(W, cfg, tokens), dim=-1)
    return [logp[i, tokens[i + 1]].item() for i in range(len(tokens) - 1)]


def cmd_check(folder):
    config, cfg = load_config(folder)
    check_config(config, cfg)
    W = load_weights(folder, cfg)
    print("%s: GPT2LMHeadModel folder OK (%d tensors, vocab %d, %d layers)" % (folder, len(W), cfg["vocab_size"],
                                                                            cfg["n_layer"]))


def cmd_compare(folder, score_path, tol):
    config, cfg = load_config(folder)
    check_config(config, cfg, exported=False)
    W = load_weights(folder, cfg, exported=False)
    with open(score_path) as f:
        report = json.load(f)
    if report["vocab"] != cfg["vocab_size"]:
        raise Mismatch("keel score normalised over %d logits, config.json has vocab_size %d" % (report["vocab"],
                                                                                              cfg["vocab_size"]))
    worst, count = 0.0, 0
    for seq in report["sequences"]:
        ref = logprobs(W, cfg, seq["tokens"])
        if len(ref) != len(seq["logprobs"]):
            raise Mismatch("%d log-probs from keel score, %d here" % (len(seq["logprobs"]), len(ref)))
        for a, b in zip(ref, seq["logprobs"]):
            worst = max(worst, abs(a - b))
            count += 1
    print("max |logprob(keel score) - logprob(python GPT-2)| = %.3g over %d tokens (tolerance %g)" % (worst, count, tol))
    if not worst <= tol:
        raise Mismatch("difference %.3g above the tolerance %g" % (worst, tol))


# ---- writing a random GPT-2 folder (an independent safetensors writer) ----------------------------

def tensor_bytes(t, dtype):
    if dtype == "F32":
        return t.to(torch.float32).contiguous().numpy().tobytes()
    if dtype == "F16":
        return t.to(torch.float16).contiguous().numpy().tobytes()
    if dtype == "BF16":
        return t.to(torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes()
    raise ValueError(dtype)


def write_safetensors(path, named, dtype):
    header, chunks, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in named:
        raw = tensor_bytes(t, dtype)
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)


VARIANTS = {
    # Like the Hub's original gpt2 files: no "transformer." prefix, causal-mask buffers, tied head.
    "gpt2": dict(config={"activation_function": "gelu_new"}, prefix="", masks=True, head=False, dtype="F32"),
    # An untied head, ReLU, a non-default n_inner, bf16 weights.
    "untied-relu": dict(config={"activation_function": "relu", "tie_word_embeddings": False, "n_inner": 48},
                        prefix="transformer.", masks=False, head=True, dtype="BF16"),
    # Tied, but the file still holds lm_head.weight (a copy of wte); fp16; gelu_pytorch_tanh.
    "f16-head": dict(config={"activation_function": "gelu_pytorch_tanh"}, prefix="transformer.", masks=False,
                     head=True, dtype="F16"),
}


def cmd_make(folder, variant, seed, sets):
    spec = VARIANTS[variant]
    config = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 320, "n_positions": 16,
              "n_ctx": 16, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_inner": None, "layer_norm_epsilon": 1e-5,
              "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "initializer_range": 0.02,
              "bos_token_id": 2, "eos_token_id": 2, "tie_word_embeddings": True}
    config.update(spec["config"])
    for item in sets:
        key, value = item.split("=", 1)
        config[key] = json.loads(value)
    _, cfg = load_config_dict(config)
    g = torch.Generator().manual_seed(seed)
    named = []
    for name, shape in expected_shapes(cfg).items():
        if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            t = 0.2 * torch.randn(shape, generator=g)
        unprefixed = not spec["prefix"] and name.startswith("transformer.")
        named.append((name[len("transformer."):] if unprefixed else name, t))
    if spec["masks"]:
        T = cfg["n_positions"]
        for i in range(cfg["n_layer"]):
            named.append(("h.%d.attn.bias" % i, torch.tril(torch.ones(T, T)).view(1, 1, T, T)))
    if spec["head"] and cfg["tie_word_embeddings"]:
        wte = [t for n, t in named if n.endswith("wte.weight")][0]
        named.append(("lm_head.weight", wte.clone()))
    os.makedirs(folder, exist_ok=True)
    write_safetensors(os.path.join(folder, "model.safetensors"), named, spec["dtype"])
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    print("wrote %s (%s, %d tensors, %s)" % (folder, variant, len(named), spec["dtype"]))


def cmd_tokens(path, vocab, length, count, seed):
    g = torch.Generator().manual_seed(seed)
    seqs = [torch.randint(0, vocab, (length,), generator=g).tolist() for _ in range(count)]
    with open(path, "w") as f:
        json.dump(seqs, f)


def option(args, name, default, convert=str):
    if name in args:
        i = args.index(name)
        value = convert(args[i + 1])
        del args[i:i + 2]
        return value
    return default


def main(argv):
    args = list(argv)
    try:
        if args[:1] == ["check"] and len(args) == 2:
            cmd_check(args[1])
        elif args[:1] == ["compare"]:
            tol = option(args, "--tol", 1e-4, float)
            if len(args) != 3:
                raise IndexError
            cmd_compare(args[1], args[2], tol)
        elif args[:1] == ["make"]:
            variant = option(args, "--variant", "gpt2")
            seed = option(args, "--seed", 0, int)
            sets = []
            while "--set" in args:
                sets.append(option(args, "--set", None))
            if len(args) != 2 or variant not in VARIANTS:
                raise IndexError
            cmd_make(args[1], variant, seed, sets)
        elif args[:1] == ["tokens"]:
            vocab = option(args, "--vocab", None, int)
            length = option(args, "--length", None, int)
            count = option(args, "--count", 2, int)
            seed = option(args, "--seed", 0, int)
            if len(args) != 2 or vocab is None or length is None:
                raise IndexError
            cmd_tokens(args[1], vocab, length, count, seed)
        else:
            raise IndexError
    except IndexError:
        print(__doc__, file=sys.stderr)
        return 2
    except (Mismatch, read_safetensors.FormatError, KeyError, ValueError, OSError) as e:
        print("MISMATCH: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
