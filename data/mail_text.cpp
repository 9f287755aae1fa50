// E-mail bodies as plain UTF-8 text (see mail_text.h).
#include "data/mail_text.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <string_view>
#include <vector>

#include "data/text_decoding.h"

namespace keel {

namespace {

// A header block parsed into lowercase names and unfolded values (continuation lines joined).
struct Headers {
  std::vector<std::pair<std::string, std::string>> fields;
  std::string get(const std::string& name) const {
    for (const auto& [key, value] : fields) {
      if (key == name) return value;
    }
    return "";
  }
};

// Splits `message` (LF line ends) at its first blank line into headers and body.
std::pair<Headers, std::string> split_message(const std::string& message) {
  Headers headers;
  size_t pos = 0;
  while (pos < message.size()) {
    size_t end = message.find('\n', pos);
    if (end == std::string::npos) end = message.size();
    const std::string_view line(message.data() + pos, end - pos);
    pos = end + 1;
    if (line.empty()) return {headers, pos < message.size() ? message.substr(pos) : ""};
    if ((line.front() == ' ' || line.front() == '\t') && !headers.fields.empty()) {
      headers.fields.back().second += ' ';
      headers.fields.back().second += std::string(line.substr(line.find_first_not_of(" \t")));
      continue;
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;  // an mbox "From " line or junk
    std::string value(line.substr(colon + 1));
    value.erase(0, value.find_first_not_of(" \t"));
    headers.fields.emplace_back(ascii_lower(line.substr(0, colon)), value);
  }
  return {headers, ""};
}

// A parameter of a header value (`boundary`, `charset`), quoted or not; "" when absent.
std::string header_parameter(const std::string& value, const std::string& name) {
  const std::string low = ascii_lower(value);
  size_t at = 0;
  while ((at = low.find(name, at)) != std::string::npos) {
    const bool starts = at == 0 || low[at - 1] == ';' || low[at - 1] == ' ' || low[at - 1] == '\t';
    size_t eq = at + name.size();
    while (eq < low.size() && low[eq] == ' ') ++eq;
    if (!starts || eq >= low.size() || low[eq] != '=') {
      at += name.size();
      continue;
    }
    size_t begin = eq + 1;
    while (begin < value.size() && value[begin] == ' ') ++begin;
    if (begin < value.size() && value[begin] == '"') {
      const size_t close = value.find('"', begin + 1);
      return value.substr(begin + 1, close == std::string::npos ? std::string::npos : close - begin - 1);
    }
    size_t end = begin;
    while (end < value.size() && value[end] != ';' && value[end] != ' ' && value[end] != '\t') ++end;
    return value.substr(begin, end - begin);
  }
  return "";
}

// Charsets whose text to_utf8 reads correctly (ASCII, UTF-8 and the Western single-byte ones).
bool latin_charset(const std::string& charset) {
  const std::string c = ascii_lower(charset);
  return c.empty() || c == "us-ascii" || c == "ascii" || c == "utf-8" || c == "utf8" || starts_with(c, "iso-8859-1") ||
         c == "iso-8859-15" || c == "latin1" || c == "latin-1" || starts_with(c, "windows-1252") || c == "cp1252" ||
         c == "unknown-8bit" || c == "x-user-defined" || c == "default";
}

// The decoded, UTF-8 text of one MIME entity, or "" when it holds no readable text.
// `prefer_plain`: inside multipart/alternative, the caller picks the plain part itself.
std::string entity_text(const Headers& headers, const std::string& body, int depth);

std::string multipart_text(const std::string& type, const std::string& boundary, const std::string& body,
                           int depth) {
  const std::string delimiter = "--" + boundary;
  std::vector<std::string> parts;
  size_t pos = 0;
  bool in_part = false;
  std::string current;
  while (pos < body.size()) {
    size_t end = body.find('\n', pos);
    if (end == std::string::npos) end = body.size();
    const std::string_view line(body.data() + pos, end - pos);
    pos = end + 1;
    if (starts_with(line, delimiter)) {
      if (in_part) parts.push_back(std::move(current));
      current.clear();
      if (starts_with(line.substr(delimiter.size()), "--")) break;  // closing delimiter
      in_part = true;
      continue;
    }
    if (in_part) {
      current.append(line);
      current += '\n';
    }
  }
  if (in_part && !current.empty()) parts.push_back(std::move(current));  // unterminated last part

  std::string plain, html, joined;
  for (const auto& part : parts) {
    const auto [part_headers, part_body] = split_message(part);
    std::string text = entity_text(part_headers, part_body, depth + 1);
    if (text.find_first_not_of(" \t\n") == std::string::npos) continue;
    const std::string part_type = ascii_lower(part_headers.get("content-type"));
    const bool is_html = starts_with(part_type, "text/html");
    if (type == "multipart/alternative") {
      std::string& slot = is_html ? html : plain;
      if (slot.empty()) slot = std::move(text);
    } else {
      if (!joined.empty()) joined += "\n\n";
      joined += text;
    }
  }
  if (type == "multipart/alternative") return plain.empty() ? html : plain;
  return joined;
}

std::string entity_text(const Headers& headers, const std::string& body, int depth) {
  if (depth > 8) return "";  // pathological nesting
  const std::string content_type = headers.get("content-type");
  std::string type = ascii_lower(content_type.substr(0, content_type.find(';')));
  type.erase(type.find_last_not_of(" \t") + 1);
  if (type.empty()) type = "text/plain";
  if (starts_with(type, "multipart/")) {
    const std::string boundary = header_parameter(content_type, "boundary");
    return boundary.empty() ? "" : multipart_text(type, boundary, body, depth);
  }
  if (type != "text/plain" && type != "text/html") return "";  // attachments, forwarded mail, signatures
  if (!latin_charset(header_parameter(content_type, "charset"))) return "";
  const std::string encoding = ascii_lower(headers.get("content-transfer-encoding"));
  std::string decoded = encoding.find("base64") != std::string::npos            ? decode_base64(body)
                        : encoding.find("quoted-printable") != std::string::npos ? decode_quoted_printable(body)
                                                                                 : body;
  decoded = to_utf8(decoded);
  return type == "text/html" ? html_to_text(decoded) : decoded;
}

// A line that starts with a rule of 10+ dashes or underscores: a list footer ("____ Exmh-workers
// mailing list"), an advertisement ("------ Yahoo! Groups Sponsor"), a forwarded or original message.
bool is_rule_line(std::string_view line) {
  const size_t first = line.find_first_not_of(" \t");
  if (first == std::string_view::npos) return false;
  line.remove_prefix(first);
  const char c = line.front();
  if (c != '-' && c != '_') return false;
  const size_t run = line.find_first_not_of(c);
  return (run == std::string_view::npos ? line.size() : run) >= 10;
}

// The attribution of a quoted message: "On Tue, Bob wrote:" or header lines quoted in the text.
bool is_attribution_line(std::string_view line) {
  const size_t first = line.find_first_not_of(" \t");
  if (first == std::string_view::npos) return false;
  line.remove_prefix(first);
  line = line.substr(0, line.find_last_not_of(" \t") + 1);
  if (line.size() < 200 && line.size() >= 6 && line.compare(line.size() - 6, 6, "wrote:") == 0) return true;
  for (const char* name : {"Date:", "From:", "To:", "Cc:", "Subject:", "Sent:", "Reply-To:", "Message-ID:"}) {
    if (starts_with(line, name)) return true;
  }
  return false;
}

// Drops quoted lines, the signature, PGP armour and list footers; trims and collapses blank lines.
std::string clean_body(const std::string& text) {
  std::string out;
  int blank_run = 0;
  size_t pos = 0;
  bool in_pgp_signature = false;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    // A signature, a list footer or the quoted original of a reply: the rest goes.
    if (line == "-- " || line == "--" || is_rule_line(line) || starts_with(line, "----- Original Message")) break;
    if (is_attribution_line(line)) continue;
    if (starts_with(line, "-----BEGIN PGP SIGNATURE")) in_pgp_signature = true;
    if (in_pgp_signature) {
      if (starts_with(line, "-----END PGP SIGNATURE")) in_pgp_signature = false;
      continue;
    }
    if (starts_with(line, "-----BEGIN PGP SIGNED MESSAGE") || starts_with(line, "Hash: ")) continue;
    const size_t first = line.find_first_not_of(" \t");
    if (first != std::string_view::npos && (line[first] == '>' || line[first] == '|')) continue;  // quoted
    line = line.substr(0, line.find_last_not_of(" \t") + 1);
    if (first == std::string_view::npos || line.empty()) {
      ++blank_run;
      continue;
    }
    if (!out.empty()) out += blank_run > 0 ? "\n\n" : "\n";
    blank_run = 0;
    out.append(line);
  }
  if (!out.empty()) out += '\n';
  return out;
}

}  // namespace

std::string email_body_text(const std::string& raw_message) {
  std::string message;
  message.reserve(raw_message.size());
  for (size_t i = 0; i < raw_message.size(); ++i) {
    if (raw_message[i] == '\r' && i + 1 < raw_message.size() && raw_message[i + 1] == '\n') continue;
    message += raw_message[i];
  }
  const auto [headers, body] = split_message(message);
  return clean_body(entity_text(headers, body, 0));
}

}  // namespace keel
