#include "actorbus/ipc/channel.hpp"

#include "liveness.hpp"
#include "segment_layout.hpp"
#include "shm.hpp"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>
#include <linux/futex.h>
#include <random>
#include <sched.h>
#include <sys/syscall.h>
#include <thread>
#include <unistd.h>

namespace actorbus::ipc {

using namespace internal;

namespace {

using clock_type = std::chrono::steady_clock;

// now + timeout, saturated: timeout_type::max() waits for good instead of
// overflowing into the past.
clock_type::time_point deadline_after(std::chrono::nanoseconds timeout) {
  auto now = clock_type::now();
  if (timeout <= std::chrono::nanoseconds::zero())
    return now;
  if (timeout >= clock_type::time_point::max() - now)
    return clock_type::time_point::max();
  return now + timeout;
}

// Not FUTEX_PRIVATE: the word lives in memory shared between processes.
void futex_wait(std::atomic<uint32_t>& word, uint32_t expected,
                std::chrono::nanoseconds rel) {
  timespec ts{};
  auto ns = std::max<int64_t>(rel.count(), 0);
  ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT, expected,
            &ts, nullptr, 0);
}

void futex_wake_all(std::atomic<uint32_t>& word) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE, INT_MAX,
            nullptr, nullptr, 0);
}

// Bumps the futex word and wakes sleepers.
void notify(std::atomic<uint32_t>& seq) {
  seq.fetch_add(1, std::memory_order_release);
  futex_wake_all(seq);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// The largest max_frame a channel may have, and the longest liveness
// interval it takes (a day; longer ones are cut to it).
constexpr uint64_t max_frame_limit = uint64_t{1} << 30;
constexpr int64_t max_liveness_interval_ms = 86'400'000;

// How long a blocking send or receive polls before it sleeps on the futex.
constexpr auto spin_budget = std::chrono::microseconds(100);

uint64_t random_generation() {
  std::random_device rd;
  uint64_t g =
      (static_cast<uint64_t>(rd()) << 32) ^ rd() ^
      static_cast<uint64_t>(clock_type::now().time_since_epoch().count());
  return g == 0 ? 1 : g;
}

// Why an existing segment with our name can or cannot be reclaimed. Every
// segment is published complete (see shm.hpp), so a bad header is garbage,
// not a creator still at work.
enum class existing_state { stale, live, foreign, vanished, unreadable };

existing_state inspect_existing(const std::string& name, std::string& why,
                                shm_identity& seen) {
  seen = shm_identity{};
  auto seg = open_checked(name, 1, &seen);
  if (!seg) {
    if (seg.error() == errc::not_found)
      return existing_state::vanished;
    if (seg.error() == errc::permission_denied) {
      why = describe(seg.error());
      return existing_state::foreign;
    }
    if (seen == shm_identity{}) {
      why = describe(seg.error());
      return existing_state::unreadable;
    }
    return existing_state::stale; // empty: garbage
  }
  if (seg->size < sizeof(segment_header))
    return existing_state::stale;
  auto* hdr = static_cast<segment_header*>(seg->data());
  if (hdr->magic.load(std::memory_order_acquire) != channel_magic ||
      hdr->version != channel_version ||
      hdr->header_size != sizeof(segment_header))
    return existing_state::stale;
  auto owner = hdr->owner.load(std::memory_order_acquire);
  if (!alive(owner))
    return existing_state::stale;
  why = "'" + name + "' is owned by live process " +
        std::to_string(pid_of(owner));
  return existing_state::live;
}

// The sizes and timing of a channel, as this process uses them.
struct channel_sizes {
  uint64_t capacity = 0;
  uint64_t max_frame = 0;
  uint64_t liveness_interval_ms = 0;
  uint64_t generation = 0;
};

} // namespace

struct channel::impl {
  std::string name;
  shm_mapping seg;
  segment_header* hdr = nullptr;
  std::byte* data[2] = {nullptr, nullptr};
  // Sizes from the header, checked once against the mapping and kept here:
  // the header is writable by the other process, so they are never read
  // from it again.
  uint64_t capacity = 0;
  uint64_t mask = 0;
  uint64_t generation = 0;
  size_t max_frame = 0;
  std::chrono::nanoseconds liveness_interval{0};
  bool owner = false;
  // Set by close(), which another thread may call while a send or receive
  // blocks; that call then returns at once.
  std::atomic<bool> closed{false};
  // Last seen consumer position of the outgoing ring and producer position
  // of the incoming ring (both only grow).
  uint64_t cached_tail = 0;
  uint64_t cached_head = 0;
  // When a wait next asks /proc whether the other process lives (see
  // wait_until): one per direction, as one thread may send while another
  // receives.
  clock_type::time_point next_probe[2]{};

  int out_ring() const {
    return owner ? 0 : 1;
  }

  int in_ring() const {
    return owner ? 1 : 0;
  }

  std::atomic<uint64_t>& other_word() {
    return owner ? hdr->peer : hdr->owner;
  }

  std::atomic<uint32_t>& other_closed() {
    return owner ? hdr->peer_closed : hdr->owner_closed;
  }

  std::atomic<uint32_t>& my_closed() {
    return owner ? hdr->owner_closed : hdr->peer_closed;
  }

  void heartbeat() {
    (owner ? hdr->owner_heartbeat : hdr->peer_heartbeat)
        .store(monotonic_ms(), std::memory_order_relaxed);
  }

  // Returns an error if the other side is gone, none if it lives (or was
  // never attached, in which case there is nobody to wait for yet).
  caf::error check_other_side() {
    if (other_closed().load(std::memory_order_acquire) != 0)
      return make_error(errc::peer_closed,
                        "the other side of '" + name + "' closed it");
    auto w = other_word().load(std::memory_order_acquire);
    if (w == 0)
      return caf::none;
    if (!alive(w))
      return make_error(errc::peer_dead, "process " +
                                             std::to_string(pid_of(w)) +
                                             " behind '" + name + "' died");
    return caf::none;
  }

  // check_other_side, but the process lookup (open, read and close of
  // /proc/<pid>/stat: 7 µs here, paid by every wait that blocks) runs at
  // most once per liveness interval; the close flag is read every time. A
  // waiter still learns of a death within the interval, as its futex sleep
  // ends at the next probe.
  caf::error
  check_other_side_at_most_every_interval(clock_type::time_point& next_probe) {
    auto now = clock_type::now();
    if (now < next_probe) {
      if (other_closed().load(std::memory_order_acquire) != 0)
        return check_other_side();
      return caf::none;
    }
    next_probe = now + liveness_interval;
    return check_other_side();
  }

  // Takes sizes that were checked against the mapping (see open).
  void setup_pointers(const channel_sizes& checked) {
    hdr = static_cast<segment_header*>(seg.data());
    capacity = checked.capacity;
    auto* base = static_cast<std::byte*>(seg.data()) + sizeof(segment_header);
    data[0] = base;
    data[1] = base + capacity;
    mask = capacity - 1;
    generation = checked.generation;
    max_frame = static_cast<size_t>(checked.max_frame);
    cached_tail = hdr->rings[out_ring()].tail.load(std::memory_order_acquire);
    cached_head = hdr->rings[in_ring()].head.load(std::memory_order_acquire);
    liveness_interval = std::chrono::milliseconds(std::clamp<uint64_t>(
        checked.liveness_interval_ms, 1, max_liveness_interval_ms));
  }

  void copy_in(int ring, uint64_t pos, const void* src, size_t n) {
    auto off = pos & mask;
    auto first = std::min<uint64_t>(n, capacity - off);
    std::memcpy(data[ring] + off, src, first);
    if (first < n)
      std::memcpy(data[ring], static_cast<const std::byte*>(src) + first,
                  n - first);
  }

  void copy_out(int ring, uint64_t pos, void* dst, size_t n) {
    auto off = pos & mask;
    auto first = std::min<uint64_t>(n, capacity - off);
    std::memcpy(dst, data[ring] + off, first);
    if (first < n)
      std::memcpy(static_cast<std::byte*>(dst) + first, data[ring], n - first);
  }

  // Blocks on `seq` until `ready()` or timeout / death of the other side.
  template <class Ready>
  caf::error wait_until(std::atomic<uint32_t>& seq,
                        std::atomic<uint32_t>& waiting, Ready ready,
                        clock_type::time_point deadline, bool fail_on_close,
                        clock_type::time_point& next_probe) {
    // A short spin catches a peer that answers within a microsecond; then
    // yielding (so that a peer sharing this core runs) until spin_budget
    // has passed; only then sleep on the futex. The budget is longer than a
    // futex wake-up takes on a VM (30-60 us here): with a shorter one, two
    // processes in a request/reply loop fall into a mode where each wakes
    // the other from the futex every time (median 30-55 us instead of 0.3).
    for (int i = 0; i < 64; ++i) {
      if (ready())
        return caf::none;
      cpu_relax();
    }
    auto spin_end = clock_type::now() + spin_budget;
    do {
      if (ready())
        return caf::none;
      sched_yield();
    } while (clock_type::now() < spin_end);
    for (;;) {
      auto s = seq.load(std::memory_order_acquire);
      waiting.store(1, std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (ready()) {
        waiting.store(0, std::memory_order_relaxed);
        return caf::none;
      }
      // close() sets this before it bumps the futex words: either it shows
      // here or the sleep below ends at once.
      if (closed.load(std::memory_order_acquire)) {
        waiting.store(0, std::memory_order_relaxed);
        return make_error(errc::invalid_argument,
                          "'" + name +
                              "' was closed by this side while "
                              "waiting");
      }
      if (auto err = check_other_side_at_most_every_interval(next_probe)) {
        waiting.store(0, std::memory_order_relaxed);
        if (fail_on_close || err != errc::peer_closed)
          return err;
        if (!ready())
          return err;
        return caf::none;
      }
      auto now = clock_type::now();
      if (now >= deadline) {
        waiting.store(0, std::memory_order_relaxed);
        return make_error(errc::timeout,
                          "no progress on '" + name + "' before the deadline");
      }
      // The probe above moved next_probe past now.
      auto slice = std::min(deadline, next_probe) - now;
      futex_wait(seq, s,
                 std::chrono::duration_cast<std::chrono::nanoseconds>(slice));
      waiting.store(0, std::memory_order_relaxed);
      heartbeat();
    }
  }
};

channel::channel(std::unique_ptr<impl> ptr)
    : impl_(std::move(ptr)) {
  // nop
}

channel::channel(channel&&) noexcept = default;

channel& channel::operator=(channel&& other) noexcept {
  if (this != &other) {
    close();
    impl_ = std::move(other.impl_);
  }
  return *this;
}

channel::~channel() {
  close();
}

caf::expected<channel> channel::create(const std::string& name,
                                       channel_options opts) {
  if (auto err = check_name(name))
    return err;
  if (opts.max_frame == 0 || opts.max_frame > max_frame_limit)
    return make_error(errc::invalid_argument,
                      "max_frame must be between 1 byte and 1 GiB");
  auto cap = std::bit_ceil(std::max<uint64_t>(
      {opts.capacity, frame_footprint(opts.max_frame), uint64_t{4096}}));
  auto obj = unnamed_object::create(segment_size(cap));
  if (!obj)
    return std::move(obj.error());
  channel_sizes sizes{cap, opts.max_frame,
                      static_cast<uint64_t>(std::clamp<int64_t>(
                          std::chrono::duration_cast<std::chrono::milliseconds>(
                              opts.liveness_interval)
                              .count(),
                          1, max_liveness_interval_ms)),
                      random_generation()};
  // The header is complete before the segment gets its name.
  auto* hdr = new (obj->mapping.data()) segment_header{};
  hdr->version = channel_version;
  hdr->header_size = sizeof(segment_header);
  hdr->generation = sizes.generation;
  hdr->capacity = sizes.capacity;
  hdr->max_frame = sizes.max_frame;
  hdr->liveness_interval_ms = sizes.liveness_interval_ms;
  hdr->owner.store(self_identity(), std::memory_order_relaxed);
  hdr->magic.store(channel_magic, std::memory_order_release);
  auto err =
      publish_reclaiming(*obj, name, [&]() -> caf::expected<shm_identity> {
        std::string why;
        shm_identity seen;
        switch (inspect_existing(name, why, seen)) {
        case existing_state::stale: // garbage header or dead owner
          return seen;
        case existing_state::vanished:
          return shm_identity{};
        case existing_state::live:
          return make_error(errc::already_exists, why);
        case existing_state::foreign:
          return make_error(errc::permission_denied, why);
        case existing_state::unreadable:
          break;
        }
        return make_error(errc::system_error, why);
      });
  if (err)
    return err;
  auto ptr = std::make_unique<impl>();
  ptr->name = name;
  ptr->owner = true;
  ptr->seg = std::move(obj->mapping);
  ptr->setup_pointers(sizes);
  ptr->heartbeat();
  return channel{std::move(ptr)};
}

caf::expected<channel> channel::open(const std::string& name,
                                     timeout_type wait) {
  if (auto err = check_name(name))
    return err;
  auto deadline = deadline_after(wait);
  caf::expected<shm_mapping> seg = make_error(errc::not_found);
  segment_header* hdr = nullptr;
  for (;;) {
    seg = open_checked(name, sizeof(segment_header));
    if (seg) {
      hdr = static_cast<segment_header*>(seg->data());
      if (hdr->magic.load(std::memory_order_acquire) == channel_magic)
        break;
      seg = make_error(errc::incompatible,
                       "'" + name + "' has no valid channel header");
    }
    bool retry = seg.error() == errc::not_found ||
                 seg.error() == errc::incompatible ||
                 seg.error() == errc::permission_denied;
    // Retrying on the latter two covers a stale segment that a creator is
    // about to reclaim and replace.
    if (!retry || clock_type::now() >= deadline)
      return std::move(seg.error());
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // One copy of the sizes, checked against the real size of the mapping
  // without overflow; the channel uses only this copy.
  auto version = hdr->version;
  auto header_size = hdr->header_size;
  channel_sizes checked{hdr->capacity, hdr->max_frame,
                        hdr->liveness_interval_ms, hdr->generation};
  auto rings_size = seg->size - sizeof(segment_header); // >= 0: open_checked
  if (version != channel_version || header_size != sizeof(segment_header) ||
      checked.capacity == 0 || !std::has_single_bit(checked.capacity) ||
      checked.capacity > rings_size / 2 || checked.capacity * 2 != rings_size ||
      checked.max_frame == 0 || checked.max_frame > max_frame_limit ||
      frame_footprint(checked.max_frame) > checked.capacity)
    return make_error(errc::incompatible,
                      "'" + name +
                          "' has a header of another version or a "
                          "size that does not match it");
  auto owner = hdr->owner.load(std::memory_order_acquire);
  if (!alive(owner))
    return make_error(errc::peer_dead, "the owner of '" + name + "' (process " +
                                           std::to_string(pid_of(owner)) +
                                           ") is dead");
  auto me = self_identity();
  auto cur = hdr->peer.load(std::memory_order_acquire);
  for (;;) {
    if (cur != 0 && alive(cur))
      return make_error(errc::busy, "'" + name + "' already has peer process " +
                                        std::to_string(pid_of(cur)));
    if (hdr->peer.compare_exchange_weak(cur, me, std::memory_order_acq_rel))
      break;
  }
  hdr->peer_closed.store(0, std::memory_order_release);
  auto ptr = std::make_unique<impl>();
  ptr->name = name;
  ptr->owner = false;
  ptr->seg = std::move(*seg);
  ptr->setup_pointers(checked);
  ptr->heartbeat();
  return channel{std::move(ptr)};
}

caf::error channel::send(std::span<const std::byte> frame,
                         timeout_type timeout) {
  if (!impl_ || impl_->closed.load(std::memory_order_relaxed))
    return make_error(errc::invalid_argument, "send on a closed channel");
  auto& d = *impl_;
  if (frame.size() > d.max_frame)
    return make_error(errc::frame_too_large,
                      "frame of " + std::to_string(frame.size()) +
                          " bytes exceeds the maximum of " +
                          std::to_string(d.max_frame) + " on '" + d.name + "'");
  if (d.other_closed().load(std::memory_order_acquire) != 0)
    return make_error(errc::peer_closed,
                      "the other side of '" + d.name + "' closed it");
  auto& rc = d.hdr->rings[d.out_ring()];
  auto need = frame_footprint(frame.size());
  auto head = rc.head.load(std::memory_order_relaxed);
  // The consumer's position is re-read only when the cached one shows too
  // little space: one shared cache line less per frame.
  auto has_space = [&] {
    if (d.capacity - (head - d.cached_tail) >= need)
      return true;
    d.cached_tail = rc.tail.load(std::memory_order_acquire);
    return d.capacity - (head - d.cached_tail) >= need;
  };
  if (!has_space()) {
    auto deadline = deadline_after(timeout);
    if (auto err = d.wait_until(rc.space_seq, rc.writer_waiting, has_space,
                                deadline, true, d.next_probe[0]))
      return err;
  }
  auto len = static_cast<uint32_t>(frame.size());
  d.copy_in(d.out_ring(), head, &len, sizeof(len));
  if (!frame.empty())
    d.copy_in(d.out_ring(), head + frame_header_size, frame.data(),
              frame.size());
  rc.head.store(head + need, std::memory_order_release);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (rc.reader_waiting.load(std::memory_order_relaxed) != 0)
    notify(rc.data_seq);
  return caf::none;
}

caf::error channel::receive(std::vector<std::byte>& out, timeout_type timeout) {
  if (!impl_ || impl_->closed.load(std::memory_order_relaxed))
    return make_error(errc::invalid_argument, "receive on a closed channel");
  auto& d = *impl_;
  auto& rc = d.hdr->rings[d.in_ring()];
  auto tail = rc.tail.load(std::memory_order_relaxed);
  auto has_data = [&] {
    if (d.cached_head != tail)
      return true;
    d.cached_head = rc.head.load(std::memory_order_acquire);
    return d.cached_head != tail;
  };
  if (!has_data()) {
    auto deadline = deadline_after(timeout);
    if (auto err = d.wait_until(rc.data_seq, rc.reader_waiting, has_data,
                                deadline, false, d.next_probe[1]))
      return err;
  }
  auto avail = d.cached_head - tail;
  uint32_t len = 0;
  if (avail < frame_header_size || avail > d.capacity)
    return make_error(errc::corrupt_frame,
                      "ring positions of '" + d.name + "' are inconsistent");
  d.copy_out(d.in_ring(), tail, &len, sizeof(len));
  if (len > d.max_frame || frame_footprint(len) > avail)
    return make_error(errc::corrupt_frame,
                      "frame length " + std::to_string(len) + " on '" + d.name +
                          "' exceeds the maximum of " +
                          std::to_string(d.max_frame) +
                          " or the bytes in the ring");
  out.resize(len);
  if (len > 0)
    d.copy_out(d.in_ring(), tail + frame_header_size, out.data(), len);
  rc.tail.store(tail + frame_footprint(len), std::memory_order_release);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (rc.writer_waiting.load(std::memory_order_relaxed) != 0)
    notify(rc.space_seq);
  return caf::none;
}

caf::expected<std::vector<std::byte>> channel::receive(timeout_type timeout) {
  std::vector<std::byte> buf;
  if (auto err = receive(buf, timeout))
    return err;
  return buf;
}

void channel::close() noexcept {
  if (!impl_ || impl_->closed.exchange(true, std::memory_order_acq_rel))
    return;
  auto& d = *impl_;
  d.my_closed().store(1, std::memory_order_release);
  for (auto& rc : d.hdr->rings) {
    notify(rc.data_seq);
    notify(rc.space_seq);
  }
  bool unlink = d.owner;
  if (!d.owner) {
    // A peer cleans up after an owner that died without closing.
    auto w = d.hdr->owner.load(std::memory_order_acquire);
    unlink =
        d.hdr->owner_closed.load(std::memory_order_acquire) == 0 && !alive(w);
  }
  if (unlink)
    remove_if_same(d.name, d.seg.id); // not a successor's segment
  if (!d.owner) {
    // Leave the peer slot free for a successor.
    auto me = self_identity();
    d.hdr->peer.compare_exchange_strong(me, 0, std::memory_order_acq_rel);
  }
}

bool channel::is_owner() const noexcept {
  return impl_ && impl_->owner;
}

bool channel::other_side_alive() const {
  if (!impl_ || impl_->closed.load(std::memory_order_acquire))
    return false;
  return !impl_->check_other_side() &&
         impl_->other_word().load(std::memory_order_acquire) != 0;
}

size_t channel::max_frame() const noexcept {
  return impl_ ? impl_->max_frame : 0;
}

const std::string& channel::name() const noexcept {
  static const std::string empty;
  return impl_ ? impl_->name : empty;
}

uint64_t channel::generation() const noexcept {
  return impl_ ? impl_->generation : 0;
}

} // namespace actorbus::ipc
