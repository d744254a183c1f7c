#pragma once

// The runtime: one CAF actor system plus what an embedding program needs
// around it (named actors, logging, graceful shutdown).
//
// Ownership: the runtime owns its config and its actor system. Actors
// spawned through `spawn` are tracked so that shutdown can stop them; actors
// spawned on `system()` directly are not, and CAF waits for them as usual.
//
// Shutdown (`shutdown()` or the destructor) is graceful and bounded:
//  1. stop accepting work: `accepting()` turns false, `spawn` fails;
//  2. every tracked actor gets an exit message (`user_shutdown`) and may
//     drain its mailbox until the deadline;
//  3. actors still running at the deadline are killed (`exit_reason::kill`
//     cannot be trapped);
//  4. an actor that still does not finish, because a handler blocks its
//     thread, is abandoned: the actor system is parked (kept, not joined) so
//     that shutdown returns on time; its threads end with the process. The
//     report says how many actors were abandoned.
// `system()` may be used until shutdown begins.
// All member functions are thread-safe.

#include "actorbus/runtime/config.hpp"
#include "actorbus/runtime/fwd.hpp"
#include "actorbus/runtime/registry.hpp"

#include <caf/actor_system.hpp>
#include <caf/error.hpp>
#include <caf/exit_reason.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>

namespace actorbus::runtime {

/// What a shutdown did.
struct shutdown_report {
  /// Tracked actors that exited on their own after `user_shutdown`.
  std::size_t exited = 0;
  /// Actors killed at the deadline.
  std::size_t killed = 0;
  /// Actors still running after the kill grace period; their system was
  /// parked instead of joined.
  std::size_t abandoned = 0;
  /// Time the shutdown took.
  caf::timespan elapsed{0};
};

/// One actor system with what an embedding program needs around it: named
/// actors, logging, tracked actors and a graceful, bounded shutdown.
class runtime {
public:
  /// Starts an actor system from `cfg` (default: embedding defaults).
  /// Ignores SIGPIPE for the process: a dead peer must produce an error,
  /// not kill the program.
  explicit runtime(runtime_config cfg = runtime_config{});

  /// Shuts down with the configured `actorbus.shutdown-timeout`.
  ~runtime();

  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  caf::actor_system& system() noexcept {
    return *system_;
  }

  const runtime_config& config() const noexcept {
    return *cfg_;
  }

  /// String-named actors of this runtime.
  registry& names() noexcept {
    return names_;
  }

  /// Spawns an actor with `caf::actor_system::spawn` and tracks it for
  /// graceful shutdown. Fails with `caf::sec::runtime_error` once shutdown
  /// has begun.
  template <caf::spawn_options Os = caf::no_spawn_options, class... Ts>
  auto spawn(Ts&&... xs) -> caf::expected<
      decltype(std::declval<caf::actor_system&>().template spawn<Os>(
          std::forward<Ts>(xs)...))> {
    if (!accepting())
      return caf::make_error(caf::sec::runtime_error,
                             "runtime is shutting down");
    auto hdl = system_->template spawn<Os>(std::forward<Ts>(xs)...);
    track(caf::actor_cast<caf::actor>(hdl));
    return hdl;
  }

  /// Spawns a class-based actor and tracks it.
  template <class T, caf::spawn_options Os = caf::no_spawn_options, class... Ts>
  auto spawn(Ts&&... xs) -> caf::expected<
      decltype(std::declval<caf::actor_system&>().template spawn<T, Os>(
          std::forward<Ts>(xs)...))> {
    if (!accepting())
      return caf::make_error(caf::sec::runtime_error,
                             "runtime is shutting down");
    auto hdl = system_->template spawn<T, Os>(std::forward<Ts>(xs)...);
    track(caf::actor_cast<caf::actor>(hdl));
    return hdl;
  }

  /// Tracks an actor spawned elsewhere, so shutdown stops it too.
  void track(const caf::actor& who);

  /// Number of tracked actors still running.
  std::size_t tracked() const;

  bool accepting() const noexcept {
    return accepting_.load(std::memory_order_acquire);
  }

  /// Graceful shutdown as described above, waiting at most `deadline` for
  /// actors to exit before killing them. Idempotent: later calls return the
  /// first report.
  shutdown_report shutdown(caf::timespan deadline);

  /// Shutdown with the configured deadline.
  shutdown_report shutdown();

  /// Blocks until every actor abandoned by a shutdown in this process has
  /// finished, or until `timeout`. Returns whether none still runs.
  static bool await_abandoned(caf::timespan timeout);

private:
  // Heap-allocated so that an abandoned actor system can take its config
  // (which it references) along when it is parked.
  std::unique_ptr<runtime_config> cfg_;
  std::unique_ptr<caf::actor_system> system_;
  registry names_;
  std::atomic<bool> accepting_{true};

  struct tracking;
  std::shared_ptr<tracking> tracking_;

  std::mutex shutdown_mtx_;
  bool shut_down_ = false;
  shutdown_report report_;
};

} // namespace actorbus::runtime
