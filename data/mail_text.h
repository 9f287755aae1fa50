// Plain English text out of raw e-mail (the SpamAssassin public corpus of the large corpus, see
// data/large_corpus.h).
//
// Why: a mail file is mostly transport, not language: Received/DKIM/List-* headers, MIME
// boundaries, base64 attachments, quoted-printable soft breaks, HTML markup and the quoted text of
// the message it answers (which the corpus already holds as that message). Training on it would
// teach the model header syntax. email_body_text keeps what a reader sees: the text/plain parts
// (or, in a multipart/alternative with no plain part, the HTML part as text), decoded to UTF-8,
// without quoted lines, signatures, PGP armour and mailing-list footers. The decoders it uses
// (quoted-printable, base64, charsets, HTML) are in data/text_decoding.h. Torch-free.
#pragma once

#include <string>

#include "data/text_decoding.h"  // html_to_text, to_utf8, the decoders

namespace keel {

// The readable body of one RFC 822 message (headers, then a blank line, then the body; LF or
// CRLF). Walks MIME multiparts (nested too): text/plain parts are kept, text/html parts are turned
// into text when the message (or its multipart/alternative) has no text/plain one, everything else
// (images, attachments, forwarded messages, PGP signatures) is dropped. Content-Transfer-Encoding
// base64 and quoted-printable are decoded, and charsets other than UTF-8 are converted
// (to_utf8). A part in a charset that is not Latin (e.g. gb2312, koi8-r) is dropped. Then lines
// quoting another message ("> ...", "| ...") and their attributions ("On Tue, Bob wrote:", quoted
// "From:"/"Date:" lines), PGP armour, and everything from a signature ("-- ") or a line starting
// with 10+ dashes or underscores (list footers, sponsor blocks, "----- Original Message") on are
// removed, trailing spaces trimmed and runs of blank lines kept to one. Returns "" when nothing
// readable is left.
std::string email_body_text(const std::string& raw_message);

}  // namespace keel
