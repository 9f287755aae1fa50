// "Did you mean ...?" for a mistyped name (a config key, a section): the closest known name by
// edit distance (insertions, deletions, substitutions and swaps of neighbours, each 1), if it is
// close enough to be a typo rather than a different word. Torch-free.
#pragma once

#include <string>
#include <vector>

namespace keel {

// Optimal-string-alignment distance between `a` and `b`.
size_t edit_distance(const std::string& a, const std::string& b);

// The candidate nearest to `typed` within max(1, size/3) edits (ties: the first), or "".
std::string closest_match(const std::string& typed, const std::vector<std::string>& candidates);

}  // namespace keel
