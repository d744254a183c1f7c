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
#include <caf/config_option_adder.hpp>
#include <caf/error.hpp>
#include <caf/timespan.hpp>

#include <iosfwd>
#include <string>
#include <string_view>
#include <utility>
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

/// The configuration of a `runtime`: CAF's actor system config with
/// defaults for embedding, layered under an INI file and the command line,
/// plus the program's own options (`add_option`) without subclassing.
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

  /// Declares the program's own option `--<group>.<name>`, also read from
  /// the INI file's `[<group>]` section, without subclassing. Call before
  /// `load`; `--help` lists it with `description`. `load` then fails for a
  /// value that does not parse as a `T`.
  template <class T>
  runtime_config& add_option(std::string_view group, std::string_view name,
                             std::string_view description) {
    caf::config_option_adder{custom_options_, as_caf(group)}.template add<T>(
        as_caf(name), as_caf(description));
    return *this;
  }

  /// Same, with a default value the file and the command line override.
  template <class T>
  runtime_config& add_option(std::string_view group, std::string_view name,
                             std::string_view description, T fallback) {
    add_option<T>(group, name, description);
    std::string key{group};
    key += '.';
    key += name;
    set(key, std::move(fallback));
    return *this;
  }

  /// The value of `key` ("group.name"), or `fallback` when it is unset or
  /// of another type.
  template <class T>
  T get_or(std::string_view key, T fallback) const {
    return caf::get_or(content, as_caf(key), std::move(fallback));
  }

  /// How long graceful shutdown waits for actors before killing them.
  caf::timespan shutdown_timeout() const;

  /// Minimum level for actorbus log lines (`actorbus.log-level`).
  log_level min_log_level() const;

private:
  static caf::string_view as_caf(std::string_view x) noexcept {
    return caf::string_view{x.data(), x.size()};
  }
};

} // namespace actorbus::runtime
