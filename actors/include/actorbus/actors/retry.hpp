#pragma once

// Retry with exponential backoff: the seed's `retry_async`, typed.
//
//   retry_policy policy{.attempts = 5, .backoff = {.min = 10ms, .max = 1s}};
//   policy.retry_if = [](const caf::error& e) {
//     return e == caf::sec::request_timeout;
//   };
//   // From inside an actor (the reply handler runs in `self`'s context):
//   retry_request<int>(self, flaky, policy, std::chrono::milliseconds(50),
//                      [](caf::expected<int> r) { ... }, compute_v, 7);
//   // From a plain thread (blocks, never longer than the policy allows):
//   caf::expected<int> r = retry_call<int>(sys, flaky, policy, 50ms, 7);
//   // Any callable returning caf::expected<T> (e.g. a pool task):
//   caf::expected<int> v = retry_invoke(policy, [&] { return try_once(); });
//
// Attempt n (n = 1 is the first) that fails with a retryable error is
// followed, after `backoff.random_delay(n - 1)`, by attempt n + 1, as long
// as fewer than `attempts` were made and the next attempt would start before
// the overall `deadline` (measured from the first attempt). The pause before
// retry k (k = 0 for the first retry) is the one `runtime::backoff` of
// actorbus: `min(max, min * multiplier^k)`, spread uniformly by +/- `jitter`
// (0.2 means 80%..120%) and never above `max`; its `reset_after` does not
// apply (a retried operation has no run that could count as stable). When
// retries stop, the caller gets the last error
// unchanged; a non-retryable error is returned at once. Delays inside actors
// use the actor clock, so they run on virtual time under the deterministic
// scheduler; the thread forms sleep on the steady clock.

#include "actorbus/runtime/backoff.hpp"
#include "actorbus/runtime/call.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/expected.hpp>
#include <caf/sec.hpp>
#include <caf/timespan.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>

namespace actorbus::actors {

/// When and how often a failed operation is tried again.
/// A plain value: copy it freely; it holds no state between operations.
struct retry_policy {
  /// Tries in total, the first one included (1 = no retry). Must be >= 1.
  std::size_t attempts = 3;

  /// Pause between attempts: retry k (0 = first) waits
  /// `backoff.random_delay(k)`.
  runtime::backoff backoff;

  /// Which errors are worth another try; empty means every error.
  std::function<bool(const caf::error&)> retry_if;

  /// Overall budget from the start of the first attempt; a retry that would
  /// start after it is not made. Zero means no deadline.
  caf::timespan deadline = caf::timespan{0};

  /// `caf::sec::invalid_argument` naming the field
  /// ("retry_policy.attempts: must be at least 1",
  /// "retry_policy.backoff.jitter: must lie in [0, 1]") when a field is out
  /// of range, no error when valid.
  [[nodiscard]] caf::error validate() const;

  /// True when `err` may be retried under this policy.
  [[nodiscard]] bool is_retryable(const caf::error& err) const {
    return !retry_if || retry_if(err);
  }

  /// Decides whether attempt `made` (1-based) that failed with `err`, at
  /// `elapsed` since the first attempt, is followed by another one; returns
  /// the pause before it, or nothing when the operation must give up.
  [[nodiscard]] std::optional<caf::timespan>
  next(std::size_t made, const caf::error& err, caf::timespan elapsed) const;
};

/// Calls `fn()` (returning `caf::expected<T>`) until it succeeds or the
/// policy gives up, sleeping on the steady clock between attempts. Returns
/// the first value or the last error. Blocks the calling thread: never call
/// it inside an actor handler. An invalid policy yields its error untried.
template <class F>
auto retry_invoke(const retry_policy& policy, F&& fn) -> decltype(fn()) {
  if (auto err = policy.validate())
    return err;
  auto start = std::chrono::steady_clock::now();
  for (std::size_t made = 1;; ++made) {
    auto res = fn();
    if (res)
      return res;
    auto elapsed = std::chrono::duration_cast<caf::timespan>(
        std::chrono::steady_clock::now() - start);
    auto pause = policy.next(made, res.error(), elapsed);
    if (!pause)
      return res;
    std::this_thread::sleep_for(*pause);
  }
}

namespace detail {

using retry_atom = caf::atom_constant<caf::atom("abRetry")>;
inline constexpr retry_atom retry_v{};

} // namespace detail

/// Sends `xs...` to `dest` from a plain thread, waiting at most `per_try`
/// for each reply of type `T` (void for an empty reply), retried by
/// `policy`. Returns the reply or the last error.
template <class T, class... Ts>
caf::expected<T> retry_call(caf::actor_system& sys, const caf::actor& dest,
                            const retry_policy& policy, caf::timespan per_try,
                            const Ts&... xs) {
  auto request = caf::make_message(xs...);
  runtime::caller caller{sys};
  return retry_invoke(policy, [&]() -> caf::expected<T> {
    return runtime::reply_as<T>(caller.call_impl(
        caf::actor_cast<caf::strong_actor_ptr>(dest), request, per_try));
  });
}

/// Sends `xs...` to `dest` from inside actor `self`, waiting at most
/// `per_try` for each reply of type `T`, retried by `policy` with pauses on
/// the actor clock (virtual time under the deterministic scheduler). Calls
/// `on_done(caf::expected<T>)` exactly once, in `self`'s context. Nothing
/// blocks: `self` keeps handling other messages meanwhile. The attempts are
/// driven by a small helper actor that `self` monitors implicitly through
/// its request; if `self` exits first, the helper stops after its current
/// attempt.
template <class T, class Self, class F, class... Ts>
void retry_request(Self* self, caf::actor dest, retry_policy policy,
                   caf::timespan per_try, F on_done, Ts... xs) {
  static_assert(!std::is_void_v<T>, "retry_request: use caf::unit_t for void");
  if (auto err = policy.validate()) {
    on_done(caf::expected<T>{std::move(err)});
    return;
  }
  // Everything goes in as spawn arguments: CAF 0.17 trips UBSan on function
  // actors spawned without any.
  auto helper = self->system().spawn(
      [](caf::event_based_actor* h, caf::actor dest, retry_policy policy,
         caf::timespan per_try, caf::message request) -> caf::behavior {
        struct state {
          std::size_t made = 0;
          caf::actor_clock::time_point start;
          caf::typed_response_promise<T> rp;
        };
        auto st = std::make_shared<state>();
        auto attempt = [h, st, dest, per_try, request, policy] {
          ++st->made;
          h->request(dest, per_try, request)
              .then([st](T& x) mutable { st->rp.deliver(std::move(x)); },
                    [h, st, policy](caf::error& err) {
                      auto elapsed = h->clock().now() - st->start;
                      auto pause = policy.next(st->made, err, elapsed);
                      if (!pause) {
                        st->rp.deliver(std::move(err));
                        return;
                      }
                      h->delayed_send(h, *pause, detail::retry_v);
                    });
        };
        return {
            [h, st, attempt](caf::get_atom) -> caf::result<T> {
              st->start = h->clock().now();
              st->rp = h->template make_response_promise<T>();
              attempt();
              return st->rp;
            },
            [st, attempt](detail::retry_atom) {
              if (st->rp.pending())
                attempt();
            },
        };
      },
      dest, policy, per_try, caf::make_message(std::move(xs)...));
  self->request(helper, caf::infinite, caf::get_atom::value)
      .then(
          [on_done, helper](T& x) mutable {
            caf::anon_send_exit(helper, caf::exit_reason::user_shutdown);
            on_done(caf::expected<T>{std::move(x)});
          },
          [on_done, helper](caf::error& err) mutable {
            caf::anon_send_exit(helper, caf::exit_reason::user_shutdown);
            on_done(caf::expected<T>{std::move(err)});
          });
}

} // namespace actorbus::actors
