#include "liveness.hpp"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <unistd.h>

namespace actorbus::ipc::internal {

namespace {

// What /proc/<pid>/stat said: read, the process is gone (ENOENT, ESRCH),
// or nothing either way (out of descriptors, /proc not mounted, ...).
enum class stat_result { read, gone, unknown };

stat_result from_errno(int err) {
  return err == ENOENT || err == ESRCH ? stat_result::gone
                                       : stat_result::unknown;
}

// Reads state and start time from /proc/<pid>/stat.
stat_result read_stat(pid_t pid, char& state, uint64_t& start) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return from_errno(errno);
  char buf[1024];
  auto n = ::read(fd, buf, sizeof(buf) - 1);
  auto err = errno;
  ::close(fd);
  if (n < 0)
    return from_errno(err);
  if (n == 0)
    return stat_result::gone; // reaped between open and read
  buf[n] = '\0';
  // The command name may contain spaces and parentheses: skip to the last ')'.
  char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] != ' ')
    return stat_result::unknown;
  p += 2;
  state = *p;
  // Fields after the name: state is field 3, starttime is field 22.
  for (int field = 3; field < 22; ++field) {
    p = std::strchr(p, ' ');
    if (p == nullptr)
      return stat_result::unknown;
    ++p;
  }
  start = std::strtoull(p, nullptr, 10);
  return stat_result::read;
}

process_id_word pack(pid_t pid, uint64_t start) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(pid)) << 32) |
         (start & 0xFFFFFFFFu);
}

} // namespace

process_id_word self_identity() {
  // Cached per process; a forked child has another pid and recomputes.
  static std::atomic<process_id_word> cached{0};
  auto pid = ::getpid();
  auto w = cached.load(std::memory_order_relaxed);
  if (w != 0 && pid_of(w) == pid)
    return w;
  char state = 0;
  uint64_t start = 0;
  if (read_stat(pid, state, start) != stat_result::read)
    return pack(pid, 0); // not cached: the next call asks /proc again
  w = pack(pid, start);
  cached.store(w, std::memory_order_relaxed);
  return w;
}

process_id_word identity_of(pid_t pid) {
  char state = 0;
  uint64_t start = 0;
  if (pid <= 0 || read_stat(pid, state, start) != stat_result::read)
    return 0;
  if (state == 'Z' || state == 'X' || state == 'x')
    return 0;
  return pack(pid, start);
}

bool alive(process_id_word w) {
  auto pid = pid_of(w);
  if (w == 0 || pid <= 0)
    return false;
  char state = 0;
  uint64_t start = 0;
  switch (read_stat(pid, state, start)) {
  case stat_result::read:
    return state != 'Z' && state != 'X' && state != 'x' &&
           pack(pid, start) == w;
  case stat_result::gone:
    return false;
  case stat_result::unknown:
    break;
  }
  // /proc cannot tell: kill(2) needs no descriptor and still knows whether
  // the pid exists (a reused pid passes until /proc answers again).
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

uint64_t monotonic_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000u +
         static_cast<uint64_t>(ts.tv_nsec) / 1000000u;
}

} // namespace actorbus::ipc::internal
