// See data_file.h.
#include "data/data_file.h"

#include <fstream>
#include <sstream>

#include "data/token_shard.h"  // DataError

namespace keel {

std::string read_data_file(const std::string& path, const std::string& what, const std::string& hint) {
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) {
    throw DataError("cannot read " + (what.empty() ? "" : what + " ") + "'" + path + "'" +
                    (hint.empty() ? "" : " (" + hint + ")"));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace keel
