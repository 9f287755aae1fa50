// `keel import --format hf` (see hf_import.h): HF GPT-2 tensors, by the table of hf_names.h, into a
// freshly built Keel model of the config's shape (so the names are exactly the model's), written as
// a checkpoint folder.
#include "interop/hf_import.h"

#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>

#include <nlohmann/json.hpp>

#include "checkpoint/manifest.h"
#include "checkpoint/safetensors.h"
#include "common/check.h"
#include "common/config.h"
#include "common/fs.h"
#include "interop/hf_config.h"
#include "interop/hf_names.h"
#include "interop/staged_folder.h"
#include "model/gpt.h"

namespace keel::interop {
namespace {

namespace stdfs = std::filesystem;
using checkpoint::DType;
using checkpoint::SafetensorsFile;
using checkpoint::TensorView;

// The model's safetensors files: model.safetensors, or the shards model.safetensors.index.json
// lists (transformers' save_pretrained shards large models).
std::vector<std::string> weight_files(const std::string& hf_dir) {
  const std::string single = hf_dir + "/model.safetensors", index = hf_dir + "/model.safetensors.index.json";
  if (stdfs::is_regular_file(single)) return {single};
  if (stdfs::is_regular_file(index)) {
    const auto json = nlohmann::json::parse(fs::read_file(index), nullptr, /*allow_exceptions=*/false);
    KEEL_CHECK(json.is_object() && json.contains("weight_map") && json["weight_map"].is_object(),
               index << " has no \"weight_map\" object");
    std::set<std::string> files;
    for (const auto& [name, file] : json["weight_map"].items()) {
      KEEL_CHECK(file.is_string() && file.get<std::string>().find('/') == std::string::npos,
                 index << ": bad file for '" << name << "': " << file.dump());
      files.insert(hf_dir + "/" + file.get<std::string>());
    }
    return {files.begin(), files.end()};
  }
  KEEL_CHECK(!stdfs::exists(hf_dir + "/pytorch_model.bin"),
             hf_dir << " has pytorch_model.bin but no model.safetensors: convert it first (in Python: "
                       "GPT2LMHeadModel.from_pretrained(DIR).save_pretrained(DIR, safe_serialization=True))");
  KEEL_CHECK(false, hf_dir << " has neither model.safetensors nor model.safetensors.index.json");
  return {};
}

torch::ScalarType scalar_type(DType dtype, const std::string& where) {
  switch (dtype) {
    case DType::F32: return torch::kFloat;
    case DType::F16: return torch::kHalf;
    case DType::BF16: return torch::kBFloat16;
    case DType::F64: return torch::kDouble;
    default: KEEL_CHECK(false, where << ": dtype " << checkpoint::dtype_name(dtype) << " is not a floating-point weight");
  }
  return torch::kFloat;
}

// A view's values as an fp32 tensor of its shape (copied: a foreign file's data may be unaligned).
torch::Tensor to_float(const TensorView& view, const std::string& where) {
  torch::Tensor raw = torch::empty(view.shape, torch::TensorOptions().dtype(scalar_type(view.dtype, where)));
  KEEL_CHECK(raw.nbytes() == view.nbytes, where << ": " << view.nbytes << " bytes for shape " << raw.sizes());
  if (view.nbytes > 0) std::memcpy(raw.data_ptr(), view.data, view.nbytes);
  return raw.to(torch::kFloat);
}

void write_text(const std::string& path, const std::string& text) {
  fs::write_file_durable(path, text.data(), text.size());
}

}  // namespace

ModelConfig read_hf_model_config(const std::string& hf_dir) {
  const std::string path = hf_dir + "/config.json";
  if (!stdfs::is_regular_file(path))
    throw ConfigError("'" + hf_dir + "' has no config.json (a Hugging Face model folder, as save_pretrained writes)");
  const auto json = nlohmann::json::parse(fs::read_file(path), nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) throw ConfigError(path + " is not valid JSON");
  return model_config_from_hf(json, path);
}

HfImportResult import_hf(const HfImportOptions& options) {
  const ModelConfig& model = options.model;
  HfImportResult result;
  // Every tensor of the HF files by its canonical ("transformer."-prefixed) name.
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  std::map<std::string, std::pair<const SafetensorsFile*, std::string>> found;  // canonical -> (file, name)
  std::set<std::string> dtypes;
  for (const auto& path : weight_files(options.hf_dir)) {
    files.push_back(std::make_unique<SafetensorsFile>(path));
    for (const auto& name : files.back()->names()) {
      const std::string canonical = hf_canonical_name(name);
      KEEL_CHECK(found.emplace(canonical, std::make_pair(files.back().get(), name)).second,
                 path << ": tensor '" << name << "' appears twice in " << options.hf_dir);
    }
  }
  StagedFolder out(options.out_dir, options.overwrite, "--out");

  Gpt gpt(model);  // the shape of the HF config; every parameter is overwritten below
  std::map<std::string, torch::Tensor> params;
  for (const auto& item : gpt->named_parameters()) params[item.key()] = item.value();
  std::set<std::string> used;
  torch::NoGradGuard no_grad;
  for (const HfTensor& t : hf_tensors(model, model.vocab_size)) {
    auto it = found.find(t.hf);
    KEEL_CHECK(it != found.end(), options.hf_dir << ": the model has no tensor '" << t.hf << "', which a GPT2LMHeadModel "
                                                 << "with this config.json has (tie_word_embeddings="
                                                 << (model.tie_embeddings ? "true" : "false") << ")");
    const TensorView view = it->second.first->view(it->second.second);
    const std::string where = it->second.first->path() + ": '" + it->second.second + "'";
    KEEL_CHECK(view.shape == t.hf_shape, where << " has shape " << torch::IntArrayRef(view.shape) << ", config.json gives "
                                               << torch::IntArrayRef(t.hf_shape));
    dtypes.insert(checkpoint::dtype_name(view.dtype));
    torch::Tensor x = to_float(view, where);
    if (t.transposed) x = x.t();  // Conv1D (in, out) -> nn.Linear (out, in)
    auto p = params.find(t.keel);
    KEEL_CHECK(p != params.end(), "the Keel model has no parameter '" << t.keel << "' for " << t.hf);
    KEEL_CHECK(p->second.sizes() == x.sizes(), "'" << t.keel << "' " << p->second.sizes() << " != " << x.sizes());
    p->second.copy_(x);
    used.insert(t.hf);
  }
  KEEL_CHECK(used.size() == params.size(), "imported " << used.size() << " tensors for " << params.size() << " parameters");
  for (const auto& [canonical, where] : found) {
    if (used.count(canonical)) continue;
    // transformers ties lm_head to wte on load; a file may still hold the copy.
    const bool tied_head = canonical == "lm_head.weight" && model.tie_embeddings;
    KEEL_CHECK(tied_head || hf_mask_buffer(canonical),
               where.first->path() << ": unexpected tensor '" << where.second
                                   << "' (not part of a GPT2LMHeadModel with this config.json); refusing to drop it");
    result.skipped.push_back(where.second);
  }
  result.source_dtypes.assign(dtypes.begin(), dtypes.end());

  std::vector<checkpoint::TensorView> views;
  for (const auto& item : gpt->named_parameters()) {
    const torch::Tensor& x = item.value();
    views.push_back(TensorView{item.key(), DType::F32, x.sizes().vec(), x.data_ptr(), x.nbytes()});
    result.parameters += x.numel();
  }
  checkpoint::write_safetensors(out.path() + "/model.safetensors", views,
                                {{"format", "keel"}, {"step", "0"}, {"tp_rank", "0"}, {"tp_size", "1"},
                                 {"source", "hf"}});
  const nlohmann::json trainer = {{"step", 0},
                                  {"tokens_seen", 0},
                                  {"data_cursor", nlohmann::json::object()},
                                  {"monitor", nullptr},
                                  {"optimizer_step_count", 0},
                                  {"layout", {{"tp", 1}, {"dp", 1}}},
                                  {"extra", {{"imported_from", stdfs::absolute(options.hf_dir).lexically_normal().string()},
                                             {"format", "hf"}}}};
  write_text(out.path() + "/trainer_state.json", trainer.dump(2) + "\n");
  write_text(out.path() + "/config.yaml", options.config_yaml);
  const auto manifest = checkpoint::build_manifest(out.path(), 0, {"model.safetensors", "trainer_state.json", "config.yaml"},
                                                   {{"imported_from", options.hf_dir}, {"format", "hf"}});
  checkpoint::write_manifest(out.path(), manifest);
  out.commit();
  return result;
}

}  // namespace keel::interop
