// The core of an event bus: topic lookup, publish, subscribe, dead
// letters, retained values and counters.

#include "bus_core.hpp"

#include "actorbus/runtime/runtime.hpp"

#include "subscriber_state.hpp"

#include <caf/exit_reason.hpp>
#include <caf/send.hpp>

#include <algorithm>
#include <map>
#include <optional>

namespace actorbus::bus::detail {

namespace {

// Generations come from one counter for every bus, so that a (bus,
// generation) pair never repeats, not even for a bus created at the address
// of a destroyed one.
std::atomic<std::uint64_t> generation_counter{0};

/// The topic a thread published to last, so that publishing on it again
/// needs no hash, no bus lock: valid while the bus's generation is the one
/// seen. Holds no strong reference (a weak one to the subscriber list), so
/// it keeps no subscriber alive.
struct last_topic_cache {
  const bus_core* core_ = nullptr;
  std::uint64_t generation_ = 0;
  std::string topic_;
  topic_entry* entry_ = nullptr;
  std::weak_ptr<const subscriber_list> subs_;
};

thread_local last_topic_cache last_topic;

} // namespace

std::uint64_t next_generation() noexcept {
  return generation_counter.fetch_add(1) + 1;
}

bus_core::bus_core(caf::actor_system* sys, runtime::runtime* rt, bus_config cfg)
    : sys_(sys)
    , rt_(rt)
    , cfg_(std::move(cfg)) {
  // nop
}

caf::behavior bus_core::sentinel(caf::event_based_actor* self,
                                 std::weak_ptr<bus_core> weak) {
  // Runs when the sentinel exits: at once when the runtime's shutdown asks
  // it to (then the couriers stop too, and the actor system goes away), or
  // when close() stops it. The bus then touches the actor system no more.
  self->attach_functor([weak](const caf::error&) {
    if (auto core = weak.lock()) {
      core->closed_.store(true);
      caf::actor released; // after the lock
      std::lock_guard guard{core->sentinel_mtx_};
      released.swap(core->sentinel_);
    }
  });
  return {
      [](drain_atom) {
        // nop: the sentinel only waits for its exit
      },
  };
}

void bus_core::watch_runtime() {
  if (rt_ == nullptr)
    return;
  if (sys_ == nullptr) { // the runtime shut down already
    closed_.store(true);
    return;
  }
  auto sentinel = rt_->spawn(&bus_core::sentinel, weak_from_this());
  std::lock_guard guard{sentinel_mtx_};
  if (!sentinel) // the runtime shuts down already
    closed_.store(true);
  else if (!closed_.load()) // not stopped already
    sentinel_ = std::move(*sentinel);
}

caf::expected<caf::actor>
bus_core::spawn_courier(const std::shared_ptr<subscriber_state>& state) {
  // The state goes in as a spawn argument, not a capture: CAF 0.17.6 binds
  // a null reference when it starts a function actor spawned without
  // arguments, and under ASan+UBSan matching that report against
  // cmake/ubsan.supp costs a symbolization of the binary (up to seconds for
  // the first courier of a process).
  if (rt_ != nullptr) {
    auto courier = rt_->spawn(&subscriber_state::courier, state);
    if (!courier)
      return make_error(errc::closed, "the runtime is shutting down");
    return std::move(*courier);
  }
  return sys_->spawn(&subscriber_state::courier, state);
}

void bus_core::refresh(topic_entry& e) {
  std::vector<subscriber_state*> found;
  index_.match(e.name_, found);
  auto subs =
      std::allocate_shared<subscriber_list>(line_allocator<subscriber_list>{});
  subs->reserve(found.size());
  for (auto* s : found)
    subs->push_back(subs_.at(s));
  e.subs_ = std::move(subs);
  e.generation_ = generation_.load();
}

caf::expected<std::pair<topic_entry*, bus_core::subs_ptr>>
bus_core::lookup(std::string_view topic) {
  auto& last = last_topic;
  if (last.core_ == this && last.generation_ == generation_.load() &&
      last.topic_ == topic)
    if (auto subs = last.subs_.lock()) // null if unsubscribed meanwhile
      return std::make_pair(last.entry_, std::move(subs));
  auto found = [&](topic_entry& e) {
    last.core_ = this;
    last.generation_ = e.generation_;
    last.topic_.assign(topic.data(), topic.size());
    last.entry_ = &e;
    last.subs_ = e.subs_;
    return std::make_pair(&e, e.subs_);
  };
  {
    std::shared_lock guard{mtx_};
    if (auto i = topics_.find(topic);
        i != topics_.end() && i->second->generation_ == generation_.load())
      return found(*i->second);
  }
  if (!is_valid_topic(topic))
    return make_error(errc::invalid_topic, std::string{topic});
  std::unique_lock guard{mtx_};
  auto i = topics_.find(topic);
  if (i == topics_.end())
    i = topics_
            .emplace(std::string{topic}, std::make_unique<topic_entry>(topic))
            .first;
  auto& e = *i->second;
  if (e.generation_ != generation_.load())
    refresh(e);
  return found(e);
}

caf::error bus_core::publish(std::string_view topic, caf::message event,
                             caf::actor_addr publisher, publish_options opts,
                             std::shared_ptr<gather_sink> sink,
                             std::size_t* asked) {
  if (closed_.load(std::memory_order_relaxed))
    return make_error(errc::closed);
  auto found = lookup(topic);
  if (!found)
    return std::move(found.error());
  auto& [entry, subs] = *found; // no reference-count round trip
  bool is_dead_letter = topic == dead_letter_topic;
  if (opts.retain && !sink) {
    // Under the shared lock, so that a concurrent subscribe (exclusive)
    // sees either this value or this event in its queue, never neither.
    std::shared_lock guard{mtx_};
    std::unique_lock rguard{retained_mtx_};
    entry->has_retained_ = true;
    entry->retained_ = event;
    entry->retained_publisher_ = publisher;
  }
  entry->published_.fetch_add(1, std::memory_order_relaxed);
  if (asked != nullptr)
    *asked = subs->size();
  if (subs->empty()) {
    if (!sink && !opts.retain && !is_dead_letter)
      dead_letter(item{entry, std::move(event), std::move(publisher), nullptr},
                  dead_letter_reason::no_subscriber, std::string{},
                  std::string{});
    return caf::none;
  }
  caf::error result;
  const auto* last = &subs->back();
  for (auto& sub : *subs) {
    std::optional<item> evicted;
    auto why = dead_letter_reason::dropped_newest;
    // The last subscriber gets the publisher's references (no refcount
    // round trip); push moves from `x` only when it queues it.
    item x = &sub == last
                 ? item{entry, std::move(event), std::move(publisher), sink}
                 : item{entry, event, publisher, sink};
    auto res = sub->push(std::move(x), !is_dead_letter, evicted, why);
    if (res == push_result::queued)
      continue;
    if (res == push_result::inactive) {
      if (sink)
        sink->fail();
      continue;
    }
    entry->dropped_.fetch_add(1, std::memory_order_relaxed);
    if (evicted) {
      if (evicted->sink)
        evicted->sink->fail();
      dead_letter(*evicted, why, sub->pattern_, "queue full");
      continue;
    }
    if (sink)
      sink->fail();
    if (!is_dead_letter) {
      x.sink = nullptr;
      dead_letter(x, why, sub->pattern_, "queue full");
    }
    if (res == push_result::refused && !result)
      result = make_error(why == dead_letter_reason::timed_out
                              ? errc::publish_timeout
                              : errc::queue_full,
                          sub->pattern_);
  }
  return result;
}

void bus_core::dead_letter(const item& x, dead_letter_reason reason,
                           const std::string& pattern, std::string detail) {
  x.topic->dead_lettered_.fetch_add(1, std::memory_order_relaxed);
  if (x.topic->name_ == dead_letter_topic || closed_.load())
    return; // dead letters are never dead-lettered
  // Nobody listening: count it without building the letter (drops under
  // overload would otherwise pay for it on the publisher's thread).
  if (auto found = lookup(dead_letter_topic); found && found->second->empty()) {
    found->first->published_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  bus::dead_letter dl;
  dl.topic = x.topic->name_;
  dl.reason = reason;
  dl.pattern = pattern;
  dl.detail = std::move(detail);
  dl.publisher = x.publisher;
  dl.event = x.event;
  publish(dead_letter_topic, caf::make_message(std::move(dl)),
          caf::actor_addr{}, publish_options{}, nullptr, nullptr);
}

caf::expected<subscription> bus_core::subscribe(std::string_view pattern,
                                                handler_fn fn, caf::actor who,
                                                subscription_options opts) {
  if (!is_valid_pattern(pattern))
    return make_error(errc::invalid_pattern, std::string{pattern});
  if (opts.capacity == 0 || opts.max_in_flight == 0)
    return make_error(errc::invalid_argument,
                      "capacity and max_in_flight must be positive");
  if (!fn && !who)
    return make_error(errc::invalid_argument, "invalid actor handle");
  if (closed_.load())
    return make_error(errc::closed);
  auto state = std::make_shared<subscriber_state>(
      shared_from_this(), std::string{pattern}, std::move(fn), who, opts);
  auto courier = spawn_courier(state);
  if (!courier)
    return std::move(courier.error());
  {
    std::unique_lock sguard{state->mtx_};
    // Inactive if the courier stopped already (the runtime shuts down).
    if (state->active_.load())
      state->courier_ = *courier;
  }
  if (!state->active_.load())
    return make_error(errc::closed, "the runtime is shutting down");
  std::unique_lock guard{mtx_};
  if (closed_.load()) {
    guard.unlock();
    auto now = std::chrono::steady_clock::now();
    state->deactivate(now);
    state->await_acks(now);
    return make_error(errc::closed);
  }
  index_.insert(state->pattern_, state.get());
  subs_.emplace(state.get(), state);
  generation_.store(next_generation());
  // Retained values of matching topics go first, in topic order.
  std::map<std::string_view, topic_entry*> retained;
  {
    std::unique_lock rguard{retained_mtx_};
    for (auto& [name, e] : topics_)
      if (e->has_retained_ && matches(state->pattern_, name))
        retained.emplace(name, e.get());
    for (auto& [name, e] : retained) {
      std::optional<item> evicted;
      auto why = dead_letter_reason::dropped_newest;
      state->push(item{e, e->retained_, e->retained_publisher_, nullptr}, false,
                  evicted, why);
    }
  }
  return subscription{state};
}

void bus_core::remove(subscriber_state* sub) {
  std::shared_ptr<subscriber_state> keep; // released outside the lock
  std::unique_lock guard{mtx_};
  auto i = subs_.find(sub);
  if (i == subs_.end())
    return;
  keep = std::move(i->second);
  subs_.erase(i);
  index_.erase(sub->pattern_, sub);
  generation_.store(next_generation());
  // Drop cached lists now: they hold strong references to `sub`.
  for (auto& [name, e] : topics_) {
    e->subs_.reset();
    e->generation_ = 0;
  }
  guard.unlock();
}

topic_stats bus_core::stats(std::string_view topic) {
  topic_stats out;
  {
    std::shared_lock guard{mtx_};
    auto i = topics_.find(topic);
    if (i != topics_.end()) {
      auto& e = *i->second;
      out.published = e.published_.load();
      out.delivered = e.delivered_.load();
      out.dropped = e.dropped_.load();
      out.dead_lettered = e.dead_lettered_.load();
    }
  }
  if (is_valid_topic(topic)) {
    std::vector<subscriber_state*> found;
    std::shared_lock guard{mtx_};
    index_.match(topic, found);
    out.subscribers = found.size();
  }
  return out;
}

std::vector<std::pair<std::string, topic_stats>> bus_core::all_stats() {
  std::vector<std::string> names;
  {
    std::shared_lock guard{mtx_};
    for (auto& [name, e] : topics_)
      names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  std::vector<std::pair<std::string, topic_stats>> out;
  for (auto& name : names)
    out.emplace_back(name, stats(name));
  return out;
}

std::size_t bus_core::subscription_count() const {
  std::shared_lock guard{mtx_};
  return subs_.size();
}

caf::message bus_core::retained(std::string_view topic) const {
  std::shared_lock guard{mtx_};
  std::unique_lock rguard{retained_mtx_};
  if (auto i = topics_.find(topic);
      i != topics_.end() && i->second->has_retained_)
    return i->second->retained_;
  return {};
}

bool bus_core::clear_retained(std::string_view topic) {
  std::shared_lock guard{mtx_};
  std::unique_lock rguard{retained_mtx_};
  if (auto i = topics_.find(topic);
      i != topics_.end() && i->second->has_retained_) {
    i->second->has_retained_ = false;
    i->second->retained_ = caf::message{};
    i->second->retained_publisher_ = caf::actor_addr{};
    return true;
  }
  return false;
}

void bus_core::close() {
  if (closing_.exchange(true))
    return;
  closed_.store(true);
  caf::actor sentinel;
  {
    std::lock_guard guard{sentinel_mtx_};
    sentinel.swap(sentinel_);
  }
  std::vector<std::shared_ptr<subscriber_state>> all;
  {
    std::unique_lock guard{mtx_};
    for (auto& [ptr, sub] : subs_)
      all.push_back(sub);
  }
  // Every subscription waits from the same start: closing takes at most
  // the longest cancel_timeout, not their sum.
  auto start = std::chrono::steady_clock::now();
  for (auto& sub : all) {
    auto deadline = start + sub->opts_.cancel_timeout;
    unsubscribe(sub, "bus closed", deadline, deadline);
  }
  if (sentinel)
    caf::anon_send_exit(sentinel, caf::exit_reason::user_shutdown);
}

bool bus_core::unsubscribe(const std::shared_ptr<subscriber_state>& sub,
                           const char* why,
                           std::chrono::steady_clock::time_point deadline,
                           std::chrono::steady_clock::time_point ack_deadline) {
  bool idle = true;
  auto rest = sub->deactivate(deadline, &idle);
  remove(sub.get());
  for (auto& x : rest) {
    if (x.sink)
      x.sink->fail();
    dead_letter(x, dead_letter_reason::subscriber_down, sub->pattern_, why);
  }
  return sub->await_acks(ack_deadline) && idle;
}

} // namespace actorbus::bus::detail
