#include "actorbus/runtime/call.hpp"

#include <caf/actor_companion.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/message_id.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace actorbus::runtime {

namespace {

// How long a caller spins for a reply before it blocks. A typical round trip
// on 2 cores is a few µs; spinning longer only burns the caller's own core.
constexpr auto spin_budget = std::chrono::microseconds(50);

} // namespace

struct caller::endpoint {
  std::mutex mtx;
  std::condition_variable cv;
  // The response id awaited; 0 when no call is in flight.
  uint64_t awaited = 0;
  std::atomic<bool> ready{false};
  caf::message reply;
  caf::strong_actor_ptr self;

  void deliver(caf::mailbox_element_ptr ptr) {
    if (!ptr)
      return;
    std::lock_guard guard{mtx};
    if (awaited == 0 || ptr->mid.integer_value() != awaited)
      return; // late reply to a call that timed out
    reply = ptr->move_content_to_message();
    awaited = 0;
    ready.store(true, std::memory_order_release);
    cv.notify_one();
  }
};

caller::caller(caf::actor_system& sys)
    : ep_(std::make_shared<endpoint>()) {
  auto companion = sys.spawn<caf::actor_companion, caf::hidden>();
  // The handler holds the endpoint weakly: the companion may outlive us by a
  // message or two.
  std::weak_ptr<endpoint> weak = ep_;
  caf::actor_cast<caf::actor_companion*>(companion)->on_enqueue(
      [weak](caf::mailbox_element_ptr ptr) {
        if (auto ep = weak.lock())
          ep->deliver(std::move(ptr));
      });
  ep_->self = caf::actor_cast<caf::strong_actor_ptr>(companion);
}

caller::~caller() {
  // Dropping the last reference destroys the hidden companion; a reply still
  // in flight finds the endpoint gone through its weak pointer.
  ep_->self = nullptr;
}

caf::expected<caf::message> caller::call_impl(const caf::strong_actor_ptr& dest,
                                              caf::message request,
                                              caf::timespan timeout) {
  if (!dest)
    return caf::make_error(caf::sec::invalid_argument,
                           "call: invalid receiver handle");
  static std::atomic<uint64_t> next_id{1};
  auto req = caf::make_message_id(next_id.fetch_add(1) &
                                  caf::message_id::request_id_mask);
  {
    std::lock_guard guard{ep_->mtx};
    ep_->awaited = req.response_id().integer_value();
    ep_->ready.store(false, std::memory_order_relaxed);
  }
  dest->enqueue(ep_->self, req, std::move(request), nullptr);
  using clock = std::chrono::steady_clock;
  auto start = clock::now();
  // Spin first: the reply usually arrives within microseconds.
  while (!ep_->ready.load(std::memory_order_acquire)) {
    if (clock::now() - start > spin_budget)
      break;
    std::this_thread::yield();
  }
  std::unique_lock guard{ep_->mtx};
  if (!ep_->cv.wait_until(guard, start + timeout, [&] {
        return ep_->ready.load(std::memory_order_acquire);
      })) {
    ep_->awaited = 0;
    return caf::make_error(caf::sec::request_timeout,
                           "call: no reply within the timeout");
  }
  auto reply = std::move(ep_->reply);
  ep_->reply = caf::message{};
  if (reply.match_elements<caf::error>())
    return reply.get_as<caf::error>(0);
  return reply;
}

} // namespace actorbus::runtime
