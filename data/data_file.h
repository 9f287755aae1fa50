// Reading a whole input file of the data layer (corpus documents, tokenizer files) into memory,
// with the data layer's error: DataError "cannot read <what> '<path>' (<hint>)".
#pragma once

#include <string>

namespace keel {

// what: what the file is ("Bible file"; empty: nothing); hint: how to get it (empty: none).
std::string read_data_file(const std::string& path, const std::string& what = "", const std::string& hint = "");

}  // namespace keel
