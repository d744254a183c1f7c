// The event bus's public face: `event_bus` and `subscription` forward to
// the core (bus_core.cpp) and the subscription state
// (subscriber_state.cpp).

#include "actorbus/bus/event_bus.hpp"

#include "actorbus/runtime/runtime.hpp"

#include "bus_core.hpp"
#include "subscriber_state.hpp"

#include <utility>

namespace actorbus::bus {

std::string to_string(dead_letter_reason x) {
  switch (x) {
  case dead_letter_reason::no_subscriber:
    return "no_subscriber";
  case dead_letter_reason::dropped_newest:
    return "dropped_newest";
  case dead_letter_reason::dropped_oldest:
    return "dropped_oldest";
  case dead_letter_reason::rejected:
    return "rejected";
  case dead_letter_reason::timed_out:
    return "timed_out";
  case dead_letter_reason::handler_failed:
    return "handler_failed";
  case dead_letter_reason::type_mismatch:
    return "type_mismatch";
  case dead_letter_reason::subscriber_down:
    return "subscriber_down";
  case dead_letter_reason::undecodable:
    return "undecodable";
  }
  return "unknown";
}

namespace detail {

gather_sink::~gather_sink() {
  // nop
}

} // namespace detail

// -- subscription -------------------------------------------------------------

subscription::subscription(std::shared_ptr<detail::subscriber_state> state)
    : state_(std::move(state)) {
  // nop
}

subscription& subscription::operator=(subscription&& other) noexcept {
  if (this != &other) {
    (void)cancel();
    state_ = std::move(other.state_);
  }
  return *this;
}

subscription::~subscription() {
  (void)cancel();
}

bool subscription::cancel() {
  if (!state_)
    return true;
  auto state = state_;
  if (!state->active_.load())
    return state->await_acks(state->cancel_deadline());
  auto deadline = state->cancel_deadline();
  return state->core_->unsubscribe(state, "unsubscribed", deadline, deadline);
}

bool subscription::active() const noexcept {
  return state_ && state_->active_.load();
}

const std::string& subscription::pattern() const noexcept {
  static const std::string empty;
  return state_ ? state_->pattern_ : empty;
}

std::uint64_t subscription::delivered() const noexcept {
  return state_ ? state_->delivered_.load() : 0;
}

std::uint64_t subscription::dropped() const noexcept {
  return state_ ? state_->dropped_.load() : 0;
}

std::size_t subscription::queued() const {
  if (!state_)
    return 0;
  std::unique_lock guard{state_->mtx_};
  return state_->queue_.size() + state_->in_progress_;
}

// -- event_bus ----------------------------------------------------------------

event_bus::event_bus(caf::actor_system& sys, bus_config cfg)
    : core_(std::make_shared<detail::bus_core>(&sys, nullptr, std::move(cfg))) {
  // nop
}

event_bus::event_bus(runtime::runtime& rt, bus_config cfg)
    : core_(std::make_shared<detail::bus_core>(
          rt.accepting() ? &rt.system() : nullptr, &rt, std::move(cfg))) {
  core_->watch_runtime();
}

event_bus::~event_bus() {
  close();
}

caf::error event_bus::publish_message(std::string_view topic,
                                      caf::message event,
                                      caf::actor_addr publisher,
                                      publish_options opts) {
  return core_->publish(topic, std::move(event), std::move(publisher), opts,
                        nullptr, nullptr);
}

caf::expected<subscription> event_bus::subscribe(std::string_view pattern,
                                                 caf::actor who,
                                                 subscription_options opts) {
  if (!who)
    return make_error(errc::invalid_argument, "invalid actor handle");
  return core_->subscribe(pattern, nullptr, std::move(who), opts);
}

caf::expected<subscription> event_bus::subscribe(std::string_view pattern,
                                                 caf::actor who) {
  return subscribe(pattern, std::move(who), defaults());
}

caf::expected<subscription>
event_bus::subscribe_impl(std::string_view pattern, handler_fn fn,
                          caf::actor who, subscription_options opts) {
  return core_->subscribe(pattern, std::move(fn), std::move(who), opts);
}

caf::expected<std::size_t>
event_bus::scatter(std::string_view topic, caf::message query,
                   std::shared_ptr<detail::gather_sink> sink) {
  std::size_t asked = 0;
  auto err = core_->publish(topic, std::move(query), caf::actor_addr{},
                            publish_options{}, std::move(sink), &asked);
  // A refused query is counted as failed in the result, not an error.
  if (err && err != errc::queue_full && err != errc::publish_timeout)
    return err;
  return asked;
}

topic_stats event_bus::stats(std::string_view topic) const {
  return core_->stats(topic);
}

std::vector<std::pair<std::string, topic_stats>> event_bus::all_stats() const {
  return core_->all_stats();
}

std::size_t event_bus::subscription_count() const {
  return core_->subscription_count();
}

caf::message event_bus::retained(std::string_view topic) const {
  return core_->retained(topic);
}

bool event_bus::clear_retained(std::string_view topic) {
  return core_->clear_retained(topic);
}

void event_bus::close() {
  core_->close();
}

const subscription_options& event_bus::defaults() const noexcept {
  return core_->cfg_.defaults;
}

caf::actor_system& event_bus::system() const noexcept {
  return *core_->sys_;
}

} // namespace actorbus::bus
