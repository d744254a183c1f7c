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
using ready_atom = caf::atom_constant<caf::atom("aq_ready")>;
using expire_atom = caf::atom_constant<caf::atom("aq_expire")>;
using echo_atom = caf::atom_constant<caf::atom("aq_echo")>;

constexpr auto category = caf::atom("asyncq");

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
            rp.deliver(ready_atom::value);
            return;
          }
          waiting_.emplace(id, std::move(rp));
          // Longer than a year means "no timeout" (and must not overflow the
          // clock).
          if (timeout < std::chrono::hours{24 * 366})
            delayed_send(this, timeout, expire_atom::value, id);
        },
        [this](ready_atom, uint64_t id) {
          auto i = waiting_.find(id);
          if (i == waiting_.end()) {
            ready_.insert(id);
            return;
          }
          i->second.deliver(ready_atom::value);
          waiting_.erase(i);
        },
        [](echo_atom) { return ready_atom::value; },
        [this](expire_atom, uint64_t id) {
          auto i = waiting_.find(id);
          if (i == waiting_.end() || !expire_(id))
            return; // already served; its ready message is on its way
          i->second.deliver(ready_atom::value);
          waiting_.erase(i);
        },
    };
  }

  void on_exit() override {
    // Waits still pending when the queue goes away fail instead of hanging.
    for (auto& kvp : waiting_)
      kvp.second.deliver(make_error(async_queue_errc::closed));
    waiting_.clear();
  }

private:
  std::function<bool(uint64_t)> expire_;
  std::unordered_map<uint64_t, caf::response_promise> waiting_;
  std::unordered_set<uint64_t> ready_;
};

} // namespace

caf::error make_error(async_queue_errc code) {
  static constexpr const char* what[] = {"", "queue closed", "wait timed out",
                                         "task_done without unfinished task"};
  auto i = static_cast<uint8_t>(code);
  return caf::error{i, category,
                    caf::make_message(std::string{i < 4 ? what[i] : "?"})};
}

bool is(const caf::error& err, async_queue_errc code) {
  return err.category() == category && err.code() == static_cast<uint8_t>(code);
}

namespace detail {

caf::actor spawn_async_queue_relay(caf::actor_system& sys,
                                   std::function<bool(uint64_t)> expire) {
  return sys.spawn<relay_actor>(std::move(expire));
}

void notify_async_queue_relay(const caf::actor& relay, uint64_t id) {
  if (relay)
    caf::anon_send(relay, ready_atom::value, id);
}

void await_async_queue_relay(caf::event_based_actor* self,
                             const caf::actor& relay, uint64_t id,
                             caf::timespan timeout, std::function<void()> done,
                             std::function<void(caf::error)> failed) {
  self->request(relay, caf::infinite, wait_atom::value, id, timeout)
      .then([done = std::move(done)](ready_atom) { done(); },
            [failed = std::move(failed)](caf::error& err) {
              failed(std::move(err));
            });
}

void defer_on_async_queue_relay(caf::event_based_actor* self,
                                const caf::actor& relay,
                                std::function<void()> fn,
                                std::function<void(caf::error)> failed) {
  self->request(relay, caf::infinite, echo_atom::value)
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
