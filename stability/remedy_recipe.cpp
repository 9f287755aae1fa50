// The Spike No More remedy recipe as config overrides (see remedy_recipe.h).
#include "stability/remedy_recipe.h"

#include <fmt/format.h>

namespace keel {
namespace {

// `text` as a YAML double-quoted scalar: whatever the text holds, the override parser reads back
// exactly these bytes (a plain scalar would turn "a #b" into "a" and "x: y" into a map).
std::string yaml_quoted(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte < 0x20 || byte == 0x7f) {
      out += fmt::format("\\x{:02x}", byte);
    } else {
      out += c;  // printable ASCII and the bytes of UTF-8 sequences
    }
  }
  return out + "\"";
}

}  // namespace

std::vector<std::string> RemedyRecipe::overrides() const {
  // fmt's "{}" is the shortest text that parses back to the same double (round-trip exact).
  std::vector<std::string> out = {"model.embed_scale=" + yaml_quoted(embed_scale),
                                   "model.init=" + yaml_quoted(init),
                                   fmt::format("train.lr={}", lr),
                                   "stability.on_repeated_spikes=" + yaml_quoted(on_repeated_spikes),
                                   "run.recipe=" + yaml_quoted(recipe)};
  if (!norm.empty()) out.push_back("model.norm=" + yaml_quoted(norm));
  return out;
}

RemedyRecipe remedy_recipe(const std::string& parent_recipe, double parent_lr, double lr_scale,
                           const std::string& parent_norm) {
  RemedyRecipe recipe;
  recipe.parent_lr = parent_lr;
  recipe.lr = parent_lr * lr_scale;
  recipe.recipe = parent_recipe + "+remedy";
  if (parent_norm == "none") recipe.norm = "pre_ln";
  return recipe;
}

}  // namespace keel
