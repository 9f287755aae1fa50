// The tokenizer files of an HF export (hf_export.h): what AutoTokenizer.from_pretrained(DIR) needs
// to encode text into the ids the Keel model was trained on. Torch-free.
//
// GPT-2 datasets: GPT-2's own files under HF's names (vocab.json is encoder.json, merges.txt is
// vocab.bpe, byte for byte) and GPT2Tokenizer, exactly as the Hub's gpt2 repository has them.
//
// SentencePiece datasets: tokenizer.model as Keel trained it (data/tokenizer.cpp: BPE, byte
// fallback, identity normalisation, dummy prefix, pieces <unk>=0 <s>=1 </s>=2) with
// tokenizer_class LlamaTokenizer, because transformers' Llama tokenizer is the one that wraps a raw
// SentencePiece BPE model with exactly these options (Llama's own model is trained with them).
// The settings keep its encoding equal to the raw model's (SentencePieceProcessor.encode):
//   legacy: true          the slow tokenizer then loads the model unmodified and encodes with
//                         sp_model.encode(text) (legacy=false would rewrite the normaliser and
//                         strip/prepend spaces around special tokens on its own)
//   add_bos_token: false, add_eos_token: false
//                         Keel's data has no BOS; prepare writes </s> before each document, so
//                         the model never saw <s> (id 1). The document separator </s> is named as
//                         both bos and eos token, like GPT-2's <|endoftext|> and like config.json's
//                         bos_token_id = eos_token_id.
//   clean_up_tokenization_spaces: false   decoding returns SentencePiece's text unchanged.
// The fast tokenizer (AutoTokenizer's default, converted from the slow one by transformers'
// LlamaConverter) builds an equivalent BPE; use_fast=False gives the SentencePiece model itself,
// which is what bench/hf_roundtrip.py checks against keel-tokenize.
#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/check.h"
#include "common/config.h"
#include "common/fs.h"
#include "interop/hf_export.h"

namespace keel::interop {
namespace {

namespace stdfs = std::filesystem;

std::string file_named(const DatasetTokenizer& tokenizer, const std::string& name) {
  for (const auto& f : tokenizer.files)
    if (stdfs::path(f).filename() == name) {
      KEEL_CHECK(stdfs::is_regular_file(f), "the dataset's tokenizer file '" << f << "' is missing");
      return f;
    }
  throw KeelError("the dataset's " + tokenizer.kind + " tokenizer lists no " + name);
}

void write_json(const std::string& path, const nlohmann::json& json) { fs::write_file_atomic(path, json.dump(2) + "\n"); }

void copy_file(const std::string& from, const std::string& to) {
  const std::string bytes = fs::read_file(from);
  fs::write_file_durable(to, bytes.data(), bytes.size());
}

std::vector<std::string> write_gpt2(const DatasetTokenizer& tokenizer, int64_t model_max_length, const std::string& dir) {
  const std::string encoder = file_named(tokenizer, "encoder.json"), merges = file_named(tokenizer, "vocab.bpe");
  // The special token's text from the vocabulary itself, and the vocabulary's size checked.
  const auto vocab = nlohmann::json::parse(fs::read_file(encoder), nullptr, /*allow_exceptions=*/false);
  KEEL_CHECK(vocab.is_object(), encoder << " is not a JSON object");
  KEEL_CHECK(static_cast<int64_t>(vocab.size()) == tokenizer.vocab_size,
             encoder << " has " << vocab.size() << " entries but the dataset's tokenizer has " << tokenizer.vocab_size);
  std::string eos;
  for (const auto& [text, id] : vocab.items())
    if (id.is_number_integer() && id.get<int64_t>() == tokenizer.eos_id) eos = text;
  KEEL_CHECK(!eos.empty(), encoder << " has no token with the dataset's eos id " << tokenizer.eos_id);

  copy_file(encoder, dir + "/vocab.json");
  copy_file(merges, dir + "/merges.txt");
  write_json(dir + "/tokenizer_config.json", {{"tokenizer_class", "GPT2Tokenizer"},
                                              {"add_prefix_space", false},
                                              {"add_bos_token", false},
                                              {"bos_token", eos},
                                              {"eos_token", eos},
                                              {"unk_token", eos},
                                              {"errors", "replace"},
                                              {"clean_up_tokenization_spaces", false},
                                              {"model_max_length", model_max_length}});
  write_json(dir + "/special_tokens_map.json", {{"bos_token", eos}, {"eos_token", eos}, {"unk_token", eos}});
  return {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"};
}

std::vector<std::string> write_sentencepiece(const DatasetTokenizer& tokenizer, int64_t model_max_length,
                                             const std::string& dir) {
  // data/tokenizer.cpp pins the special pieces: <unk> 0, <s> 1, </s> 2.
  KEEL_CHECK(tokenizer.eos_id == 2, "the dataset's SentencePiece eos id is " << tokenizer.eos_id
                                                                             << ", not the 2 (</s>) Keel's prepare assigns");
  copy_file(file_named(tokenizer, "tokenizer.model"), dir + "/tokenizer.model");
  write_json(dir + "/tokenizer_config.json", {{"tokenizer_class", "LlamaTokenizer"},
                                              {"legacy", true},
                                              {"add_bos_token", false},
                                              {"add_eos_token", false},
                                              {"bos_token", "</s>"},
                                              {"eos_token", "</s>"},
                                              {"unk_token", "<unk>"},
                                              {"pad_token", nullptr},
                                              {"sp_model_kwargs", nlohmann::json::object()},
                                              {"clean_up_tokenization_spaces", false},
                                              {"spaces_between_special_tokens", false},
                                              {"model_max_length", model_max_length}});
  write_json(dir + "/special_tokens_map.json", {{"bos_token", "</s>"}, {"eos_token", "</s>"}, {"unk_token", "<unk>"}});
  return {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"};
}

}  // namespace

std::vector<std::string> write_hf_tokenizer(const DatasetTokenizer& tokenizer, int64_t model_max_length,
                                            const std::string& dir) {
  if (tokenizer.kind == kTokenizerGpt2) return write_gpt2(tokenizer, model_max_length, dir);
  if (tokenizer.kind == kTokenizerSentencePiece) return write_sentencepiece(tokenizer, model_max_length, dir);
  throw ConfigError("the dataset's tokenizer kind '" + tokenizer.kind + "' has no Hugging Face export");
}

}  // namespace keel::interop
