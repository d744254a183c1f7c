#include "actorbus/ipc/remote.hpp"

#include "actorbus/ipc/frame.hpp"

#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/message.hpp>
#include <caf/response_promise.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include <atomic>
#include <cstring>
#include <thread>
#include <unordered_map>

namespace actorbus::ipc {

namespace {

using namespace std::chrono_literals;

using inbound_atom = caf::atom_constant<caf::atom("ipcIn")>;
constexpr inbound_atom inbound_v{};
using link_down_atom = caf::atom_constant<caf::atom("ipcDown")>;
constexpr link_down_atom link_down_v{};

constexpr auto send_timeout = std::chrono::seconds(5);

// The channel plus a thread that turns incoming frames into messages to the
// owning actor (held weakly, so the actor can be collected). The thread
// keeps the link (and so the mapping) alive until it notices `stop`; the
// actor's state calls shutdown() when it goes away, which closes the channel
// at once: the other side learns `peer_closed` and an owner unlinks the
// segment even if this process exits right after, before the thread ends.
struct link : std::enable_shared_from_this<link> {
  channel ch;
  std::atomic<bool> stop{false};
  std::thread reader;

  explicit link(channel c)
      : ch(std::move(c)) {}

  void start(caf::actor_system& sys, const caf::actor& owner) {
    auto weak = caf::actor_cast<caf::weak_actor_ptr>(owner);
    reader = std::thread{[this, keep = shared_from_this(), &sys, weak] {
      std::vector<std::byte> buf;
      for (;;) {
        auto err = ch.receive(buf, 100ms);
        if (stop)
          return;
        if (err == errc::timeout)
          continue;
        auto strong = caf::actor_cast<caf::actor>(weak.lock());
        if (!strong)
          return;
        if (err) {
          caf::anon_send(strong, link_down_v, std::move(err));
          return;
        }
        std::vector<char> frame(buf.size());
        std::memcpy(frame.data(), buf.data(), buf.size());
        caf::anon_send(strong, inbound_v, std::move(frame));
      }
      (void)sys;
    }};
    reader.detach();
  }

  ~link() {
    ch.close();
  }

  // Called by the actor's state; the reader's receive returns at once.
  void shutdown() noexcept {
    stop = true;
    ch.close();
  }

  caf::error send_message(caf::actor_system& sys, frame_kind kind, uint64_t id,
                          const caf::message& msg) {
    auto payload = encode_message(sys, msg);
    if (!payload)
      return std::move(payload.error());
    std::vector<std::byte> frame;
    encode_frame(kind, id, *payload, frame);
    return ch.send(frame, send_timeout);
  }
};

caf::message error_payload(const caf::error& err) {
  auto text =
      err.context().empty() ? std::string{} : caf::to_string(err.context());
  return caf::make_message(err.code(), err.category(), std::move(text));
}

caf::error error_from_payload(const caf::message& msg) {
  if (msg.match_elements<uint8_t, caf::atom_value, std::string>()) {
    auto& text = msg.get_as<std::string>(2);
    return caf::error{msg.get_as<uint8_t>(0), msg.get_as<caf::atom_value>(1),
                      text.empty() ? caf::message{} : caf::make_message(text)};
  }
  return make_error(errc::corrupt_frame, "malformed error response");
}

// -- the stand-in for a remote actor ----------------------------------------

struct proxy_state {
  ~proxy_state() {
    if (lnk)
      lnk->shutdown();
  }
  std::shared_ptr<link> lnk;
  std::unordered_map<uint64_t, caf::response_promise> pending;
  uint64_t next_id = 1;
  static inline const char* name = "ipc_proxy";
};

using proxy_actor = caf::stateful_actor<proxy_state>;

void fail_pending(proxy_actor* self, const caf::error& err) {
  for (auto& [id, rp] : self->state.pending)
    rp.deliver(err);
  self->state.pending.clear();
}

caf::behavior proxy(proxy_actor* self, std::shared_ptr<link> lnk) {
  self->state.lnk = lnk;
  self->set_default_handler(
      [](caf::scheduled_actor* ptr,
         caf::message_view& view) -> caf::result<caf::message> {
        auto* self = static_cast<proxy_actor*>(ptr);
        auto msg = view.move_content_to_message();
        auto& st = self->state;
        if (self->current_message_id().is_request()) {
          auto id = st.next_id++;
          auto rp = self->make_response_promise();
          if (auto err = st.lnk->send_message(self->system(),
                                              frame_kind::request, id, msg)) {
            rp.deliver(err);
          } else {
            st.pending.emplace(id, std::move(rp));
            // The promise holds this actor until the exposing side answers:
            // it does within its request_timeout, or the link goes down.
          }
          return caf::message{};
        }
        if (auto err = st.lnk->send_message(self->system(), frame_kind::message,
                                            0, msg))
          self->quit(err);
        return caf::message{};
      });
  return {
      [=](inbound_atom, const std::vector<char>& raw) {
        auto bytes = std::as_bytes(std::span{raw.data(), raw.size()});
        auto frame = decode_frame(bytes, lnk->ch.max_frame());
        // Only a response or an error response answers a request.
        if (!frame || (frame->kind != frame_kind::response &&
                       frame->kind != frame_kind::error_response))
          return;
        auto i = self->state.pending.find(frame->id);
        if (i == self->state.pending.end())
          return;
        auto rp = std::move(i->second);
        self->state.pending.erase(i);
        auto msg = decode_message(self->system(), frame->payload);
        if (!msg)
          rp.deliver(msg.error());
        else if (frame->kind == frame_kind::response)
          rp.deliver(std::move(*msg));
        else
          rp.deliver(error_from_payload(*msg));
      },
      [=](link_down_atom, caf::error& err) {
        fail_pending(self, err);
        self->quit(err);
      },
  };
}

// -- the bridge in front of an exposed actor --------------------------------

struct bridge_state {
  ~bridge_state() {
    if (lnk)
      lnk->shutdown();
  }
  std::shared_ptr<link> lnk;
  static inline const char* name = "ipc_bridge";
};

using bridge_actor = caf::stateful_actor<bridge_state>;

caf::behavior bridge(bridge_actor* self, std::shared_ptr<link> lnk,
                     caf::actor target, remote_options opts) {
  self->state.lnk = lnk;
  self->monitor(target);
  self->set_down_handler([=](caf::down_msg& dm) { self->quit(dm.reason); });
  // Replies to asynchronous messages come back here; nobody asked for them.
  self->set_default_handler(caf::drop);
  return {
      [=](inbound_atom, const std::vector<char>& raw) {
        auto bytes = std::as_bytes(std::span{raw.data(), raw.size()});
        auto frame = decode_frame(bytes, lnk->ch.max_frame());
        if (!frame)
          return;
        auto msg = decode_message(self->system(), frame->payload);
        auto id = frame->id;
        if (!msg) {
          if (frame->kind == frame_kind::request)
            (void)lnk->send_message(self->system(), frame_kind::error_response,
                                    id, error_payload(msg.error()));
          return;
        }
        if (frame->kind == frame_kind::message) {
          self->send(target, std::move(*msg));
          return;
        }
        if (frame->kind != frame_kind::request)
          return;
        // CAF 0.17 has no catch-all response handler: a reply that matches no
        // handler arrives as sec::unexpected_response carrying the reply.
        self->request(target, opts.request_timeout, std::move(*msg))
            .then(
                [=](caf::unit_t) {
                  (void)lnk->send_message(self->system(), frame_kind::response,
                                          id, caf::message{});
                },
                [=](caf::error& err) {
                  if (err == caf::sec::unexpected_response)
                    (void)lnk->send_message(self->system(),
                                            frame_kind::response, id,
                                            err.context());
                  else
                    (void)lnk->send_message(self->system(),
                                            frame_kind::error_response, id,
                                            error_payload(err));
                });
      },
      [=](link_down_atom, caf::error& err) { self->quit(err); },
  };
}

} // namespace

caf::expected<caf::actor> expose(caf::actor_system& sys, channel ch,
                                 caf::actor target, remote_options opts) {
  if (!target)
    return make_error(errc::invalid_argument, "expose needs a live actor");
  auto lnk = std::make_shared<link>(std::move(ch));
  auto hdl = sys.spawn(bridge, lnk, std::move(target), opts);
  lnk->start(sys, hdl);
  return hdl;
}

caf::expected<caf::actor> connect(caf::actor_system& sys, channel ch) {
  auto lnk = std::make_shared<link>(std::move(ch));
  auto hdl = sys.spawn(proxy, lnk);
  lnk->start(sys, hdl);
  return hdl;
}

} // namespace actorbus::ipc
