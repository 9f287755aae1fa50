// `keel export --format hf` (see hf_export.h): load the checkpoint into one full fp32 model on the
// CPU, rename and re-lay its tensors by the table of hf_names.h, write the folder.
#include "interop/hf_export.h"

#include <torch/torch.h>

#include <map>

#include "checkpoint/safetensors.h"
#include "checkpoint_torch/training_checkpoint.h"
#include "common/check.h"
#include "common/config.h"
#include "common/fs.h"
#include "interop/hf_config.h"
#include "interop/hf_names.h"
#include "interop/staged_folder.h"
#include "model/gpt.h"

namespace keel::interop {
namespace {

// The HF tensor for `t`, from the full Keel model's parameters (name -> fp32 CPU tensor).
torch::Tensor hf_tensor(const HfTensor& t, const std::map<std::string, torch::Tensor>& keel) {
  auto it = keel.find(t.keel);
  if (it == keel.end()) {
    KEEL_CHECK(t.zero_if_absent, "the model has no parameter '" << t.keel << "' for " << t.hf);
    return torch::zeros(t.hf_shape, torch::kFloat);  // bias=false: GPT-2's bias, zero
  }
  torch::Tensor x = it->second.detach().to(torch::kCPU, torch::kFloat);
  if (t.vocab_rows) x = x.narrow(0, 0, t.hf_shape[0]);  // (V_keel, C) -> (V, C): padding rows cut
  if (t.transposed) x = x.t();                          // (out, in) -> Conv1D's (in, out)
  x = x.contiguous();
  KEEL_CHECK(x.sizes().vec() == t.hf_shape,
             "'" << t.keel << "' " << x.sizes() << " does not give " << t.hf << " " << torch::IntArrayRef(t.hf_shape));
  return x;
}

void write_json(const std::string& path, const nlohmann::json& json) { fs::write_file_atomic(path, json.dump(2) + "\n"); }

}  // namespace

HfExportResult export_hf(const HfExportOptions& options) {
  const ModelConfig& model = options.model;
  check_hf_expressible(model);  // ConfigError, before anything is read or written
  HfExportResult result;
  result.vocab_size = model.vocab_size;
  int64_t eos_id = -1;
  if (options.tokenizer) {
    const DatasetTokenizer& tok = *options.tokenizer;
    if (tok.vocab_size > model.vocab_size)
      throw ConfigError("model.vocab_size (" + std::to_string(model.vocab_size) + ") is smaller than the dataset's " +
                        tok.kind + " tokenizer (" + std::to_string(tok.vocab_size) + " ids)");
    // Keel pads its embedding (e.g. GPT-2's 50257 ids -> 50304 rows for efficient matmuls); the
    // padding rows belong to no token, so the export has exactly the tokenizer's vocabulary and
    // transformers' softmax runs over real tokens only. (Keel's own loss and `keel score` without
    // --vocab normalise over the padded rows too; their share of probability is tiny but not zero.)
    result.vocab_size = tok.vocab_size;
    eos_id = tok.eos_id;
  }
  result.dropped_vocab_rows = model.vocab_size - result.vocab_size;
  StagedFolder out(options.out_dir, options.overwrite, "--out");

  // One full model on the CPU: checkpoint_torch gathers TP shards into it.
  Gpt gpt(model);
  load_model_weights(options.checkpoint_dir, gpt);
  std::map<std::string, torch::Tensor> keel;
  for (const auto& item : gpt->named_parameters()) keel[item.key()] = item.value();
  KEEL_CHECK(gpt->named_buffers().size() == 0, "the model has buffers, which the HF export does not map");

  std::vector<torch::Tensor> host;  // keeps the bytes the views point to alive
  std::vector<checkpoint::TensorView> views;
  size_t used = 0;
  for (const HfTensor& t : hf_tensors(model, result.vocab_size)) {
    host.push_back(hf_tensor(t, keel));
    used += keel.count(t.keel);
    const auto& x = host.back();
    views.push_back(checkpoint::TensorView{t.hf, checkpoint::DType::F32, x.sizes().vec(), x.data_ptr(), x.nbytes()});
    result.parameters += x.numel();
  }
  KEEL_CHECK(used == keel.size(), "the HF export maps " << used << " of the model's " << keel.size() << " parameters");
  // transformers refuses safetensors files without this metadata (it names the framework).
  checkpoint::write_safetensors(out.path() + "/model.safetensors", views, {{"format", "pt"}});
  result.files.push_back("model.safetensors");

  HfConfigExtras extras;
  extras.vocab_size = result.vocab_size;
  extras.eos_id = eos_id;
  extras.provenance = options.provenance;
  extras.provenance["model_vocab_size"] = model.vocab_size;
  extras.provenance["dropped_vocab_rows"] = result.dropped_vocab_rows;
  write_json(out.path() + "/config.json", hf_config_json(model, extras));
  write_json(out.path() + "/generation_config.json", hf_generation_config_json(extras));
  result.files.insert(result.files.end(), {"config.json", "generation_config.json"});
  if (options.tokenizer) {
    for (const auto& f : write_hf_tokenizer(*options.tokenizer, model.context_length, out.path()))
      result.files.push_back(f);
  }
  out.commit();
  return result;
}

}  // namespace keel::interop
