// The shared secret between the coordinator and its workers: where it comes from (a file or the
// environment), what it may contain, and a new random one per job (what `keel train` gives the
// coordinator it starts, loopback included, so another local user cannot drive the job). Used by
// the coordinator program, by every client and by `keel train`. Torch-free and gRPC-free.
#pragma once

#include <string>

namespace keel::coord {

// The shared token for the coordinator: the trimmed contents of `token_file` when given, else the
// environment variable KEEL_COORDINATOR_TOKEN, else "" (no token). Throws KeelError for an
// unreadable or empty token file. Callers must never log the result.
std::string resolve_coordinator_token(const std::string& token_file);
inline constexpr const char* kTokenEnvironmentVariable = "KEEL_COORDINATOR_TOKEN";

// A new token: 32 bytes from the kernel's random generator (getrandom), as 64 hex digits.
std::string new_coordinator_token();

// Writes `token` (and a newline) to a new file `path` that only its owner can read or write: it is
// created with O_CREAT | O_EXCL | O_NOFOLLOW and mode 0600, so it is never readable by others,
// not even for an instant, and never written through a planted link. A file already at `path` (a
// previous job's token) is removed first. Throws KeelError naming the path on failure.
void write_token_file(const std::string& path, const std::string& token);

}  // namespace keel::coord
