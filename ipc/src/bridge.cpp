#include "actorbus/ipc/bridge.hpp"

#include "actorbus/bus/topic.hpp"
#include "actorbus/ipc/frame.hpp"

#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/message.hpp>
#include <caf/send.hpp>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace actorbus::ipc {

namespace {

using namespace std::chrono_literals;

using clock_type = std::chrono::steady_clock;

// How often blocked calls look at the stop flag.
constexpr auto poll_slice = std::chrono::milliseconds(50);

using remote_publisher_atom = caf::atom_constant<caf::atom("bridgePub")>;

// The actor standing for the other process as publisher. It does nothing;
// its address marks events that arrived over the bridge.
caf::behavior remote_publisher_actor(caf::event_based_actor* self,
                                     const std::string&) {
  self->set_default_handler(caf::drop);
  return {[](remote_publisher_atom) {}};
}

} // namespace

struct bus_bridge::impl {
  impl(bus::event_bus& b, channel c, bridge_options o)
      : bus(b)
      , ch(std::move(c))
      , opts(std::move(o)) {
    // nop
  }

  bus::event_bus& bus;
  channel ch;
  bridge_options opts;
  caf::actor remote;
  caf::actor_addr remote_addr;
  std::vector<bus::subscription> subs;
  std::thread reader;

  std::mutex send_mtx;
  std::vector<std::byte> send_buf; // guarded by send_mtx

  std::atomic<bool> stopping{false};
  std::atomic<bool> down{false};
  mutable std::mutex down_mtx;
  caf::error down_why; // guarded by down_mtx

  std::atomic<uint64_t> sent{0};
  std::atomic<uint64_t> send_failed{0};
  std::atomic<uint64_t> received{0};
  std::atomic<uint64_t> refused{0};
  std::atomic<uint64_t> undecodable{0};

  /// Forwards one local event; throws on failure so that the bus turns the
  /// event into a dead letter with the reason.
  void export_event(size_t pattern_index, const bus::event<caf::message>& ev) {
    // Arrived from the other side: never sent back.
    if (ev.publisher() == remote_addr)
      return;
    // An event matching several patterns crosses once, through the
    // subscription of the first of them.
    for (size_t i = 0; i < pattern_index; ++i)
      if (bus::matches(opts.export_patterns[i], ev.topic()))
        return;
    if (auto err = send_event(ev.topic(), ev.value())) {
      send_failed.fetch_add(1, std::memory_order_relaxed);
      throw std::runtime_error("bus bridge: " + describe(err));
    }
    sent.fetch_add(1, std::memory_order_relaxed);
  }

  caf::error send_event(const std::string& topic, const caf::message& value) {
    if (down.load(std::memory_order_acquire)) {
      std::lock_guard guard{down_mtx};
      return down_why;
    }
    if (stopping.load(std::memory_order_acquire))
      return make_error(errc::peer_closed, "the bridge is stopping");
    auto payload =
        encode_message(bus.system(), caf::make_message(topic) + value);
    if (!payload)
      return std::move(payload.error());
    std::lock_guard guard{send_mtx};
    encode_frame(frame_kind::message, 0, *payload, send_buf);
    // Waits in slices so that `stop` is not held up for a whole timeout.
    auto deadline = clock_type::now() + opts.send_timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(
          deadline - clock_type::now());
      auto err =
          ch.send(send_buf,
                  std::clamp(left, 0ns, std::chrono::nanoseconds{poll_slice}));
      if (err != errc::timeout || clock_type::now() >= deadline ||
          stopping.load(std::memory_order_acquire))
        return err;
    }
  }

  void read_loop() {
    std::vector<std::byte> buf;
    while (!stopping.load(std::memory_order_acquire)) {
      auto err = ch.receive(buf, poll_slice);
      if (err == errc::timeout)
        continue;
      if (err) {
        went_down(std::move(err));
        return;
      }
      publish_frame(buf);
    }
  }

  void publish_frame(const std::vector<std::byte>& buf) {
    auto frame = decode_frame(buf, ch.max_frame());
    if (!frame)
      return reject_frame(buf, std::string{}, describe(frame.error()));
    if (frame->kind != frame_kind::message)
      return reject_frame(buf, std::string{},
                          "frame of kind " +
                              std::to_string(static_cast<int>(frame->kind)) +
                              " where an event was expected");
    auto msg = decode_message(bus.system(), frame->payload);
    if (!msg)
      return reject_frame(buf, std::string{}, describe(msg.error()));
    if (msg->size() < 2 || !msg->match_element<std::string>(0))
      return reject_frame(buf, std::string{}, "no topic and value");
    const auto& topic = msg->get_as<std::string>(0);
    if (!bus::is_valid_topic(topic) || topic.front() == '$')
      return reject_frame(buf, topic, "invalid or reserved topic");
    received.fetch_add(1, std::memory_order_relaxed);
    if (bus.publish_message(topic, msg->drop(1), remote_addr))
      refused.fetch_add(1, std::memory_order_relaxed);
  }

  // A frame from the other process that is no bridge event: counted, and an
  // `undecodable` dead letter on the local bus that says why and holds
  // the frame's bytes, so that a broken or hostile peer shows up where
  // every other loss does. The reader goes on with the next frame.
  void reject_frame(const std::vector<std::byte>& buf, std::string topic,
                    const std::string& why) {
    undecodable.fetch_add(1, std::memory_order_relaxed);
    bus::dead_letter letter;
    letter.topic = std::move(topic);
    letter.reason = bus::dead_letter_reason::undecodable;
    letter.detail = "bus bridge '" + ch.name() + "': undecodable frame (" +
                    std::to_string(buf.size()) +
                    " bytes) from the other process: " + why;
    letter.publisher = remote_addr;
    std::vector<uint8_t> raw(buf.size());
    std::memcpy(raw.data(), buf.data(), buf.size());
    letter.event = caf::make_message(std::move(raw));
    (void)bus.publish(bus::dead_letter_topic, std::move(letter));
  }

  void went_down(caf::error reason) {
    {
      std::lock_guard guard{down_mtx};
      down_why = reason;
    }
    down.store(true, std::memory_order_release);
    if (opts.on_down)
      opts.on_down(reason);
  }

  void stop() noexcept {
    if (stopping.exchange(true))
      return;
    for (auto& sub : subs)
      sub.cancel();
    if (reader.joinable()) {
      if (reader.get_id() == std::this_thread::get_id())
        reader.detach();
      else
        reader.join();
    }
    ch.close();
    if (remote)
      caf::anon_send_exit(remote, caf::exit_reason::user_shutdown);
  }
};

caf::expected<bus_bridge> bus_bridge::start(bus::event_bus& bus, channel ch,
                                            bridge_options opts) {
  for (auto& pattern : opts.export_patterns)
    if (!bus::is_valid_pattern(pattern) || pattern.front() == '$')
      return make_error(errc::invalid_argument,
                        "invalid export pattern '" + pattern + "'");
  auto ptr = std::make_shared<impl>(bus, std::move(ch), std::move(opts));
  auto& st = *ptr;
  st.remote = bus.system().spawn(remote_publisher_actor, st.ch.name());
  st.remote_addr = st.remote.address();
  for (size_t i = 0; i < st.opts.export_patterns.size(); ++i) {
    auto sub = bus.subscribe<caf::message>(
        st.opts.export_patterns[i],
        [raw = ptr.get(), i](const bus::event<caf::message>& ev) {
          raw->export_event(i, ev);
        },
        st.opts.subscription);
    if (!sub) {
      st.stop();
      return std::move(sub.error());
    }
    st.subs.emplace_back(std::move(*sub));
  }
  st.reader = std::thread{[keep = ptr] { keep->read_loop(); }};
  return bus_bridge{std::move(ptr)};
}

bus_bridge::bus_bridge(std::shared_ptr<impl> ptr)
    : impl_(std::move(ptr)) {
  // nop
}

bus_bridge::bus_bridge(bus_bridge&&) noexcept = default;

bus_bridge& bus_bridge::operator=(bus_bridge&& other) noexcept {
  if (this != &other) {
    stop();
    impl_ = std::move(other.impl_);
  }
  return *this;
}

bus_bridge::~bus_bridge() {
  stop();
}

void bus_bridge::stop() noexcept {
  if (impl_)
    impl_->stop();
}

bool bus_bridge::connected() const noexcept {
  return impl_ && !impl_->down.load(std::memory_order_acquire) &&
         !impl_->stopping.load(std::memory_order_acquire);
}

caf::error bus_bridge::down_reason() const {
  if (!impl_)
    return caf::none;
  std::lock_guard guard{impl_->down_mtx};
  return impl_->down_why;
}

caf::actor_addr bus_bridge::remote_publisher() const {
  return impl_ ? impl_->remote_addr : caf::actor_addr{};
}

bridge_stats bus_bridge::stats() const {
  bridge_stats out;
  if (!impl_)
    return out;
  auto get = [](const std::atomic<uint64_t>& x) {
    return x.load(std::memory_order_relaxed);
  };
  out.sent = get(impl_->sent);
  out.send_failed = get(impl_->send_failed);
  out.received = get(impl_->received);
  out.refused = get(impl_->refused);
  out.undecodable = get(impl_->undecodable);
  return out;
}

} // namespace actorbus::ipc
