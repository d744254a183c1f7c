#pragma once

// Actors across processes. One process exposes an actor over a channel;
// the process at the other end connects and gets a local `caf::actor` that
// stands for it: `send` and `request` work with the same types and API as
// for a local actor. Messages are serialized with CAF's binary serializer
// behind the frame layer (frame.hpp), so their types must be registered on
// both sides (`cfg.add_message_type<T>("name")`) and be on the frame
// layer's allow-list (no actor handles, groups or nested messages).
//
// Failure: a request that gets no answer fails with CAF's own
// `sec::request_timeout` at the caller's deadline; when the other process
// dies or closes the channel, the local stand-in exits with reason
// `errc::peer_dead` / `errc::peer_closed` within the channel's liveness
// interval, failing its pending requests, so monitors get a down message.
// Lifetime: the returned actor owns the channel and a reader thread; keep
// its handle (CAF collects unreferenced actors, which closes the link).

#include "actorbus/ipc/channel.hpp"

#include <caf/actor.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>
#include <caf/timespan.hpp>

#include <chrono>

namespace actorbus::ipc {

/// How long the exposing side waits for its target to answer a request
/// from the other process before answering with an error (which also frees
/// the connecting side's bookkeeping for a caller that already timed out).
struct remote_options {
  caf::timespan request_timeout = std::chrono::seconds(5);
};

/// Serves `target` to the process at the other end of `ch`. Returns the
/// bridge actor; it exits when the other side goes away or `target` exits.
[[nodiscard]] caf::expected<caf::actor> expose(caf::actor_system& sys,
                                               channel ch, caf::actor target,
                                               remote_options opts = {});

/// Returns a local actor standing for the actor exposed at the other end
/// of `ch`.
[[nodiscard]] caf::expected<caf::actor> connect(caf::actor_system& sys,
                                                channel ch);

} // namespace actorbus::ipc
