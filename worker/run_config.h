// RunConfig: every config section of a training run, with the loading rules (defaults < YAML file
// < --set overrides; unknown keys and bad values are ConfigErrors naming them). The resolved config
// is saved as config.yaml in each run directory and each checkpoint. Torch-free.
#pragma once

#include <string>
#include <vector>

#include "common/config.h"
#include "data/data_config.h"
#include "diagnostics/diagnostics_config.h"
#include "model/model_config.h"
#include "parallel/parallel_config.h"
#include "stability/stability_config.h"

namespace keel {

struct TrainConfig {
  int64_t steps = 600;           // total optimizer steps (the LR schedule spans them)
  int64_t batch_size = 16;       // sequences per micro-batch (per data-parallel rank)
  int64_t seq_len = 0;           // tokens per sequence; 0 = model.context_length
  int64_t grad_accum = 1;        // micro-batches per optimizer step
  double lr = 1e-3;              // peak learning rate
  double min_lr_ratio = 0.1;     // the schedule decays to lr * min_lr_ratio
  int64_t warmup_steps = 50;     // linear warm-up steps
  std::string schedule = "cosine";  // cosine | wsd (warm-up, stable at lr, decay over decay_fraction)
  double decay_fraction = 0.2;   // wsd: share of the steps in the final linear decay
  double weight_decay = 0.1;     // AdamW decay on linear matrices only
  std::string weight_decay_mode = "coupled";  // coupled: p -= lr_t wd p; independent: p -= (lr_t / lr) wd p
  double z_loss = 0.0;           // coefficient of mean(logsumexp(logits)^2) added to the loss; 0 = off
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double grad_clip = 1.0;        // global grad-norm clipping threshold; 0 = off
  int64_t seed = 1337;           // model init, data order and dropout
  int64_t eval_every = 100;      // validation every N steps (and at the end); 0 = only at the end
  int64_t eval_batches = 20;     // validation batches per evaluation
  int64_t log_every = 10;        // progress line every N steps (metrics.jsonl gets every step)
  std::string device = "auto";   // auto | cpu | cuda
  std::string precision = "auto";  // auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
  int64_t stop_at = -1;          // end the run at this step as if interrupted (schedule unchanged)
  int64_t threads = 0;           // CPU intra-op threads; 0 = LibTorch's default
  double peak_flops = 0;         // per-device peak FLOP/s for MFU; 0 = known GPUs' bf16 peak, else no MFU
  std::string init_from;         // checkpoint whose weights start a new run (uptraining); "" = fresh init
  bool activation_checkpointing = false;  // recompute each block's activations in backward (less memory)
  bool fused_cross_entropy = true;  // bf16 CUDA logits: the fused loss kernels of kernels/ (off: LibTorch's)
  bool fused_residual_norm = true;  // CUDA bf16: each residual add fused with the next norm (off: LibTorch's)

  void visit(ConfigVisitor& v) {
    v.field("steps", steps, "total optimizer steps");
    v.field("batch_size", batch_size, "sequences per micro-batch per data-parallel rank");
    v.field("seq_len", seq_len, "tokens per sequence; 0 = model.context_length");
    v.field("grad_accum", grad_accum, "micro-batches per optimizer step");
    v.field("lr", lr, "peak learning rate");
    v.field("min_lr_ratio", min_lr_ratio, "final LR as a fraction of the peak");
    v.field("warmup_steps", warmup_steps, "linear LR warm-up steps");
    v.choice("schedule", schedule, {"cosine", "wsd"},
             "LR after warm-up: cosine decay to the end, or wsd (stable at lr, then linear decay over the last "
             "decay_fraction of the steps)");
    v.field("decay_fraction", decay_fraction, "wsd: share of the steps in the final decay, in (0, 1]");
    v.field("weight_decay", weight_decay, "AdamW weight decay (linear matrices only)");
    v.choice("weight_decay_mode", weight_decay_mode, {"coupled", "independent"},
             "coupled: decay by lr_t x weight_decay per step (PyTorch's AdamW); independent: by (lr_t / lr) x "
             "weight_decay, so the decay strength does not change with the peak LR (Wortsman et al. 2023)");
    v.field("z_loss", z_loss,
            "coefficient of the z-loss, mean over tokens of logsumexp(logits)^2, added to the training loss "
            "(PaLM; OLMo 2 uses 1e-5); logged as z_loss; 0 = off"); 
    v.field("beta1", beta1, "AdamW beta1");
    v.field("beta2", beta2, "AdamW beta2");
    v.field("eps", eps, "AdamW epsilon");
    v.field("grad_clip", grad_clip, "global grad-norm clip threshold; 0 = off");
    v.field("seed", seed, "seed for init, data order and dropout");
    v.field("eval_every", eval_every, "validate every N steps; 0 = only at the end");
    v.field("eval_batches", eval_batches, "validation batches per evaluation");
    v.field("log_every", log_every, "progress line every N steps");
    v.choice("device", device, {"auto", "cpu", "cuda"}, "where to train");
    v.choice("precision", precision, {"auto", "fp32", "bf16"}, "auto = bf16 autocast on CUDA, fp32 on CPU");
    v.field("stop_at", stop_at, "stop at this step as if interrupted; -1 = run to the end");
    v.field("threads", threads, "CPU threads; 0 = default");
    v.field("peak_flops", peak_flops, "per-device peak FLOP/s for MFU; 0 = the GPU's bf16 peak when known");
    v.field("activation_checkpointing", activation_checkpointing,
            "keep only each block's input in the forward and recompute the block in backward: about one "
            "extra forward of compute for much less activation memory (needs parallel.tp=1, model.dropout=0)");
    v.field("fused_cross_entropy", fused_cross_entropy,
            "bf16 logits on CUDA: the LM loss by the fused cross-entropy kernels (no fp32 copy of the logits, "
            "gradient written over them); false = LibTorch's cross_entropy on fp32 logits. No effect on the CPU, "
            "in fp32 or with parallel.tp > 1");
    v.field("fused_residual_norm", fused_residual_norm,
            "CUDA under bf16: each residual add and the LayerNorm/RMSNorm that reads it run as one fused kernel "
            "(bf16 output for the next matmul; one backward kernel for both gradients); false = LibTorch's add and "
            "norm. No effect on the CPU, in fp32, with activation checkpointing or on diagnostics steps");
    v.field("init_from", init_from,
            "checkpoint folder whose weights start this run (keel uptrain); parameters it lacks keep their "
            "fresh init; empty = fresh init");
  }
  void validate() const;
};

struct CheckpointConfig {
  int64_t every = 100;        // save every N steps (0 = only the final one)
  int64_t keep = 3;           // keep the newest K (good checkpoints are kept beyond K for rollbacks)
  bool save_final = true;     // save at the end of the run (and at stop_at)

  void visit(ConfigVisitor& v) {
    v.field("every", every, "save every N steps; 0 = only at the end");
    v.field("keep", keep, "keep the newest K checkpoints (plus the rollback target)");
    v.field("save_final", save_final, "save when the run ends or stops");
  }
  void validate() const;
};

struct RunSection {
  std::string name;                 // run directory name under runs_root; "" = recipe + timestamp
  std::string runs_root = "runs";   // where run directories live
  std::string recipe;               // recipe name; "" = the config file's stem

  void visit(ConfigVisitor& v) {
    v.field("name", name, "run directory name under runs_root; empty = recipe-timestamp");
    v.field("runs_root", runs_root, "folder holding run directories");
    v.field("recipe", recipe, "recipe name; empty = the config file's stem");
  }
  void validate() const;
};

// The "metrics" section: where the coordinator process serves Prometheus /metrics (prometheus-cpp).
struct MetricsConfig {
  std::string address = "127.0.0.1";  // interface of /metrics; loopback unless exposed on purpose
  int64_t port = 0;                   // 0: a free port (printed at start); -1: no /metrics
  double linger_seconds = 5.0;        // /metrics stays up this long after the job so scrapes see its end

  void visit(ConfigVisitor& v) {
    v.field("address", address, "interface to serve /metrics on (default loopback)");
    v.field("port", port, "port of /metrics; 0 = a free port, -1 = off");
    v.field("linger_seconds", linger_seconds, "keep /metrics up this long after the job ends");
  }
  void validate() const {
    if (port < -1 || port > 65535) throw ConfigError("metrics.port must be -1 (off), 0 (any) or a port number");
    if (linger_seconds < 0) throw ConfigError("metrics.linger_seconds must be >= 0");
  }
};

// The "coordinator" section: how workers and `keel train` reach the job's coordinator securely.
// The token itself never goes into a config (configs are saved with every run and checkpoint):
// it is read from token_file or from the environment variable KEEL_COORDINATOR_TOKEN.
struct CoordinatorConfig {
  std::string token_file;            // file holding the shared token; "" = $KEEL_COORDINATOR_TOKEN if set
  std::string tls_ca;                // PEM CA certificate of the coordinator's certificate; set = TLS
  std::string tls_cert, tls_key;     // keel train: serve its coordinator over TLS with these (PEM)
  double loss_timeout_seconds = 30;  // a worker that cannot reach the coordinator this long leaves the job

  void visit(ConfigVisitor& v) {
    v.field("token_file", token_file, "file with the shared coordinator token; empty = $KEEL_COORDINATOR_TOKEN");
    v.field("tls_ca", tls_ca, "PEM CA certificate that signed the coordinator's; set = connect over TLS");
    v.field("tls_cert", tls_cert, "PEM certificate the coordinator started by keel train serves (with tls_key)");
    v.field("tls_key", tls_key, "PEM private key of tls_cert");
    v.field("loss_timeout_seconds", loss_timeout_seconds,
            "seconds without reaching the coordinator before a worker leaves the job (exit 4)");
  }
  void validate() const {
    if (tls_cert.empty() != tls_key.empty())
      throw ConfigError("coordinator.tls_cert and coordinator.tls_key must be set together");
    if (!tls_cert.empty() && tls_ca.empty())
      throw ConfigError("coordinator.tls_cert needs coordinator.tls_ca (the CA workers verify it with)");
    if (!(loss_timeout_seconds > 0)) throw ConfigError("coordinator.loss_timeout_seconds must be > 0");
  }
};

struct RunConfig {
  RunSection run;
  ModelConfig model;
  TrainConfig train;
  DataConfig data;
  CheckpointConfig checkpoint;
  StabilityConfig stability;
  DiagnosticsConfig diagnostics;
  parallel::ParallelConfig parallel;
  MetricsConfig metrics;
  CoordinatorConfig coordinator;
  DebugConfig debug;

  std::vector<ConfigSectionRef> sections();
  void validate() const;  // every section plus cross-section rules
  std::string to_yaml();
  int64_t seq_len() const { return train.seq_len > 0 ? train.seq_len : model.context_length; }

  // Defaults, then `config_path` (may be empty), then each `section.key=value` override.
  static RunConfig load(const std::string& config_path, const std::vector<std::string>& overrides);
};

}  // namespace keel
