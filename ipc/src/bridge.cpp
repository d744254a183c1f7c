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
      : bus_(b)
      , ch_(std::move(c))
      , opts_(std::move(o)) {
    // nop
  }

  bus::event_bus& bus_;
  channel ch_;
  bridge_options opts_;
  caf::actor remote_;
  caf::actor_addr remote_addr_;
  std::vector<bus::subscription> subs_;
  std::thread reader_;

  std::mutex send_mtx_;
  std::vector<std::byte> send_buf_; // guarded by send_mtx

  std::atomic<bool> stopping_{false};
  std::atomic<bool> down_{false};
  mutable std::mutex down_mtx_;
  caf::error down_why_; // guarded by down_mtx

  std::atomic<uint64_t> sent_{0};
  std::atomic<uint64_t> send_failed_{0};
  std::atomic<uint64_t> received_{0};
  std::atomic<uint64_t> refused_{0};
  std::atomic<uint64_t> undecodable_{0};

  /// Forwards one local event; throws on failure so that the bus turns the
  /// event into a dead letter with the reason.
  void export_event(size_t pattern_index, const bus::event<caf::message>& ev) {
    // Arrived from the other side: never sent back.
    if (ev.publisher() == remote_addr_)
      return;
    // An event matching several patterns crosses once, through the
    // subscription of the first of them.
    for (size_t i = 0; i < pattern_index; ++i)
      if (bus::matches(opts_.export_patterns[i], ev.topic()))
        return;
    if (auto err = send_event(ev.topic(), ev.value())) {
      send_failed_.fetch_add(1, std::memory_order_relaxed);
      throw std::runtime_error("bus bridge: " + describe(err));
    }
    sent_.fetch_add(1, std::memory_order_relaxed);
  }

  caf::error send_event(const std::string& topic, const caf::message& value) {
    if (down_.load(std::memory_order_acquire)) {
      std::lock_guard guard{down_mtx_};
      return down_why_;
    }
    if (stopping_.load(std::memory_order_acquire))
      return make_error(errc::peer_closed, "the bridge is stopping");
    auto payload =
        encode_message(bus_.system(), caf::make_message(topic) + value);
    if (!payload)
      return std::move(payload.error());
    std::lock_guard guard{send_mtx_};
    encode_frame(frame_kind::message, 0, *payload, send_buf_);
    // Waits in slices so that `stop` is not held up for a whole timeout.
    auto deadline = clock_type::now() + opts_.send_timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(
          deadline - clock_type::now());
      auto err =
          ch_.send(send_buf_,
                   std::clamp(left, 0ns, std::chrono::nanoseconds{poll_slice}));
      if (err != errc::timeout || clock_type::now() >= deadline ||
          stopping_.load(std::memory_order_acquire))
        return err;
    }
  }

  void read_loop() {
    std::vector<std::byte> buf;
    while (!stopping_.load(std::memory_order_acquire)) {
      auto err = ch_.receive(buf, poll_slice);
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
    auto frame = decode_frame(buf, ch_.max_frame());
    if (!frame)
      return reject_frame(buf, std::string{}, describe(frame.error()));
    if (frame->kind != frame_kind::message)
      return reject_frame(buf, std::string{},
                          "frame of kind " +
                              std::to_string(static_cast<int>(frame->kind)) +
                              " where an event was expected");
    auto msg = decode_message(bus_.system(), frame->payload);
    if (!msg)
      return reject_frame(buf, std::string{}, describe(msg.error()));
    if (msg->size() < 2 || !msg->match_element<std::string>(0))
      return reject_frame(buf, std::string{}, "no topic and value");
    const auto& topic = msg->get_as<std::string>(0);
    if (!bus::is_valid_topic(topic) || topic.front() == '$')
      return reject_frame(buf, topic, "invalid or reserved topic");
    received_.fetch_add(1, std::memory_order_relaxed);
    if (bus_.publish_message(topic, msg->drop(1), remote_addr_))
      refused_.fetch_add(1, std::memory_order_relaxed);
  }

  // A frame from the other process that is no bridge event: counted, and an
  // `undecodable` dead letter on the local bus that says why and holds
  // the frame's bytes, so that a broken or hostile peer shows up where
  // every other loss does. The reader goes on with the next frame.
  void reject_frame(const std::vector<std::byte>& buf, std::string topic,
                    const std::string& why) {
    undecodable_.fetch_add(1, std::memory_order_relaxed);
    bus::dead_letter letter;
    letter.topic = std::move(topic);
    letter.reason = bus::dead_letter_reason::undecodable;
    letter.detail = "bus bridge '" + ch_.name() + "': undecodable frame (" +
                    std::to_string(buf.size()) +
                    " bytes) from the other process: " + why;
    letter.publisher = remote_addr_;
    std::vector<uint8_t> raw(buf.size());
    std::memcpy(raw.data(), buf.data(), buf.size());
    letter.event = caf::make_message(std::move(raw));
    (void)bus_.publish(bus::dead_letter_topic, std::move(letter));
  }

  void went_down(caf::error reason) {
    {
      std::lock_guard guard{down_mtx_};
      down_why_ = reason;
    }
    down_.store(true, std::memory_order_release);
    if (opts_.on_down)
      opts_.on_down(reason);
  }

  void stop() noexcept {
    if (stopping_.exchange(true))
      return;
    for (auto& sub : subs_)
      sub.cancel();
    if (reader_.joinable()) {
      if (reader_.get_id() == std::this_thread::get_id())
        reader_.detach();
      else
        reader_.join();
    }
    ch_.close();
    if (remote_)
      caf::anon_send_exit(remote_, caf::exit_reason::user_shutdown);
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
  st.remote_ = bus.system().spawn(remote_publisher_actor, st.ch_.name());
  st.remote_addr_ = st.remote_.address();
  for (size_t i = 0; i < st.opts_.export_patterns.size(); ++i) {
    auto sub = bus.subscribe<caf::message>(
        st.opts_.export_patterns[i],
        [raw = ptr.get(), i](const bus::event<caf::message>& ev) {
          raw->export_event(i, ev);
        },
        st.opts_.subscription);
    if (!sub) {
      st.stop();
      return std::move(sub.error());
    }
    st.subs_.emplace_back(std::move(*sub));
  }
  st.reader_ = std::thread{[keep = ptr] { keep->read_loop(); }};
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
  return impl_ && !impl_->down_.load(std::memory_order_acquire) &&
         !impl_->stopping_.load(std::memory_order_acquire);
}

caf::error bus_bridge::down_reason() const {
  if (!impl_)
    return caf::none;
  std::lock_guard guard{impl_->down_mtx_};
  return impl_->down_why_;
}

caf::actor_addr bus_bridge::remote_publisher() const {
  return impl_ ? impl_->remote_addr_ : caf::actor_addr{};
}

bridge_stats bus_bridge::stats() const {
  bridge_stats out;
  if (!impl_)
    return out;
  auto get = [](const std::atomic<uint64_t>& x) {
    return x.load(std::memory_order_relaxed);
  };
  out.sent = get(impl_->sent_);
  out.send_failed = get(impl_->send_failed_);
  out.received = get(impl_->received_);
  out.refused = get(impl_->refused_);
  out.undecodable = get(impl_->undecodable_);
  return out;
}

} // namespace actorbus::ipc
