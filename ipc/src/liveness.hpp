#pragma once

// Process identity that survives pid reuse: the pid plus the process start
// time (field 22 of /proc/<pid>/stat), packed into one 64-bit word so that a
// slot in shared memory can be claimed with a single compare-and-swap.

#include <cstdint>
#include <sys/types.h>

namespace actorbus::ipc::internal {

/// Packs pid (high 32 bits) and the low 32 bits of the start time.
using process_id_word = uint64_t;

/// Returns the identity word of the calling process (never 0).
process_id_word self_identity();

/// Returns the identity word of `pid`, or 0 if it is gone or a zombie.
process_id_word identity_of(pid_t pid);

/// Returns the pid stored in `w`.
inline pid_t pid_of(process_id_word w) {
  return static_cast<pid_t>(w >> 32);
}

/// Returns whether the process named by `w` still runs (not a zombie, not a
/// reused pid). Only /proc saying the pid is gone (ENOENT, ESRCH) counts as
/// dead; when /proc cannot be read (e.g. EMFILE), the pid's existence
/// decides.
bool alive(process_id_word w);

/// Milliseconds on the monotonic clock, for heartbeats.
uint64_t monotonic_ms();

} // namespace actorbus::ipc::internal
