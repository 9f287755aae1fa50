// Text out of transport encodings: quoted-printable, base64, legacy charsets, HTML (see
// text_decoding.h).
#include "data/text_decoding.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <string_view>

#include "data/corpus.h"  // first_invalid_utf8

namespace keel {

std::string ascii_lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool starts_with(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && text.compare(0, prefix.size(), prefix) == 0;
}

namespace {

void append_utf8(std::string& out, uint32_t code) {
  if (code < 0x80) {
    out += static_cast<char>(code);
  } else if (code < 0x800) {
    out += static_cast<char>(0xC0 | (code >> 6));
    out += static_cast<char>(0x80 | (code & 0x3F));
  } else if (code < 0x10000) {
    out += static_cast<char>(0xE0 | (code >> 12));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code >> 18));
    out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code & 0x3F));
  }
}

// Windows-1252's 0x80..0x9F (0 where it defines nothing).
constexpr uint16_t kCp1252High[32] = {0x20AC, 0,      0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
                                      0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0,      0x017D, 0,
                                      0,      0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
                                      0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0,      0x017E, 0x0178};

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A named character reference's code point (the ones mail HTML uses), 0 if unknown.
uint32_t named_entity(std::string_view name) {
  static const std::pair<const char*, uint32_t> kNames[] = {
      {"amp", '&'},       {"lt", '<'},        {"gt", '>'},        {"quot", '"'},      {"apos", '\''},
      {"nbsp", ' '},      {"copy", 0xA9},     {"reg", 0xAE},      {"trade", 0x2122},  {"mdash", 0x2014},
      {"ndash", 0x2013},  {"hellip", 0x2026}, {"lsquo", 0x2018},  {"rsquo", 0x2019},  {"ldquo", 0x201C},
      {"rdquo", 0x201D},  {"bull", 0x2022},   {"middot", 0xB7},   {"pound", 0xA3},    {"euro", 0x20AC},
      {"cent", 0xA2},     {"deg", 0xB0},      {"eacute", 0xE9},   {"egrave", 0xE8},   {"aacute", 0xE1},
      {"ouml", 0xF6},     {"uuml", 0xFC},     {"auml", 0xE4},     {"szlig", 0xDF},    {"ccedil", 0xE7},
      {"iexcl", 0xA1},    {"iquest", 0xBF},   {"laquo", 0xAB},    {"raquo", 0xBB},    {"times", 0xD7}};
  for (const auto& [key, code] : kNames) {
    if (name == key) return code;
  }
  return 0;
}

}  // namespace

std::string decode_quoted_printable(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '=') {
      out += text[i];
      continue;
    }
    size_t j = i + 1;
    while (j < text.size() && (text[j] == ' ' || text[j] == '\t' || text[j] == '\r')) ++j;
    if (j < text.size() && text[j] == '\n') {  // soft line break
      i = j;
      continue;
    }
    if (j == text.size()) break;
    if (i + 2 < text.size() && hex_value(text[i + 1]) >= 0 && hex_value(text[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2]));
      i += 2;
    } else {
      out += '=';
    }
  }
  return out;
}

std::string decode_base64(const std::string& text) {
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (const char c : text) {
    int value;
    if (c >= 'A' && c <= 'Z') value = c - 'A';
    else if (c >= 'a' && c <= 'z') value = c - 'a' + 26;
    else if (c >= '0' && c <= '9') value = c - '0' + 52;
    else if (c == '+') value = 62;
    else if (c == '/') value = 63;
    else continue;  // padding, line breaks, junk
    buffer = (buffer << 6) | static_cast<uint32_t>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((buffer >> bits) & 0xFF);
    }
  }
  return out;
}

std::string to_utf8(const std::string& text) {
  const bool valid = first_invalid_utf8(text) == std::string::npos;
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  for (size_t i = 0; i < text.size(); ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte == '\r') {
      if (i + 1 < text.size() && text[i + 1] == '\n') continue;
      out += '\n';
      continue;
    }
    if (byte < 0x20 && byte != '\n' && byte != '\t') continue;
    if (byte == 0x7F) continue;
    if (valid || byte < 0x80) {
      out += static_cast<char>(byte);
    } else if (byte < 0xA0) {
      if (kCp1252High[byte - 0x80] != 0) append_utf8(out, kCp1252High[byte - 0x80]);
    } else {
      append_utf8(out, byte);
    }
  }
  return out;
}

std::string html_to_text(const std::string& html) {
  std::string text;
  const std::string low = ascii_lower(html);
  size_t i = 0;
  while (i < html.size()) {
    const char c = html[i];
    if (c == '<') {
      if (low.compare(i, 4, "<!--") == 0) {
        const size_t end = low.find("-->", i + 4);
        i = end == std::string::npos ? html.size() : end + 3;
        continue;
      }
      if (i + 1 < low.size() && (low[i + 1] == '!' || low[i + 1] == '?')) {  // <!DOCTYPE ...>, <?xml ...?>
        const size_t end = low.find('>', i);
        i = end == std::string::npos ? html.size() : end + 1;
        continue;
      }
      size_t name_end = i + 1;
      if (name_end < low.size() && low[name_end] == '/') ++name_end;
      size_t name_begin = name_end;
      while (name_end < low.size() && std::isalnum(static_cast<unsigned char>(low[name_end]))) ++name_end;
      const std::string name = low.substr(name_begin, name_end - name_begin);
      const bool closing = name_begin > i + 1;
      const size_t tag_end = low.find('>', i);
      if (name.empty() && !closing) {  // a lone '<' in text
        text += c;
        ++i;
        continue;
      }
      i = tag_end == std::string::npos ? html.size() : tag_end + 1;
      if (!closing && (name == "script" || name == "style" || name == "head" || name == "title")) {
        const size_t close = low.find("</" + name, i);
        i = close == std::string::npos ? html.size() : std::min(html.size(), low.find('>', close) + 1);
        continue;
      }
      static const char* kBlock[] = {"p",  "div", "br", "tr", "li", "h1", "h2", "h3", "h4",
                                     "h5", "h6",  "table", "ul", "ol", "blockquote", "hr", "center"};
      if (std::find_if(std::begin(kBlock), std::end(kBlock), [&](const char* b) { return name == b; }) !=
          std::end(kBlock)) {
        text += (name == "br" && !closing) ? "\n" : "\n\n";
      } else if (name == "td" || name == "th") {
        text += ' ';
      }
      continue;
    }
    if (c == '&') {
      const size_t semi = html.find(';', i);
      if (semi != std::string::npos && semi - i <= 10) {
        const std::string_view ref(html.data() + i + 1, semi - i - 1);
        uint32_t code = 0;
        if (!ref.empty() && ref[0] == '#') {
          const bool hex = ref.size() > 1 && (ref[1] == 'x' || ref[1] == 'X');
          for (size_t k = hex ? 2 : 1; k < ref.size(); ++k) {
            const int digit = hex ? hex_value(ref[k]) : (std::isdigit(static_cast<unsigned char>(ref[k])) ? ref[k] - '0' : -1);
            if (digit < 0 || code > 0x10FFFF) {
              code = 0;
              break;
            }
            code = code * (hex ? 16 : 10) + static_cast<uint32_t>(digit);
          }
          if (code >= 0x80 && code < 0xA0 && kCp1252High[code - 0x80] != 0) code = kCp1252High[code - 0x80];
          if ((code >= 0xD800 && code <= 0xDFFF) || code > 0x10FFFF || (code < 0x20 && code != '\n' && code != '\t')) {
            code = 0;
          }
        } else {
          code = named_entity(ascii_lower(ref));
        }
        if (code != 0) {
          append_utf8(text, code == 0xA0 ? ' ' : code);
          i = semi + 1;
          continue;
        }
      }
    }
    text += (c == '\n' || c == '\t' || c == '\r') ? ' ' : c;
    ++i;
  }
  // Collapse: spaces within lines, blank lines between them.
  std::string out;
  int newlines = 0;
  bool space = false;
  for (const char c : text) {
    if (c == '\n') {
      ++newlines;
      space = false;
      continue;
    }
    if (c == ' ') {
      space = true;
      continue;
    }
    if (!out.empty()) {
      if (newlines > 0) out += newlines > 1 ? "\n\n" : "\n";
      else if (space) out += ' ';
    }
    newlines = 0;
    space = false;
    out += c;
  }
  if (!out.empty()) out += '\n';
  return out;
}

}  // namespace keel
