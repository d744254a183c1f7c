#pragma once

// Implementation of the templates of event_bus.hpp; included at its bottom.
// Nothing here is for users.

#include "actorbus/bus/event_bus.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/expected.hpp>
#include <caf/message.hpp>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace actorbus::bus {

namespace detail {

/// One event as a courier hands it to a callback.
struct delivery {
  const std::string* topic;
  const caf::actor_addr* publisher;
  const caf::message* event;
};

/// Type-erased callback: returns the reply (empty for void callbacks),
/// `errc::invalid_argument` for an event of the wrong type; may throw.
using handler_fn = std::function<caf::expected<caf::message>(const delivery&)>;

/// Where the replies to one `gather` go.
class gather_sink {
public:
  virtual ~gather_sink();
  /// A callback's reply.
  virtual void offer(caf::message& reply) = 0;
  /// A failure of one subscriber.
  virtual void fail() = 0;
  /// Asks an actor subscriber; calls `done` when it answered or failed.
  virtual void ask(caf::event_based_actor* self, const caf::actor& target,
                   caf::message query, std::function<void()> done) = 0;
};

template <class R>
class typed_gather_sink
    : public gather_sink,
      public std::enable_shared_from_this<typed_gather_sink<R>> {
public:
  void offer(caf::message& reply) override {
    std::unique_lock guard{mtx_};
    if (reply.match_elements<R>())
      result_.replies.emplace_back(std::move(reply.get_mutable_as<R>(0)));
    else
      ++result_.failed;
    cv_.notify_all();
  }

  void fail() override {
    std::unique_lock guard{mtx_};
    ++result_.failed;
    cv_.notify_all();
  }

  void ask(caf::event_based_actor* self, const caf::actor& target,
           caf::message query, std::function<void()> done) override {
    auto me = this->shared_from_this();
    self->request(target, caf::infinite, std::move(query))
        .then(
            [me, done](R& x) {
              {
                std::unique_lock guard{me->mtx_};
                me->result_.replies.emplace_back(std::move(x));
                me->cv_.notify_all();
              }
              done();
            },
            [me, done](caf::error&) {
              me->fail();
              done();
            });
  }

  void expect(std::size_t n) {
    std::unique_lock guard{mtx_};
    result_.asked = n;
  }

  /// Waits until every subscriber answered or the deadline passed.
  gather_result<R> wait(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock guard{mtx_};
    cv_.wait_until(guard, deadline, [this] {
      return result_.replies.size() + result_.failed >= result_.asked;
    });
    gather_result<R> out;
    out.asked = result_.asked;
    out.failed = result_.failed;
    out.replies = result_.replies;
    return out;
  }

private:
  std::mutex mtx_;
  std::condition_variable cv_;
  gather_result<R> result_;
};

template <class T, class F>
handler_fn make_handler(F f) {
  return [f = std::move(f)](
             const delivery& d) mutable -> caf::expected<caf::message> {
    const T* value;
    if constexpr (std::is_same_v<T, caf::message>) {
      value = d.event;
    } else {
      if (!d.event->template match_elements<T>())
        return make_error(errc::invalid_argument);
      value = &d.event->template get_as<T>(0);
    }
    event<T> ev{*d.topic, *d.publisher, *value};
    if constexpr (std::is_invocable_v<F&, const event<T>&>) {
      using result = std::invoke_result_t<F&, const event<T>&>;
      if constexpr (std::is_void_v<result>) {
        f(ev);
        return caf::message{};
      } else {
        return caf::make_message(f(ev));
      }
    } else {
      static_assert(std::is_invocable_v<F&, const T&>,
                    "a handler takes const event<T>& or const T&");
      using result = std::invoke_result_t<F&, const T&>;
      if constexpr (std::is_void_v<result>) {
        f(*value);
        return caf::message{};
      } else {
        return caf::make_message(f(*value));
      }
    }
  };
}

} // namespace detail

// -- event_bus templates ------------------------------------------------------

template <class T>
caf::error event_bus::publish(std::string_view topic, T&& value,
                              publish_options opts) {
  return publish_message(topic, caf::make_message(std::forward<T>(value)),
                         caf::actor_addr{}, opts);
}

template <class T>
caf::error event_bus::publish(const caf::local_actor* self,
                              std::string_view topic, T&& value,
                              publish_options opts) {
  return publish_message(topic, caf::make_message(std::forward<T>(value)),
                         self != nullptr ? self->address() : caf::actor_addr{},
                         opts);
}

template <class T, class F>
caf::expected<subscription> event_bus::subscribe(std::string_view pattern,
                                                 F handler,
                                                 subscription_options opts) {
  return subscribe_impl(pattern, detail::make_handler<T>(std::move(handler)),
                        caf::actor{}, opts);
}

template <class T, class F>
caf::expected<subscription> event_bus::subscribe(std::string_view pattern,
                                                 F handler) {
  return subscribe<T>(pattern, std::move(handler), defaults());
}

template <class R, class Q>
caf::expected<gather_result<R>>
event_bus::gather(std::string_view topic, Q&& query, caf::timespan timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto sink = std::make_shared<detail::typed_gather_sink<R>>();
  auto asked = scatter(topic, caf::make_message(std::forward<Q>(query)), sink);
  if (!asked)
    return std::move(asked.error());
  sink->expect(*asked);
  return sink->wait(deadline);
}

} // namespace actorbus::bus
