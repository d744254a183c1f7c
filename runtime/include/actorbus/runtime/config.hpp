#pragma once

// Configuration of an actorbus runtime.
//
// A runtime_config is a caf::actor_system_config with defaults fit for
// embedding on a small machine. Values come from three places, each
// overriding the one before: code (the constructor's defaults and set()
// calls), an INI file (CAF's `caf-application.ini` convention), and the
// command line (`--scheduler.max-threads=2`, `--actorbus.log-level=debug`).
// Not thread-safe: configure before constructing the runtime.

#include "actorbus/runtime/fwd.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/error.hpp>
#include <caf/timespan.hpp>

#include <iosfwd>
#include <string>
#include <vector>

namespace actorbus::runtime {

/// Scheduler settings measured on a 2-core machine; see README
/// "Configuration". `stock` leaves CAF's defaults untouched.
enum class scheduler_profile {
  /// Idle workers skip CAF's 50 µs sleep-poll phase and block on a condition
  /// variable that the next enqueue signals: low latency, no idle spinning
  /// beyond a short burst.
  responsive,
  /// CAF 0.17's own defaults (for comparison and benchmarks).
  stock,
};

/// Defaults for embedding, layered under an INI file and the command line.
class runtime_config : public caf::actor_system_config {
public:
  /// Applies the embedding defaults: at most `hardware_concurrency` workers
  /// (at least 2), the `responsive` scheduler profile, logging at `info`.
  runtime_config();

  runtime_config(runtime_config&&) = default;
  /// Not assignable: CAF's `actor_system_config` deletes its assignment.
  runtime_config& operator=(runtime_config&&) = delete;

  /// Applies a scheduler profile (code level: a file or the command line
  /// still override it).
  runtime_config& use(scheduler_profile profile);

  /// Reads `ini_path` if it exists (a missing file is not an error), then
  /// the command line. Returns an error for a malformed file or an unknown
  /// or malformed option. `--help` fills `cli_helptext_printed`.
  caf::error load(int argc, char** argv,
                  const char* ini_path = "caf-application.ini");

  /// Same as above with the INI content given as a stream.
  caf::error load(std::vector<std::string> args, std::istream& ini);

  /// How long graceful shutdown waits for actors before killing them.
  caf::timespan shutdown_timeout() const;

  /// Minimum level for actorbus log lines (`actorbus.log-level`).
  log_level min_log_level() const;
};

} // namespace actorbus::runtime
