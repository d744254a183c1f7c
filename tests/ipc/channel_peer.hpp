#pragma once

// A forked child process at the other end of a channel, for tests of what
// crosses a process boundary. The parent creates the channel before it
// forks, so the child never races its creation; the parent must start its
// actor system only after constructing a `channel_peer` (threads do not
// survive a fork, and a system started before it could leave the child
// with locks held by threads that no longer exist).

#include "actorbus/ipc/channel.hpp"

#include "ipc_names.hpp"

#include <chrono>
#include <csignal>
#include <functional>
#include <optional>
#include <string>
#include <unistd.h>

namespace actorbus::ipc::testing {

class channel_peer {
public:
  /// Exit code of a child that could not open the channel.
  static constexpr int open_failed = 100;

  /// Creates the channel `name` and forks a child that opens it and exits
  /// with `body(channel)`. Check `ok()` before using `take_channel()`.
  channel_peer(const std::string& name, std::function<int(channel)> body) {
    auto ch = channel::create(name);
    if (!ch)
      return;
    channel_.emplace(std::move(*ch));
    pid_ = fork_child([&name, &body] {
      auto peer_end = channel::open(name, std::chrono::seconds(5));
      if (!peer_end)
        return open_failed;
      return body(std::move(*peer_end));
    });
  }

  channel_peer(const channel_peer&) = delete;
  channel_peer& operator=(const channel_peer&) = delete;

  /// Kills the child if it still runs.
  ~channel_peer() {
    kill();
  }

  /// Whether the channel exists and the child was forked.
  bool ok() const {
    return channel_.has_value() && pid_ > 0;
  }

  /// The parent's end of the channel (once).
  channel take_channel() {
    auto result = std::move(*channel_);
    channel_.reset();
    return result;
  }

  pid_t pid() const {
    return pid_;
  }

  /// Kills the child with SIGKILL and reaps it.
  void kill() {
    if (pid_ <= 0)
      return;
    ::kill(pid_, SIGKILL);
    wait_child(pid_, std::chrono::seconds(5));
    pid_ = 0;
  }

private:
  std::optional<channel> channel_;
  pid_t pid_ = 0;
};

} // namespace actorbus::ipc::testing
