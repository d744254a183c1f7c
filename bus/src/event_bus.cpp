// The event bus: topic entries with cached subscriber lists, per-subscription
// bounded queues, and one courier actor per subscription draining its queue.
//
// Locking, outermost first: bus_core::mtx_ (shared for publish, exclusive
// for subscribe/unsubscribe), then subscriber_state::delivering_, then
// subscriber_state::mtx_. A publisher holds no bus lock while it pushes into
// queues or waits for room.

#include "actorbus/bus/event_bus.hpp"

#include "topic_index.hpp"

#include <caf/actor_cast.hpp>
#include <caf/atom.hpp>
#include <caf/exit_reason.hpp>
#include <caf/logger.hpp>
#include <caf/sec.hpp>
#include <caf/send.hpp>

#include <algorithm>
#include <atomic>
#include <exception>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

namespace actorbus::bus {

namespace {

using drain_atom = caf::atom_constant<caf::atom("drain")>;

constexpr auto bus_category = caf::atom("bus");

} // namespace

// -- errors and names ---------------------------------------------------------

std::string to_string(errc x) {
  switch (x) {
  case errc::invalid_topic:
    return "invalid_topic";
  case errc::invalid_pattern:
    return "invalid_pattern";
  case errc::queue_full:
    return "queue_full";
  case errc::publish_timeout:
    return "publish_timeout";
  case errc::closed:
    return "closed";
  case errc::invalid_argument:
    return "invalid_argument";
  }
  return "unknown";
}

caf::error make_error(errc x) {
  return caf::error{static_cast<uint8_t>(x), bus_category};
}

caf::error make_error(errc x, std::string context) {
  return caf::error{static_cast<uint8_t>(x), bus_category,
                    caf::make_message(std::move(context))};
}

void add_bus_types(caf::actor_system_config& cfg) {
  cfg.add_error_category(
      bus_category, [](uint8_t code, caf::atom_value, const caf::message& ctx) {
        auto result = "bus::" + to_string(static_cast<errc>(code));
        if (!ctx.empty())
          result += "(" + ctx.get_as<std::string>(0) + ")";
        return result;
      });
}

std::string to_string(overload_policy x) {
  switch (x) {
  case overload_policy::block:
    return "block";
  case overload_policy::drop_newest:
    return "drop_newest";
  case overload_policy::drop_oldest:
    return "drop_oldest";
  case overload_policy::fail:
    return "fail";
  }
  return "unknown";
}

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

// -- state --------------------------------------------------------------------

/// Allocates whole cache lines. What a publisher reads per event then shares
/// no line with a heap neighbour that another core writes (an event freed by
/// a courier, say), which would cost the publisher a cache miss per event.
template <class T>
struct line_allocator {
  using value_type = T;

  line_allocator() = default;

  template <class U>
  line_allocator(const line_allocator<U>&) noexcept {
    // nop
  }

  static size_t bytes(size_t n) noexcept {
    return (n * sizeof(T) + 63) / 64 * 64;
  }

  T* allocate(size_t n) {
    return static_cast<T*>(::operator new (bytes(n), std::align_val_t{64}));
  }

  // Unsized: clang++-14 has no sized deallocation unless -fsized-deallocation.
  void deallocate(T* ptr, size_t) noexcept {
    ::operator delete (ptr, std::align_val_t{64});
  }

  friend bool operator==(line_allocator, line_allocator) noexcept {
    return true;
  }

  friend bool operator!=(line_allocator, line_allocator) noexcept {
    return false;
  }
};

/// The subscriptions whose pattern matches one topic.
using subscriber_list =
    std::vector<std::shared_ptr<subscriber_state>,
                line_allocator<std::shared_ptr<subscriber_state>>>;

/// Counters and cached subscriber list of one topic. Entries live as long
/// as the bus core, so queued items point at them.
struct topic_entry {
  explicit topic_entry(std::string_view topic)
      : name(topic) {
    // nop
  }

  const std::string name;
  std::atomic<uint64_t> published{0};
  // Written by the couriers: kept off the publishers' cache line.
  alignas(64) std::atomic<uint64_t> delivered{0};
  std::atomic<uint64_t> dropped{0};
  std::atomic<uint64_t> dead_lettered{0};
  // Guarded by bus_core::mtx_: written under the exclusive lock only.
  uint64_t generation = 0;
  std::shared_ptr<const subscriber_list> subs;
  // Guarded by bus_core::retained_mtx_.
  bool has_retained = false;
  caf::message retained;
  caf::actor_addr retained_publisher;
};

/// One queued event.
struct item {
  topic_entry* topic;
  caf::message event;
  caf::actor_addr publisher;
  std::shared_ptr<gather_sink> sink;
};

/// A FIFO of items in a power-of-two ring that grows on demand (never
/// beyond the next power of two of the capacity) and allocates nothing per
/// item once grown. Four words, so that it shares a cache line with the
/// lock that guards it.
///
/// A handled item may stay in its slot, spent (see drop_front): the push
/// that reuses the slot then destroys it on the publisher's thread, where
/// the publisher's next event is allocated. Events freed by the courier on
/// another core would instead go back through the allocator's shared lists,
/// a cache miss per event on both sides.
class item_ring {
public:
  item_ring() = default;

  item_ring(const item_ring&) = delete;

  item_ring& operator=(const item_ring&) = delete;

  ~item_ring() {
    release();
  }

  size_t size() const noexcept {
    return count_;
  }

  bool empty() const noexcept {
    return count_ == 0;
  }

  /// Queues `x`; a spent item in its slot moves to `displaced`, so that the
  /// caller destroys it outside its lock (an event's destructor may publish).
  void push_back(item&& x, item& displaced) {
    if (count_ == size_)
      grow();
    auto& slot = buf_[(head_ + count_) & (size_ - 1)];
    displaced = std::move(slot);
    slot = std::move(x);
    ++count_;
    spent_ = std::min(spent_, size_ - count_);
  }

  item pop_front() {
    item x = std::move(buf_[head_]);
    drop_front();
    return x;
  }

  /// The oldest item, to be handled in place.
  item& front() noexcept {
    return buf_[head_];
  }

  /// Removes the oldest item but leaves it in its slot, spent.
  void drop_front() noexcept {
    head_ = (head_ + 1) & (size_ - 1);
    --count_;
    ++spent_;
  }

  /// Destroys the spent items (the events they hold).
  void release_spent() noexcept {
    for (size_t i = 1; i <= spent_; ++i)
      buf_[(head_ - i) & (size_ - 1)] = item{};
    spent_ = 0;
  }

  void swap(item_ring& other) noexcept {
    std::swap(buf_, other.buf_);
    std::swap(size_, other.size_);
    std::swap(head_, other.head_);
    std::swap(count_, other.count_);
    std::swap(spent_, other.spent_);
  }

  /// Moves the first `n` items to the end of `out`.
  void take(size_t n, std::vector<item>& out) {
    for (size_t i = 0; i < n; ++i)
      out.push_back(pop_front());
  }

private:
  void grow() {
    auto next_size = std::max<size_t>(8, size_ * 2);
    auto* next = line_allocator<item>{}.allocate(next_size);
    std::uninitialized_default_construct_n(next, next_size);
    for (size_t i = 0; i < count_; ++i)
      next[i] = std::move(buf_[(head_ + i) & (size_ - 1)]);
    release();
    buf_ = next;
    size_ = next_size;
    head_ = 0;
    spent_ = 0;
  }

  void release() noexcept {
    if (buf_ == nullptr)
      return;
    std::destroy_n(buf_, size_);
    line_allocator<item>{}.deallocate(buf_, size_);
  }

  item* buf_ = nullptr;
  size_t size_ = 0;
  size_t head_ = 0;
  size_t count_ = 0;
  // Slots before head_ holding spent items; at most size_ - count_.
  size_t spent_ = 0;
};

/// A lock for critical sections of a few dozen instructions that a
/// publisher and a courier on different cores take: contention costs a
/// short spin instead of a futex sleep and wake-up (std::mutex).
class spin_mutex {
public:
  void lock() noexcept {
    for (int spins = 0; flag_.exchange(true, std::memory_order_acquire);) {
      while (flag_.load(std::memory_order_relaxed))
        if (++spins > 64)
          std::this_thread::yield(); // the holder may be descheduled
    }
  }

  bool try_lock() noexcept {
    return !flag_.load(std::memory_order_relaxed) &&
           !flag_.exchange(true, std::memory_order_acquire);
  }

  void unlock() noexcept {
    flag_.store(false, std::memory_order_release);
  }

private:
  std::atomic<bool> flag_{false};
};

/// Result of offering an item to one subscription.
enum class push_result { queued, dropped, refused, inactive };

class subscriber_state {
public:
  subscriber_state(std::shared_ptr<bus_core> core, std::string pattern,
                   handler_fn fn, caf::actor target, subscription_options opts)
      : core_(std::move(core))
      , pattern_(std::move(pattern))
      , fn_(std::move(fn))
      , target_(target.address())
      , is_actor_(static_cast<bool>(target))
      , opts_(opts) {
    // nop
  }

  /// Offers `x`; `may_block` is false for dead letters and for publishers
  /// that must not wait. The dead letter for a drop goes to `evicted`.
  push_result push(item&& x, bool may_block, std::optional<item>& evicted,
                   dead_letter_reason& why);

  /// Handles one drain message inside the courier.
  void drain(caf::event_based_actor* self);

  /// Deactivates (see subscription::cancel): nothing is sent or called
  /// after it returns, except what is already in flight to an actor.
  /// Returns the items still queued. Waits for a running callback until
  /// `deadline`.
  /// `idle` (optional) tells whether no callback was running at the end.
  std::vector<item> deactivate(std::chrono::steady_clock::time_point deadline,
                               bool* idle = nullptr);

  /// Waits until every event in flight to the subscribed actor has been
  /// acknowledged (handled, failed or bounced), at most until `deadline`,
  /// then stops the courier. Returns whether nothing more can arrive. Does
  /// not wait when called from the subscribed actor itself (its mailbox
  /// cannot move while it waits) or from the courier.
  bool await_acks(std::chrono::steady_clock::time_point deadline);

  /// Whether the calling thread runs the subscribed actor right now.
  bool on_subscriber_thread() const;

  std::chrono::steady_clock::time_point cancel_deadline() const {
    return std::chrono::steady_clock::now() + opts_.cancel_timeout;
  }

  // The layout keeps what a publisher touches per event (the lock, the
  // queue's indices, the flags) on one cache line, and what the courier
  // writes per event or per batch off it: a publisher and a courier
  // running on two cores then pass one line back and forth per batch
  // instead of several per event.

  // Read-mostly.
  std::shared_ptr<bus_core> core_;
  const std::string pattern_;
  handler_fn fn_;
  // Weak, so that a subscription handle may outlive the actor system.
  const caf::actor_addr target_;
  const bool is_actor_;
  const subscription_options opts_;
  std::atomic<bool> active_{true};
  // Set when the subscribed actor died: nothing can arrive any more.
  std::atomic<bool> target_down_{false};
  // Prebuilt, shared by every drain request.
  const caf::message drain_msg_ = caf::make_message(drain_atom::value);

  // Taken per publish and per drained batch; waits use the _any variables.
  alignas(64) mutable spin_mutex mtx_;
  bool scheduled_ = false;
  // Items taken out of the queue and not finished yet; they count toward
  // the capacity, so a stalled subscriber holds at most `capacity` events.
  size_t in_progress_ = 0;
  size_t waiting_ = 0;
  item_ring queue_;
  caf::actor courier_;

  // Written by the courier per batch (and by publishers on drops).
  alignas(64) std::atomic<uint64_t> delivered_{0};
  std::atomic<uint64_t> dropped_{0};
  std::condition_variable_any not_full_;
  // Signalled when an actor acknowledges an event while a cancel waits.
  std::condition_variable_any acked_;

  // Owned by the courier.
  // Held while checking `active_` and running one callback (or sending one
  // event to the actor), so that cancel can wait for a running callback.
  alignas(64) std::timed_mutex delivering_;
  // The batch being handled (actor subscribers).
  std::vector<item> batch_;
  // The events taken out of the queue and not handled yet (callback
  // subscribers). Guarded by `delivering_`.
  item_ring taken_;
  // Empty drains in a row (see drain).
  size_t idle_passes_ = 0;

private:
  void drain_callback(caf::event_based_actor* self);
  void deliver_one(item& x);
  void deliver_to_actor(caf::event_based_actor* self, item& x);
  void finish_one_in_flight(caf::event_based_actor* self);
};

thread_local const subscriber_state* current_subscription = nullptr;

// Generations come from one counter for every bus, so that a (bus,
// generation) pair never repeats, not even for a bus created at the address
// of a destroyed one.
std::atomic<uint64_t> generation_counter{0};

uint64_t next_generation() {
  return generation_counter.fetch_add(1) + 1;
}

/// The topic a thread published to last, so that publishing on it again
/// needs no hash, no bus lock: valid while the bus's generation is the one
/// seen. Holds no strong reference (a weak one to the subscriber list), so
/// it keeps no subscriber alive.
struct last_topic_cache {
  const bus_core* core = nullptr;
  uint64_t generation = 0;
  std::string topic;
  topic_entry* entry = nullptr;
  std::weak_ptr<const subscriber_list> subs;
};

thread_local last_topic_cache last_topic;

// On cache lines of its own (see line_allocator): publishers read it per
// event.
class alignas(64) bus_core : public std::enable_shared_from_this<bus_core> {
public:
  bus_core(caf::actor_system& sys, bus_config cfg)
      : sys_(sys)
      , cfg_(std::move(cfg)) {
    // nop
  }

  /// Publishes; `is_dead_letter` never blocks and never dead-letters.
  caf::error publish(std::string_view topic, caf::message event,
                     caf::actor_addr publisher, publish_options opts,
                     std::shared_ptr<gather_sink> sink, size_t* asked);

  caf::expected<subscription> subscribe(std::string_view pattern, handler_fn fn,
                                        caf::actor who,
                                        subscription_options opts);

  /// Removes `sub` from the index and the bus (idempotent).
  void remove(subscriber_state* sub);

  /// Deactivates and removes `sub`, turns its queued events into dead
  /// letters with the detail `why`, then waits for the acknowledgements of
  /// events in flight to an actor until `ack_deadline`. Returns whether
  /// nothing more can arrive (see subscription::cancel).
  bool unsubscribe(const std::shared_ptr<subscriber_state>& sub,
                   const char* why,
                   std::chrono::steady_clock::time_point deadline,
                   std::chrono::steady_clock::time_point ack_deadline);

  /// Publishes a dead letter for `x` (counted on its topic).
  void dead_letter(const item& x, dead_letter_reason reason,
                   const std::string& pattern, std::string detail);

  /// Counts a delivery.
  static void delivered(subscriber_state& sub, const item& x) {
    sub.delivered_.fetch_add(1, std::memory_order_relaxed);
    x.topic->delivered.fetch_add(1, std::memory_order_relaxed);
  }

  topic_stats stats(std::string_view topic);
  std::vector<std::pair<std::string, topic_stats>> all_stats();
  size_t subscription_count() const;
  caf::message retained(std::string_view topic) const;
  bool clear_retained(std::string_view topic);
  void close();

  caf::actor_system& sys_;
  const bus_config cfg_;
  std::atomic<bool> closed_{false};

private:
  struct string_hash {
    using is_transparent = void;
    size_t operator()(std::string_view x) const noexcept {
      return std::hash<std::string_view>{}(x);
    }
  };

  using subs_ptr = std::shared_ptr<const subscriber_list>;

  /// Finds the entry of `topic`, creating it and refreshing its subscriber
  /// list as needed. Returns the entry and its subscribers.
  caf::expected<std::pair<topic_entry*, subs_ptr>> lookup(std::string_view);

  /// Rebuilds `e.subs` (exclusive lock held).
  void refresh(topic_entry& e);

  mutable std::shared_mutex mtx_;
  topic_index index_;
  std::unordered_map<std::string, std::unique_ptr<topic_entry>, string_hash,
                     std::equal_to<>>
      topics_;
  // Renewed by every subscribe and unsubscribe; entries with an older
  // generation rebuild their subscriber list on the next publish. Written
  // under the exclusive lock; read without it by the per-thread cache.
  std::atomic<uint64_t> generation_{next_generation()};
  std::unordered_map<subscriber_state*, std::shared_ptr<subscriber_state>>
      subs_;
  mutable std::mutex retained_mtx_;
};

// -- subscriber_state ---------------------------------------------------------

push_result subscriber_state::push(item&& x, bool may_block,
                                   std::optional<item>& evicted,
                                   dead_letter_reason& why) {
  caf::actor wake; // copied under the lock: deactivate may reset courier_
  item displaced;  // a spent event, destroyed after the lock is released
  {
    std::unique_lock guard{mtx_};
    if (!active_.load())
      return push_result::inactive;
    auto full = [this] {
      return queue_.size() + in_progress_ >= opts_.capacity;
    };
    if (full()) {
      switch (opts_.policy) {
      case overload_policy::block:
        if (may_block) {
          ++waiting_;
          auto ok = not_full_.wait_for(guard, opts_.block_timeout, [&] {
            return !full() || !active_.load();
          });
          --waiting_;
          if (!active_.load())
            return push_result::inactive;
          if (ok)
            break;
          why = dead_letter_reason::timed_out;
        } else {
          why = dead_letter_reason::dropped_newest;
        }
        dropped_.fetch_add(1, std::memory_order_relaxed);
        return may_block ? push_result::refused : push_result::dropped;
      case overload_policy::drop_newest:
        why = dead_letter_reason::dropped_newest;
        dropped_.fetch_add(1, std::memory_order_relaxed);
        return push_result::dropped;
      case overload_policy::drop_oldest:
        dropped_.fetch_add(1, std::memory_order_relaxed);
        if (queue_.empty()) { // everything is being handled right now
          why = dead_letter_reason::dropped_newest;
          return push_result::dropped;
        }
        why = dead_letter_reason::dropped_oldest;
        evicted.emplace(queue_.pop_front());
        break;
      case overload_policy::fail:
        why = dead_letter_reason::rejected;
        dropped_.fetch_add(1, std::memory_order_relaxed);
        return push_result::refused;
      }
    }
    queue_.push_back(std::move(x), displaced);
    if (!scheduled_) {
      scheduled_ = true;
      wake = courier_;
    }
  }
  if (wake)
    caf::anon_send(wake, drain_msg_);
  return evicted ? push_result::dropped : push_result::queued;
}

std::vector<item>
subscriber_state::deactivate(std::chrono::steady_clock::time_point deadline,
                             bool* idle) {
  active_.store(false);
  std::vector<item> rest;
  // Wait for a running callback, unless this is that callback. For actor
  // subscribers this is a barrier: no send starts after it.
  if (current_subscription != this) {
    std::unique_lock<std::timed_mutex> wait{delivering_, std::defer_lock};
    auto ok = wait.try_lock_until(deadline);
    if (idle != nullptr)
      *idle = ok;
    // Taken by the courier but not handled: older than the queue. When
    // waiting timed out, the courier turns them into dead letters itself.
    if (ok) {
      taken_.take(taken_.size(), rest);
      taken_.release_spent();
    }
  } else if (idle != nullptr) {
    *idle = true; // the callback that cancels runs nothing after itself
  }
  item_ring spent; // the queue's buffer, destroyed after the lock
  {
    std::unique_lock guard{mtx_};
    queue_.take(queue_.size(), rest);
    queue_.swap(spent); // nothing is queued after deactivation
    not_full_.notify_all();
  }
  return rest;
}

bool subscriber_state::on_subscriber_thread() const {
  auto* lg = caf::logger::current_logger();
  return lg != nullptr && lg == &core_->sys_.logger() &&
         lg->thread_local_aid() == target_.id();
}

bool subscriber_state::await_acks(
    std::chrono::steady_clock::time_point deadline) {
  caf::actor courier;
  {
    std::unique_lock guard{mtx_};
    if (is_actor_ && in_progress_ > 0 && !target_down_.load()) {
      // The courier receives the acknowledgements: it must not wait for
      // itself, and the subscribed actor cannot handle its mailbox while
      // it waits here.
      if (current_subscription != this && !on_subscriber_thread())
        acked_.wait_until(guard, deadline,
                          [this] { return in_progress_ == 0; });
      // Still in flight: the courier stays for the acknowledgements and
      // quits after the last one (finish_one_in_flight).
      if (in_progress_ > 0)
        return false;
    }
    courier.swap(courier_); // the handle must not outlive the system
  }
  if (courier)
    caf::anon_send_exit(courier, caf::exit_reason::user_shutdown);
  return true;
}

void subscriber_state::deliver_one(item& x) {
  if (!active_.load(std::memory_order_relaxed)) {
    if (x.sink)
      x.sink->fail();
    core_->dead_letter(x, dead_letter_reason::subscriber_down, pattern_,
                       "subscription cancelled");
    return;
  }
  delivery d{&x.topic->name, &x.publisher, &x.event};
  std::string failure;
  auto reason = dead_letter_reason::handler_failed;
  try {
    auto reply = fn_(d);
    if (reply) {
      bus_core::delivered(*this, x);
      if (x.sink)
        x.sink->offer(*reply);
      return;
    }
    reason = dead_letter_reason::type_mismatch;
    failure = "the subscriber expects another type";
  } catch (const std::exception& e) {
    failure = e.what();
    if (failure.empty())
      failure = "exception";
  } catch (...) {
    failure = "unknown exception";
  }
  if (x.sink)
    x.sink->fail();
  core_->dead_letter(x, reason, pattern_, std::move(failure));
}

void subscriber_state::finish_one_in_flight(caf::event_based_actor* self) {
  bool more = false;
  bool quit = false;
  caf::actor done; // the courier's own handle, released outside the lock
  {
    std::unique_lock guard{mtx_};
    --in_progress_;
    if (waiting_ > 0)
      not_full_.notify_all();
    if (!active_.load()) {
      if (in_progress_ == 0) {
        acked_.notify_all();
        done.swap(courier_);
        quit = true;
      }
    } else if (!queue_.empty() && !scheduled_) {
      scheduled_ = true;
      more = true;
    }
  }
  if (quit)
    self->quit();
  if (more)
    self->send(self, drain_atom::value);
}

void subscriber_state::deliver_to_actor(caf::event_based_actor* self, item& x) {
  std::unique_lock<std::timed_mutex> guard{delivering_};
  if (!active_.load()) {
    if (x.sink)
      x.sink->fail();
    core_->dead_letter(x, dead_letter_reason::subscriber_down, pattern_,
                       "subscription cancelled");
    finish_one_in_flight(self);
    return;
  }
  auto target = caf::actor_cast<caf::actor>(target_);
  if (!target) { // died; the down message unsubscribes it
    if (x.sink)
      x.sink->fail();
    core_->dead_letter(x, dead_letter_reason::subscriber_down, pattern_,
                       "subscriber died");
    finish_one_in_flight(self);
    return;
  }
  auto msg = caf::message::concat(caf::make_message(x.topic->name, x.publisher),
                                  x.event);
  auto me = this;
  if (x.sink) {
    bus_core::delivered(*this, x);
    x.sink->ask(self, target, std::move(msg),
                [me, self] { me->finish_one_in_flight(self); });
    return;
  }
  // The courier holds `this` (through its behavior) for as long as it
  // runs, and response handlers run only while it runs.
  self->request(target, caf::infinite, std::move(msg))
      .then([me, self, x] { me->finish_one_in_flight(self); },
            [me, self, x](caf::error& err) {
              // A reply of any type means the actor handled the event.
              if (err != caf::sec::unexpected_response) {
                auto reason = err == caf::sec::request_receiver_down
                                  ? dead_letter_reason::subscriber_down
                                  : dead_letter_reason::handler_failed;
                me->core_->dead_letter(x, reason, me->pattern_,
                                       self->system().render(err));
              }
              me->finish_one_in_flight(self);
            });
  bus_core::delivered(*this, x);
}

void subscriber_state::drain(caf::event_based_actor* self) {
  if (!is_actor_) {
    drain_callback(self);
    return;
  }
  {
    std::unique_lock guard{mtx_};
    auto window = opts_.max_in_flight > in_progress_
                      ? opts_.max_in_flight - in_progress_
                      : 0;
    size_t n = std::min({queue_.size(), core_->cfg_.batch_size, window});
    if (waiting_ > 0)
      not_full_.notify_all();
    if (n == 0) {
      scheduled_ = false;
      return;
    }
    queue_.take(n, batch_);
    in_progress_ += n;
  }
  for (auto& x : batch_)
    deliver_to_actor(self, x);
  batch_.clear();
  // Responses call finish_one_in_flight, which schedules the next drain.
  std::unique_lock guard{mtx_};
  scheduled_ = false;
  if (!queue_.empty() && in_progress_ < opts_.max_in_flight) {
    scheduled_ = true;
    guard.unlock();
    self->send(self, drain_atom::value);
  }
}

void subscriber_state::drain_callback(caf::event_based_actor* self) {
  // One lock per pass: cancel waits for the callback running now, and
  // takes what is left in `taken_` only while no pass runs.
  std::unique_lock<std::timed_mutex> delivering{delivering_};
  // drop_oldest takes one batch into taken_ (below): its spent slots die
  // here, outside the publishers' lock, so `displaced` stays empty.
  item displaced;
  if (opts_.policy == overload_policy::drop_oldest && taken_.empty())
    taken_.release_spent();
  {
    std::unique_lock guard{mtx_};
    // Handled items stop counting toward the capacity.
    in_progress_ = taken_.size();
    if (waiting_ > 0)
      not_full_.notify_all();
    if (taken_.empty()) {
      if (queue_.empty()) {
        // Linger a few empty passes before going idle: a publisher in the
        // middle of a burst then finds the courier awake and need not wake
        // it (a wake-up costs a scheduler enqueue and often a futex call).
        if (idle_passes_ < core_->cfg_.linger) {
          ++idle_passes_;
          guard.unlock();
          delivering.unlock();
          self->send(self, drain_msg_);
          return;
        }
        idle_passes_ = 0;
        scheduled_ = false;
        // Idle: no publisher is about to reuse the slots, so an idle
        // subscription holds no spent events.
        guard.unlock();
        // Spent events die outside the publishers' lock: an event's
        // destructor may publish to this very subscription.
        taken_.release_spent();
        guard.lock();
        if (queue_.empty())
          queue_.swap(taken_); // taken_ holds no spent event now
        guard.unlock();
        taken_.release_spent();
        return;
      }
      // Take the whole queue in O(1): the publishers' lock is held for a
      // swap, not for moving each event (publishers on another core would
      // spin meanwhile). Under drop_oldest, taken events could no longer
      // be evicted for newer ones: take one batch only.
      if (opts_.policy != overload_policy::drop_oldest)
        queue_.swap(taken_);
      else
        while (taken_.size() < core_->cfg_.batch_size && !queue_.empty())
          taken_.push_back(queue_.pop_front(), displaced);
      in_progress_ = taken_.size();
    }
    idle_passes_ = 0;
  }
  current_subscription = this;
  auto handle_front = [this] {
    auto& x = taken_.front();
    deliver_one(x);
    x.sink = nullptr; // the gather may finish without waiting for the slot
    taken_.drop_front();
  };
  for (size_t i = 0; i < core_->cfg_.batch_size && !taken_.empty(); ++i)
    handle_front();
  // Cancelled meanwhile (by a callback, or after cancel gave up waiting):
  // the rest become dead letters now, before the courier stops.
  while (!active_.load() && !taken_.empty())
    handle_front();
  current_subscription = nullptr;
  delivering.unlock();
  // Stay scheduled: the next pass takes more or lingers.
  self->send(self, drain_msg_);
}

// -- bus_core -----------------------------------------------------------------

void bus_core::refresh(topic_entry& e) {
  std::vector<subscriber_state*> found;
  index_.match(e.name, found);
  auto subs =
      std::allocate_shared<subscriber_list>(line_allocator<subscriber_list>{});
  subs->reserve(found.size());
  for (auto* s : found)
    subs->push_back(subs_.at(s));
  e.subs = std::move(subs);
  e.generation = generation_.load();
}

caf::expected<std::pair<topic_entry*, bus_core::subs_ptr>>
bus_core::lookup(std::string_view topic) {
  auto& last = last_topic;
  if (last.core == this && last.generation == generation_.load() &&
      last.topic == topic)
    if (auto subs = last.subs.lock()) // null if unsubscribed meanwhile
      return std::make_pair(last.entry, std::move(subs));
  auto found = [&](topic_entry& e) {
    last.core = this;
    last.generation = e.generation;
    last.topic.assign(topic.data(), topic.size());
    last.entry = &e;
    last.subs = e.subs;
    return std::make_pair(&e, e.subs);
  };
  {
    std::shared_lock guard{mtx_};
    if (auto i = topics_.find(topic);
        i != topics_.end() && i->second->generation == generation_.load())
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
  if (e.generation != generation_.load())
    refresh(e);
  return found(e);
}

caf::error bus_core::publish(std::string_view topic, caf::message event,
                             caf::actor_addr publisher, publish_options opts,
                             std::shared_ptr<gather_sink> sink, size_t* asked) {
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
    entry->has_retained = true;
    entry->retained = event;
    entry->retained_publisher = publisher;
  }
  entry->published.fetch_add(1, std::memory_order_relaxed);
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
    entry->dropped.fetch_add(1, std::memory_order_relaxed);
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
  x.topic->dead_lettered.fetch_add(1, std::memory_order_relaxed);
  if (x.topic->name == dead_letter_topic || closed_.load())
    return; // dead letters are never dead-lettered
  // Nobody listening: count it without building the letter (drops under
  // overload would otherwise pay for it on the publisher's thread).
  if (auto found = lookup(dead_letter_topic); found && found->second->empty()) {
    found->first->published.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  bus::dead_letter dl;
  dl.topic = x.topic->name;
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
  // The state goes in as a spawn argument, not a capture: CAF 0.17.6 binds
  // a null reference when it starts a function actor spawned without
  // arguments, and under ASan+UBSan matching that report against
  // cmake/ubsan.supp costs a symbolization of the binary (up to seconds for
  // the first courier of a process).
  auto courier = sys_.spawn(
      [](caf::event_based_actor* self,
         std::shared_ptr<subscriber_state> state) -> caf::behavior {
        if (state->is_actor_) {
          self->monitor(state->target_);
          self->set_down_handler(
              [state](caf::scheduled_actor*, caf::down_msg& dm) {
                if (dm.source != state->target_)
                  return;
                // Nothing can arrive at a dead actor: no need to wait for acks.
                state->target_down_.store(true);
                auto now = std::chrono::steady_clock::now();
                state->core_->unsubscribe(state, "subscriber died", now, now);
              });
        }
        return {
            [self, state](drain_atom) { state->drain(self); },
        };
      },
      state);
  {
    std::unique_lock sguard{state->mtx_};
    state->courier_ = courier;
  }
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
      if (e->has_retained && matches(state->pattern_, name))
        retained.emplace(name, e.get());
    for (auto& [name, e] : retained) {
      std::optional<item> evicted;
      auto why = dead_letter_reason::dropped_newest;
      state->push(item{e, e->retained, e->retained_publisher, nullptr}, false,
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
    e->subs.reset();
    e->generation = 0;
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
      out.published = e.published.load();
      out.delivered = e.delivered.load();
      out.dropped = e.dropped.load();
      out.dead_lettered = e.dead_lettered.load();
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

size_t bus_core::subscription_count() const {
  std::shared_lock guard{mtx_};
  return subs_.size();
}

caf::message bus_core::retained(std::string_view topic) const {
  std::shared_lock guard{mtx_};
  std::unique_lock rguard{retained_mtx_};
  if (auto i = topics_.find(topic);
      i != topics_.end() && i->second->has_retained)
    return i->second->retained;
  return {};
}

bool bus_core::clear_retained(std::string_view topic) {
  std::shared_lock guard{mtx_};
  std::unique_lock rguard{retained_mtx_};
  if (auto i = topics_.find(topic);
      i != topics_.end() && i->second->has_retained) {
    i->second->has_retained = false;
    i->second->retained = caf::message{};
    i->second->retained_publisher = caf::actor_addr{};
    return true;
  }
  return false;
}

void bus_core::close() {
  if (closed_.exchange(true))
    return;
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

uint64_t subscription::delivered() const noexcept {
  return state_ ? state_->delivered_.load() : 0;
}

uint64_t subscription::dropped() const noexcept {
  return state_ ? state_->dropped_.load() : 0;
}

size_t subscription::queued() const {
  if (!state_)
    return 0;
  std::unique_lock guard{state_->mtx_};
  return state_->queue_.size() + state_->in_progress_;
}

// -- event_bus ----------------------------------------------------------------

event_bus::event_bus(caf::actor_system& sys, bus_config cfg)
    : core_(std::make_shared<detail::bus_core>(sys, std::move(cfg))) {
  // nop
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

caf::expected<subscription>
event_bus::subscribe_impl(std::string_view pattern, detail::handler_fn fn,
                          caf::actor who, subscription_options opts) {
  return core_->subscribe(pattern, std::move(fn), std::move(who), opts);
}

caf::expected<size_t>
event_bus::scatter(std::string_view topic, caf::message query,
                   std::shared_ptr<detail::gather_sink> sink) {
  size_t asked = 0;
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

size_t event_bus::subscription_count() const {
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
  return core_->sys_;
}

} // namespace actorbus::bus
