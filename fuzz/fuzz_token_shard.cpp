// Fuzz target: token shards (data/token_shard.h). Any byte string as a shard file: it either maps
// and validates (then every token is read) or is refused with a DataError naming the problem.
#include <cstdint>
#include <string>

#include "data/token_shard.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = keel::fuzz::write_scratch("shard.bin", data, size);
  try {
    keel::TokenShard shard(path);
    uint64_t sum = 0;
    for (int64_t i = 0; i < shard.num_tokens(); ++i) sum += shard.tokens()[i];  // every byte is mapped
    if (shard.num_tokens() > 0 && shard.max_token() == 0 && sum != 0) __builtin_trap();
  } catch (const keel::DataError&) {
  }
  return 0;
}
