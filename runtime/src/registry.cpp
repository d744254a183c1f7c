#include "actorbus/runtime/registry.hpp"

#include <caf/abstract_actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/attachable.hpp>
#include <caf/sec.hpp>

#include <map>
#include <mutex>

namespace actorbus::runtime {

struct registry::state {
  std::mutex mtx;
  std::map<std::string, caf::strong_actor_ptr, std::less<>> entries;

  // Returns the removed reference so that callers release it outside the
  // lock: dropping the last reference to an actor runs its exit hooks, and
  // those take this lock.
  caf::strong_actor_ptr take(std::string_view name,
                             const caf::actor_addr* only_if = nullptr) {
    std::lock_guard guard{mtx};
    auto i = entries.find(name);
    if (i == entries.end() || (only_if != nullptr && i->second != *only_if))
      return nullptr;
    auto result = std::move(i->second);
    entries.erase(i);
    return result;
  }
};

registry::registry()
    : state_(std::make_shared<state>()) {
  // nop
}

registry::~registry() = default;

caf::error registry::put_impl(std::string_view name,
                              caf::strong_actor_ptr who) {
  if (name.empty())
    return caf::make_error(caf::sec::invalid_argument,
                           "registry: empty actor name");
  if (!who)
    return caf::make_error(caf::sec::invalid_argument,
                           "registry: invalid actor handle");
  {
    std::lock_guard guard{state_->mtx};
    auto i = state_->entries.find(name);
    if (i != state_->entries.end()) {
      if (i->second == who)
        return caf::none;
      return caf::make_error(caf::sec::runtime_error,
                             "registry: name already taken", std::string{name});
    }
    state_->entries.emplace(std::string{name}, who);
  }
  // Remove the entry when the actor terminates. If it already has, attach
  // runs the hook immediately, so no dead entry survives.
  std::weak_ptr<state> weak = state_;
  auto addr = caf::actor_cast<caf::actor_addr>(who);
  who->get()->attach_functor(
      [weak, key = std::string{name}, addr](const caf::error&) {
        if (auto st = weak.lock())
          st->take(key, &addr);
      });
  return caf::none;
}

caf::strong_actor_ptr registry::get_impl(std::string_view name) const {
  std::lock_guard guard{state_->mtx};
  auto i = state_->entries.find(name);
  return i != state_->entries.end() ? i->second : nullptr;
}

bool registry::erase(std::string_view name) {
  return state_->take(name) != nullptr;
}

std::size_t registry::size() const {
  std::lock_guard guard{state_->mtx};
  return state_->entries.size();
}

std::vector<std::string> registry::names() const {
  std::vector<std::string> result;
  std::lock_guard guard{state_->mtx};
  for (auto& kvp : state_->entries)
    result.push_back(kvp.first);
  return result;
}

void registry::clear() {
  decltype(state_->entries) dropped;
  {
    std::lock_guard guard{state_->mtx};
    dropped.swap(state_->entries);
  }
  // Release the references outside the lock: the last reference to an actor
  // may run its cleanup, which takes the lock through the exit hook.
}

} // namespace actorbus::runtime
