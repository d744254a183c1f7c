#pragma once

// A string-named actor registry.
//
// CAF 0.17's own registry keys on 10-character atoms; this one takes any
// string. Thread-safe. An entry holds a strong reference, and it removes
// itself when its actor terminates, so a lookup never returns a dead actor
// for longer than the actor's exit takes to propagate.

#include "actorbus/runtime/fwd.hpp"

#include <caf/actor.hpp>
#include <caf/actor_cast.hpp>
#include <caf/actor_control_block.hpp>
#include <caf/expected.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace actorbus::runtime {

/// Actors of one runtime under string names; an actor that exits leaves
/// by itself. Thread-safe.
class registry {
public:
  registry();
  ~registry();
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  /// Registers `who` under `name`. Fails with `caf::sec::invalid_argument`
  /// for an empty name or an invalid handle, and with
  /// `caf::sec::runtime_error` when the name is taken by a live actor.
  /// Registering the same actor under the same name again is a no-op.
  template <class Handle>
  caf::error put(std::string_view name, const Handle& who) {
    return put_impl(name, caf::actor_cast<caf::strong_actor_ptr>(who));
  }

  /// Looks up `name`; the result is invalid when nothing is registered.
  template <class Handle = caf::actor>
  Handle get(std::string_view name) const {
    return caf::actor_cast<Handle>(get_impl(name));
  }

  /// Removes `name`. Returns whether an entry was removed.
  bool erase(std::string_view name);

  /// Number of registered names.
  std::size_t size() const;

  /// A snapshot of the registered names, sorted.
  std::vector<std::string> names() const;

  /// Drops every entry (used by runtime shutdown).
  void clear();

private:
  caf::error put_impl(std::string_view name, caf::strong_actor_ptr who);
  caf::strong_actor_ptr get_impl(std::string_view name) const;

  // Shared with the exit hooks attached to registered actors, which may run
  // after the registry is gone.
  struct state;
  std::shared_ptr<state> state_;
};

} // namespace actorbus::runtime
