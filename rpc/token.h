// The shared secret between the coordinator and its workers: where it comes from (a file or the
// environment) and what it may contain. Used by the coordinator program and by every client.
// Torch-free and gRPC-free.
#pragma once

#include <string>

namespace keel::coord {

// The shared token for the coordinator: the trimmed contents of `token_file` when given, else the
// environment variable KEEL_COORDINATOR_TOKEN, else "" (no token). Throws KeelError for an
// unreadable or empty token file. Callers must never log the result.
std::string resolve_coordinator_token(const std::string& token_file);
inline constexpr const char* kTokenEnvironmentVariable = "KEEL_COORDINATOR_TOKEN";

}  // namespace keel::coord
