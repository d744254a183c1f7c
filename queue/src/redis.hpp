#pragma once

// Internal: a blocking hiredis connection with timeouts, pipelining,
// reconnect, and the queue's Lua scripts. Not thread-safe.

#include "actorbus/queue/config.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include <hiredis/hiredis.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace actorbus::queue::internal {

struct reply_deleter {
  void operator()(redisReply* r) const noexcept {
    if (r != nullptr)
      freeReplyObject(r);
  }
};

using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

/// Renders a reply as text (for errors and `client::command`).
std::string render(const redisReply* r);

inline std::string_view str(const redisReply* r) {
  if (r == nullptr ||
      (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS &&
       r->type != REDIS_REPLY_ERROR))
    return {};
  return {r->str, r->len};
}

/// Names of the queue's keys.
struct keys {
  explicit keys(const std::string& ns);
  std::string ns;
  std::string streams[3];
  std::string delayed;
  std::string dead;
  std::string task(std::string_view id) const;
  std::string notify(std::string_view id) const;
};

inline constexpr const char* group_name = "workers";

/// The Lua scripts, by index.
enum class script : int {
  enqueue,
  promote,
  finish,
  wait_prepare,
  cancel,
  enqueue_many,
  reclaim,
  backlog,
  count
};

class connection {
public:
  explicit connection(const queue_config& cfg, std::string url);
  ~connection();

  /// Connects (once) or reconnects, also when the scripts were lost; loads
  /// the scripts and creates the consumer group.
  caf::error connect();

  bool connected() const noexcept {
    return ctx_ != nullptr;
  }

  /// Whether Redis answered NOSCRIPT (its script cache was flushed): the
  /// next `connect()` connects again and loads the scripts.
  bool scripts_lost() const noexcept {
    return scripts_lost_;
  }

  /// Drops the connection (after an I/O error).
  void drop();

  /// One command; an I/O error drops the connection. A Redis error reply is
  /// returned as a reply of type REDIS_REPLY_ERROR.
  caf::expected<reply_ptr> run(const std::vector<std::string>& args);

  /// Queues a command without waiting for its reply.
  void append(const std::vector<std::string>& args);

  /// Reads the reply of the oldest appended command.
  caf::expected<reply_ptr> next_reply();

  /// Flushes appended commands to the socket.
  caf::error flush();

  /// Whether input beyond the replies taken so far has arrived already
  /// (without reading the socket).
  bool input_buffered() const noexcept;

  /// EVALSHA args for `s` (to append or run).
  std::vector<std::string> eval(script s, std::vector<std::string> keys,
                                std::vector<std::string> argv) const;

  /// Sets how long the following replies may take (0: io_timeout).
  void timeout(caf::timespan t);

  const std::string& url() const noexcept {
    return url_;
  }

private:
  caf::error io_error(const char* what);

  /// Waits until the socket has input (or was closed), at most the current
  /// timeout; drops the connection on a timeout.
  caf::error wait_readable();

  queue_config cfg_;
  std::string url_;
  redisContext* ctx_ = nullptr;
  std::string shas_[static_cast<int>(script::count)];
  caf::timespan current_timeout_{0};
  bool scripts_lost_ = false;
};

/// Whether `r` is Redis's NOSCRIPT error (the script did not run).
bool is_noscript(const redisReply* r);

/// Current Unix time in milliseconds.
int64_t now_ms();

} // namespace actorbus::queue::internal
