// Text out of the encodings that mail and old text files use: quoted-printable and base64
// (Content-Transfer-Encoding), Windows-1252 / ISO-8859-1 bytes, and HTML markup. Used by the large
// corpus' readers (data/mail_text.h, data/large_corpus.h), so that every document prepare
// tokenizes is valid UTF-8 prose. Torch-free.
#pragma once

#include <string>
#include <string_view>

namespace keel {

// Header names, charsets and tags compare case-insensitively: ASCII letters lowered, other bytes kept.
std::string ascii_lower(std::string_view text);
bool starts_with(std::string_view text, std::string_view prefix);

// Visible text of an HTML fragment: <script>, <style>, <head> and comments removed, block tags
// (p, div, br, tr, li, h1..h6, table) become line breaks, other tags vanish, character references
// (&amp; &nbsp; &#39; &#x201C; and the common named ones) are decoded, and runs of spaces and of
// blank lines collapse.
std::string html_to_text(const std::string& html);

// Content-Transfer-Encoding decoders. Invalid input degrades gracefully: quoted-printable keeps a
// malformed "=XY" as it is, base64 skips characters outside its alphabet.
std::string decode_quoted_printable(const std::string& text);
std::string decode_base64(const std::string& text);

// `text` as valid UTF-8: unchanged when it already is; otherwise read as Windows-1252 (which
// agrees with ISO-8859-1 on every printable character and gives the curly quotes and dashes that
// mail clients put in 0x80..0x9F). NUL and other C0 controls except tab and newline are dropped,
// CR LF becomes LF.
std::string to_utf8(const std::string& text);

}  // namespace keel
