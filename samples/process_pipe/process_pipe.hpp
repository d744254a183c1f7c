#pragma once

// The process_pipe sample's two ends, shared by the sample and
// bench_ipc_process_pipe, which measures them: the worker process that
// squares the numbers it is sent until "STOP", and the parent's side, which
// forks it, sends 1..n one at a time, reads each square and stops it.

#include "actorbus/ipc/channel.hpp"

#include <fmt/core.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace actorbus::samples::process_pipe {

inline std::span<const std::byte> as_bytes(const std::string& s) {
  return std::as_bytes(std::span{s.data(), s.size()});
}

inline std::string as_string(const std::vector<std::byte>& v) {
  return {reinterpret_cast<const char*>(v.data()), v.size()};
}

// The seed's process_message: here, squaring the number it is given.
inline std::string process_message(const std::string& msg) {
  auto n = std::stoll(msg);
  return std::to_string(n * n);
}

// The worker process: answer until "STOP" (or until the parent is gone).
inline int worker(const std::string& name) {
  using namespace std::chrono_literals;
  auto conn = ipc::channel::open(name, 5s);
  if (!conn) {
    fmt::print(stderr, "worker: {}\n", ipc::describe(conn.error()));
    return 1;
  }
  std::vector<std::byte> msg;
  for (;;) {
    if (auto err = conn->receive(msg, 10s)) {
      fmt::print(stderr, "worker: {}\n", ipc::describe(err));
      return 1;
    }
    if (as_string(msg) == "STOP")
      return 0;
    if (auto err = conn->send(as_bytes(process_message(as_string(msg))), 5s))
      return 1;
  }
}

// Forks the worker for the channel `name`; answers its pid (-1 if fork
// failed).
inline pid_t start_worker(const std::string& name) {
  auto pid = ::fork();
  if (pid == 0)
    ::_exit(worker(name));
  return pid;
}

// Sends 1..items one at a time and reads each result, handing it (a
// string) to `on_result`; answers their sum or the first error.
template <class OnResult>
inline caf::expected<long long> send_items(ipc::channel& conn, int64_t items,
                                           OnResult on_result) {
  using namespace std::chrono_literals;
  long long total = 0;
  std::vector<std::byte> reply;
  for (int64_t item = 1; item <= items; ++item) {
    auto err = conn.send(as_bytes(std::to_string(item)), 5s);
    if (!err)
      err = conn.receive(reply, 5s);
    if (err)
      return err;
    auto result = as_string(reply);
    on_result(result);
    total += std::stoll(result);
  }
  return total;
}

// Sends "STOP", reaps the worker and closes the channel; answers the
// worker's wait status.
inline int stop_worker(ipc::channel& conn, pid_t pid) {
  using namespace std::chrono_literals;
  (void)conn.send(as_bytes("STOP"), 5s);
  int status = 0;
  ::waitpid(pid, &status, 0);
  conn.close();
  return status;
}

} // namespace actorbus::samples::process_pipe
