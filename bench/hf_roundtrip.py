#!/usr/bin/env python3
"""The transformers side of bench/hf_roundtrip.sh (needs torch, transformers, safetensors).

Each subcommand appends one JSON line with its figures and verdict to RESULTS (a .jsonl file) and
exits 1 when its check fails, so the shell script can stop and the record still shows why.

    hf_roundtrip.py tokens OUT.json --vocab V --length T --batch B [--seed S]
        B random sequences of T ids in [0, V) (a JSON array of arrays, `keel score --tokens`)
    hf_roundtrip.py load-check HF_DIR TOKENS.json KEEL_SCORE.json KEEL_LOGITS.safetensors RESULTS NAME [--tol 1e-3]
        AutoModelForCausalLM.from_pretrained(HF_DIR) with its loading report and transformers'
        log captured: no missing / unexpected / mismatched weights and no such warning; a tied
        head really tied; then fp32 CPU logits and log-probs on TOKENS against `keel score`'s
    hf_roundtrip.py make-random HF_DIR --like EXPORT_DIR [--shape vanilla|gpt2-124m] [--variant tied|untied-relu] [--seed S]
        a randomly initialised GPT2LMHeadModel with a Keel recipe's shape (configs/vanilla.yaml or
        configs/gpt2-124m.yaml) and EXPORT_DIR's vocabulary and eos, saved with save_pretrained
    hf_roundtrip.py tokenizer-check HF_DIR TEXT_FILE KEEL_SHARD.bin RESULTS NAME
        AutoTokenizer (slow and fast) encodings of TEXT_FILE against keel-tokenize's shard
    hf_roundtrip.py config-value CONFIG.yaml SECTION KEY
        prints one scalar of a Keel resolved config.yaml (no PyYAML needed)
"""
import json
import logging
import os
import struct
import sys

# Recipes of configs/ this script can build (model sections; vocabulary from the export).
SHAPES = {
    "vanilla": dict(n_embd=192, n_layer=4, n_head=4, n_positions=128),
    "gpt2-124m": dict(n_embd=768, n_layer=12, n_head=12, n_positions=1024),
}


def record(results, entry):
    with open(results, "a") as f:
        f.write(json.dumps(entry) + "\n")
    print(json.dumps(entry, indent=2))
    return 0 if entry.get("ok") else 1


def cmd_tokens(out, vocab, length, batch, seed):
    import torch
    g = torch.Generator().manual_seed(seed)
    seqs = torch.randint(0, vocab, (batch, length), generator=g).tolist()
    with open(out, "w") as f:
        json.dump(seqs, f)


class Captured(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.messages = []

    def emit(self, rec):
        self.messages.append(rec.getMessage())


def cmd_load_check(hf_dir, tokens_path, score_path, logits_path, results, name, tol):
    import torch
    import transformers
    from safetensors.torch import load_file

    handler = Captured()
    transformers.logging.set_verbosity_warning()
    logging.getLogger("transformers").addHandler(handler)
    model, info = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, output_loading_info=True,
                                                                    torch_dtype=torch.float32)
    logging.getLogger("transformers").removeHandler(handler)
    model.eval()
    loading = {k: [str(x) for x in v] for k, v in info.items()}
    bad_words = ("newly initialized", "not used", "not initialized", "missing", "unexpected")
    warnings = [m for m in handler.messages if any(w in m.lower() for w in bad_words)]
    tied = model.config.tie_word_embeddings
    tie_ok = (not tied) or model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()

    with open(tokens_path) as f:
        tokens = json.load(f)
    with open(score_path) as f:
        score = json.load(f)
    keel_logits = load_file(logits_path)
    worst_logit, worst_logprob = 0.0, 0.0
    with torch.no_grad():
        for i, seq in enumerate(tokens):
            ids = torch.tensor([seq], dtype=torch.long)
            hf = model(ids).logits[0].float()  # (T, V) fp32 on the CPU
            kl = keel_logits["logits.%d" % i].float()
            if hf.shape != kl.shape:
                return record(results, {"check": name, "ok": False, "error": "logits shape %s (HF) vs %s (keel)" % (
                    list(hf.shape), list(kl.shape))})
            worst_logit = max(worst_logit, (hf - kl).abs().max().item())
            logp = torch.log_softmax(hf, dim=-1)
            hf_lp = logp[torch.arange(len(seq) - 1), torch.tensor(seq[1:])]
            keel_lp = torch.tensor(score["sequences"][i]["logprobs"])
            worst_logprob = max(worst_logprob, (hf_lp - keel_lp).abs().max().item())
    ok = (not any(loading.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"))
          and not warnings and tie_ok and worst_logit < tol and worst_logprob < tol)
    return record(results, {"check": name, "ok": ok, "hf_dir": hf_dir, "transformers": transformers.__version__,
                            "torch": torch.__version__, "loading_info": loading, "loading_warnings": warnings,
                            "tied_head_shared": tie_ok if tied else None, "sequences": len(tokens),
                            "tokens_per_sequence": len(tokens[0]), "max_abs_logit_diff": worst_logit,
                            "max_abs_logprob_diff": worst_logprob, "tolerance": tol})


def cmd_make_random(hf_dir, like, shape, variant, seed):
    import torch
    import transformers
    with open(os.path.join(like, "config.json")) as f:
        exported = json.load(f)
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=exported["vocab_size"], bos_token_id=exported.get("bos_token_id"),
        eos_token_id=exported.get("eos_token_id"), resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        activation_function="relu" if variant == "untied-relu" else "gelu_new",
        tie_word_embeddings=variant != "untied-relu", **SHAPES[shape])
    model = transformers.GPT2LMHeadModel(config)
    if variant == "untied-relu":
        with torch.no_grad():  # biases and norms away from their init, so a layout error shows
            for n, p in model.named_parameters():
                if n.endswith("bias") or ".ln_" in n:
                    p.add_(0.05 * torch.randn_like(p))
    try:
        model.save_pretrained(hf_dir, safe_serialization=True)
    except TypeError:  # transformers versions that only write safetensors have no such argument
        model.save_pretrained(hf_dir)
    print("wrote %s: GPT2LMHeadModel %s %s, vocab %d" % (hf_dir, shape, variant, config.vocab_size))


def read_shard(path):
    with open(path, "rb") as f:
        data = f.read()
    header = struct.unpack("<256i", data[:1024])
    count = header[2]
    return list(struct.unpack("<%dH" % count, data[1024:1024 + 2 * count]))


def cmd_tokenizer_check(hf_dir, text_file, shard, results, name):
    import transformers
    with open(text_file, encoding="utf-8") as f:
        text = f.read()
    keel_ids = read_shard(shard)
    entry = {"check": name, "keel_tokens": len(keel_ids)}
    ok = True
    for fast in (False, True):
        key = "fast" if fast else "slow"
        try:
            tok = transformers.AutoTokenizer.from_pretrained(hf_dir, use_fast=fast)
            ids = tok(text, add_special_tokens=True)["input_ids"]
            entry[key] = {"class": type(tok).__name__, "tokens": len(ids), "equal": ids == keel_ids,
                          "first_difference": next((i for i, (a, b) in enumerate(zip(ids, keel_ids)) if a != b), None),
                          "round_trip": tok.decode(ids) == text}
            ok = ok and ids == keel_ids
        except Exception as e:  # a missing sentencepiece/protobuf package is a finding, not a crash
            entry[key] = {"error": "%s: %s" % (type(e).__name__, e)}
            ok = False
    entry["ok"] = ok
    return record(results, entry)


def cmd_config_value(path, section, key):
    current = None
    with open(path) as f:
        for line in f:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if not line.startswith(" "):
                current = line.split(":", 1)[0].strip()
            elif current == section and line.strip().split(":", 1)[0] == key:
                value = line.split(":", 1)[1].split(" #", 1)[0].strip()
                print(json.loads(value) if value.startswith('"') else value)
                return 0
    print("no %s.%s in %s" % (section, key, path), file=sys.stderr)
    return 1


def option(args, name, default, convert=str):
    if name in args:
        i = args.index(name)
        value = convert(args[i + 1])
        del args[i:i + 2]
        return value
    return default


def main(argv):
    args = list(argv)
    command = args[0] if args else ""
    if command == "tokens":
        vocab, length = option(args, "--vocab", None, int), option(args, "--length", None, int)
        batch, seed = option(args, "--batch", 4, int), option(args, "--seed", 0, int)
        if len(args) == 2 and vocab and length:
            return cmd_tokens(args[1], vocab, length, batch, seed) or 0
    elif command == "load-check":
        tol = option(args, "--tol", 1e-3, float)
        if len(args) == 7:
            return cmd_load_check(*args[1:7], tol)
    elif command == "make-random":
        like, shape = option(args, "--like", None), option(args, "--shape", "vanilla")
        variant, seed = option(args, "--variant", "tied"), option(args, "--seed", 0, int)
        if len(args) == 2 and like and shape in SHAPES and variant in ("tied", "untied-relu"):
            return cmd_make_random(args[1], like, shape, variant, seed) or 0
    elif command == "tokenizer-check" and len(args) == 6:
        return cmd_tokenizer_check(*args[1:6])
    elif command == "config-value" and len(args) == 4:
        return cmd_config_value(*args[1:4])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
