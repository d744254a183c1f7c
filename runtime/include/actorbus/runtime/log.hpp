#pragma once

// Leveled logging through fmt, tagged with the actor that logs.
//
// Thread-safe: every line is formatted first and written with one call, so
// lines from different threads never interleave. Lines go to stderr unless a
// sink is installed. Messages below the runtime's level cost one comparison.

#include "actorbus/runtime/fwd.hpp"

#include <caf/local_actor.hpp>

#include <fmt/format.h>

#include <atomic>
#include <functional>
#include <string>
#include <string_view>

namespace actorbus::runtime {

enum class log_level : int { trace, debug, info, warning, error, off };

/// Parses "trace", "debug", "info", "warning" ("warn"), "error" or "off".
/// Returns `fallback` for anything else.
log_level parse_log_level(std::string_view text, log_level fallback);

std::string_view to_string(log_level level);

/// A process-wide logger. The runtime sets its level from its config.
class logger {
public:
  using sink = std::function<void(log_level, std::string_view line)>;

  static logger& instance();

  void level(log_level x) noexcept {
    level_.store(x, std::memory_order_relaxed);
  }

  log_level level() const noexcept {
    return level_.load(std::memory_order_relaxed);
  }

  bool enabled(log_level x) const noexcept {
    return x >= level() && x != log_level::off;
  }

  /// Replaces the sink (nullptr restores stderr). Returns the previous one.
  sink set_sink(sink f);

  /// Writes one finished line: "<time> <LEVEL> [<who>] <text>".
  void write(log_level lvl, std::string_view who, std::string_view text);

private:
  logger() = default;
  std::atomic<log_level> level_{log_level::info};
};

/// The name a log line shows for an actor: CAF's name and id
/// ("user.scheduled-actor#12"); class-based actors choose it by overriding
/// `name()`.
std::string actor_label(const caf::local_actor* self);

/// Logs from outside any actor ("main").
template <class... Ts>
void log(log_level lvl, fmt::format_string<Ts...> fstr, Ts&&... xs) {
  auto& lg = logger::instance();
  if (lg.enabled(lvl))
    lg.write(lvl, "main", fmt::format(fstr, std::forward<Ts>(xs)...));
}

/// Logs on behalf of an actor.
template <class... Ts>
void log(const caf::local_actor* self, log_level lvl,
         fmt::format_string<Ts...> fstr, Ts&&... xs) {
  auto& lg = logger::instance();
  if (lg.enabled(lvl))
    lg.write(lvl, actor_label(self),
             fmt::format(fstr, std::forward<Ts>(xs)...));
}

} // namespace actorbus::runtime
