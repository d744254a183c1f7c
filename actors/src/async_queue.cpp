// The relay actor of async queues: it holds the response promises of actors
// waiting on a queue and fulfils them when the queue (or a timeout) says so.

#include "actorbus/actors/async_queue.hpp"

#include <caf/atom.hpp>
#include <caf/behavior.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/response_promise.hpp>
#include <caf/send.hpp>

#include <chrono>
#include <unordered_map>
#include <unordered_set>

namespace actorbus::actors {

namespace {

using wait_atom = caf::atom_constant<caf::atom("aq_wait")>;
inline constexpr wait_atom wait_v{};
using ready_atom = caf::atom_constant<caf::atom("aq_ready")>;
inline constexpr ready_atom ready_v{};
using expire_atom = caf::atom_constant<caf::atom("aq_expire")>;
inline constexpr expire_atom expire_v{};
using echo_atom = caf::atom_constant<caf::atom("aq_echo")>;
inline constexpr echo_atom echo_v{};

class relay_actor : public caf::event_based_actor {
public:
  relay_actor(caf::actor_config& cfg, std::function<bool(uint64_t)> expire)
      : caf::event_based_actor(cfg)
      , expire_(std::move(expire)) {
    // nop
  }

  caf::behavior make_behavior() override {
    return {
        [this](wait_atom, uint64_t id, caf::timespan timeout) {
          auto rp = make_response_promise();
          // The result may have come before the wait reached us.
          if (ready_.erase(id) > 0) {
            rp.deliver(ready_v);
            return;
          }
          waiting_.emplace(id, std::move(rp));
          // Longer than a year means "no timeout" (and must not overflow the
          // clock).
          if (timeout < std::chrono::hours{24 * 366})
            delayed_send(this, timeout, expire_v, id);
        },
        [this](ready_atom, uint64_t id) {
          auto i = waiting_.find(id);
          if (i == waiting_.end()) {
            ready_.insert(id);
            return;
          }
          i->second.deliver(ready_v);
          waiting_.erase(i);
        },
        [](echo_atom) { return ready_v; },
        [this](expire_atom, uint64_t id) {
          auto i = waiting_.find(id);
          if (i == waiting_.end() || !expire_(id))
            return; // already served; its ready message is on its way
          i->second.deliver(ready_v);
          waiting_.erase(i);
        },
    };
  }

  void on_exit() override {
    // Waits still pending when the queue goes away fail instead of hanging.
    for (auto& kvp : waiting_)
      kvp.second.deliver(
          make_error(errc::closed, "async_queue: the queue was destroyed"));
    waiting_.clear();
  }

private:
  std::function<bool(uint64_t)> expire_;
  std::unordered_map<uint64_t, caf::response_promise> waiting_;
  std::unordered_set<uint64_t> ready_;
};

} // namespace

namespace detail {

caf::actor spawn_async_queue_relay(caf::actor_system& sys,
                                   std::function<bool(uint64_t)> expire) {
  return sys.spawn<relay_actor>(std::move(expire));
}

void notify_async_queue_relay(const caf::actor& relay, uint64_t id) {
  if (relay)
    caf::anon_send(relay, ready_v, id);
}

void await_async_queue_relay(caf::event_based_actor* self,
                             const caf::actor& relay, uint64_t id,
                             caf::timespan timeout, std::function<void()> done,
                             std::function<void(caf::error)> failed) {
  self->request(relay, caf::infinite, wait_v, id, timeout)
      .then([done = std::move(done)](ready_atom) { done(); },
            [failed = std::move(failed)](caf::error& err) {
              failed(std::move(err));
            });
}

void defer_on_async_queue_relay(caf::event_based_actor* self,
                                const caf::actor& relay,
                                std::function<void()> fn,
                                std::function<void(caf::error)> failed) {
  self->request(relay, caf::infinite, echo_v)
      .then([fn = std::move(fn)](ready_atom) { fn(); },
            [failed = std::move(failed)](caf::error& err) {
              failed(std::move(err));
            });
}

void stop_async_queue_relay(const caf::actor& relay) {
  caf::anon_send_exit(relay, caf::exit_reason::user_shutdown);
}

} // namespace detail

} // namespace actorbus::actors
