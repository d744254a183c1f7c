#pragma once

// What a README.md fragment may use without declaring it (see
// extract_snippets.py). Kept short on purpose: a fragment declares
// everything else it uses itself. Besides these, a fragment runs inside
// `void f(actorbus::runtime::runtime& rt)` with
// `caf::actor_system& sys = rt.system();`.

#include <caf/meta/type_name.hpp>

#include <chrono>
#include <string>

using namespace std::chrono_literals;

// The module namespaces, short, as the README writes them.
namespace actors = actorbus::actors;
namespace bus = actorbus::bus;
namespace ipc = actorbus::ipc;
namespace queue = actorbus::queue;

/// The README's example value: an order, which travels because it has an
/// `inspect` overload (README, "User types").
struct order {
  int id = 0;
  std::string item;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order& x) {
  return f(caf::meta::type_name("order"), x.id, x.item);
}
