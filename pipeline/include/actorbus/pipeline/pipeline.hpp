#pragma once

// Pipelines: a source, a chain of stages and a sink, each an actor, joined by
// credit-based flow.
//
//   namespace pipeline = actorbus::pipeline;
//   int64_t total = 0;
//   auto plan = pipeline::from_iota(0, 1'000'000)
//                   .then("square", [](int64_t& x) { return x * x; },
//                         {.parallelism = 4, .ordered = true})
//                   .to([&](int64_t x) { total += x; });
//   auto run = std::move(plan).run(sys);
//   auto report = run->wait(std::chrono::seconds(10));
//
// Flow: a stage asks its upstream for items (credit); it never holds more
// than its `buffer` items (queued, being processed, waiting for downstream
// credit), so memory stays flat whatever the input size. The sink grants
// `sink_credit` items. Items travel in batches of at most `batch` items. A
// full buffer never drops or refuses an item, so there is no overload policy
// to choose: the stage just stops asking upstream.
// End of stream is a message of its own that follows the last batch; no
// value of the item type is reserved.
//
// Stages: a function of `In&` returning `Out`, `std::optional<Out>` (an empty
// optional drops the item: a filter) or `caf::expected<Out>` (an error is a
// failure of that item); a thrown exception is a failure too. Each of the
// `parallelism` workers of a stage holds its own copy of the function. An
// ordered stage emits results in input order (a reorder buffer); an unordered
// one as they complete. A failure applies the stage's error policy: skip (and
// report through `run_options::on_error`), retry (the item is passed again,
// so a function that may be retried must not move from its argument), send
// to the dead letters (a `failed_item` carrying the item), or abort the whole
// pipeline. Errors are `errc` codes (error.hpp); `runtime::describe(err)`
// prints them as "pipeline.item_failed: <what>".
//
// Completion: `pipeline_handle::wait` returns a report with per-stage
// statistics once every actor of the run has exited. Cancellation, a
// deadline or an abort stop every actor (upstream and downstream) and the
// report says why. Items are copied into CAF messages: item types must be
// copyable. Callbacks run on scheduler threads: the source and the sink are
// each called by one actor at a time; `on_error` and `on_dead_letter` may be
// called concurrently by the workers of different stages and must be
// thread-safe.

#include "actorbus/actors/retry.hpp"
#include "actorbus/pipeline/error.hpp"
#include "actorbus/pipeline/fwd.hpp"
#include "actorbus/runtime/fwd.hpp"

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include <any>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace actorbus::pipeline {

/// What a stage does with an item whose function failed.
enum class error_action {
  /// Drop the item, count it and report it through `run_options::on_error`.
  skip,
  /// Try the item again after `delay`, up to `attempts` tries in total (or
  /// as `backoff` says, when set), then apply `then`.
  retry,
  /// Hand the item to the dead letters (`run_options::on_dead_letter`, or
  /// the report), count and report it.
  dead_letter,
  /// Stop the whole pipeline; the report carries the item's error.
  abort,
};

/// A stage's error policy.
struct error_policy {
  error_action action = error_action::abort;
  /// Tries in total for `retry` (the first one included).
  std::size_t attempts = 1;
  /// Pause between two tries for `retry` (on the actor clock: no thread is
  /// blocked while waiting).
  caf::timespan delay{0};
  /// What `retry` does once the tries are used up (not `retry`).
  error_action then = error_action::dead_letter;
  /// For `retry`: the module's retry policy (exponential backoff, jitter,
  /// retry_if, deadline), replacing `attempts` and `delay` when set. Its
  /// pauses run on the actor clock.
  std::optional<actors::retry_policy> backoff = std::nullopt;

  static error_policy skip() {
    return {error_action::skip};
  }
  static error_policy dead_letter() {
    return {error_action::dead_letter};
  }
  static error_policy abort() {
    return {error_action::abort};
  }
  static error_policy retry(std::size_t attempts, caf::timespan delay,
                            error_action then = error_action::dead_letter) {
    return {error_action::retry, attempts, delay, then};
  }
  static error_policy retry(actors::retry_policy policy,
                            error_action then = error_action::dead_letter) {
    return {error_action::retry, policy.attempts, policy.backoff.min, then,
            std::move(policy)};
  }
};

/// Options of one stage.
struct stage_options {
  /// Workers (actors) running the stage function concurrently.
  std::size_t parallelism = 1;
  /// Whether results leave in input order when `parallelism > 1`.
  bool ordered = true;
  /// Items the stage holds at most; 0 means `4 * batch * parallelism`.
  /// Rounded up to at least one batch.
  std::size_t buffer = 0;
  error_policy on_error = error_policy::abort();
};

/// Statistics of one element of a run (source, stage or sink).
struct stage_stats {
  std::string name;
  /// Items received (the source: 0).
  uint64_t in = 0;
  /// Items sent downstream (the sink: 0).
  uint64_t out = 0;
  /// Items that failed for good (skipped, dead-lettered or aborting).
  uint64_t errors = 0;
  /// Extra tries made by a retry policy.
  uint64_t retries = 0;
  /// Items sent to the dead letters.
  uint64_t dead_letters = 0;
  /// Time spent in the user's functions, summed over workers.
  caf::timespan busy{0};
  /// Most items held at once (queued, in work, awaiting credit).
  std::size_t peak_queue_depth = 0;
};

/// A failed item, as reported to `run_options::on_error`.
struct item_error {
  std::string stage;
  caf::error error;
  /// Tries made.
  std::size_t attempts = 1;
  error_action action = error_action::skip;
};

/// An item a stage gave up on (a dead letter of the pipeline): what the
/// `dead_letter` action hands to `run_options::on_dead_letter` or keeps in
/// the report.
struct failed_item {
  std::string stage;
  caf::error error;
  /// The input item of the stage (`std::any_cast<In>` it).
  std::any item;
};

/// Options of one run.
struct run_options {
  /// Items per message at most.
  std::size_t batch = 64;
  /// Items the sink accepts before it has consumed them; 0 means
  /// `4 * batch`. Rounded up to at least one batch.
  std::size_t sink_credit = 0;
  /// Stops the run with `deadline_exceeded` after this long; 0: none.
  caf::timespan deadline{0};
  /// Called for every item that failed for good. May be empty.
  std::function<void(const item_error&)> on_error = nullptr;
  /// Receives dead letters; when empty they are kept in the report (up to
  /// `max_kept_dead_letters`; the count in the statistics is exact).
  std::function<void(failed_item)> on_dead_letter = nullptr;
  std::size_t max_kept_dead_letters = 10'000;
};

/// What a finished run did.
struct pipeline_report {
  /// Source first, then the stages in order, the sink last.
  std::vector<stage_stats> stages;
  /// Default (no error) when the stream ended normally; otherwise why the
  /// run stopped (cancelled, deadline_exceeded, an aborting item's error...).
  caf::error error;
  /// Dead letters kept when no `on_dead_letter` was given.
  std::vector<failed_item> dead_letters;
  caf::timespan elapsed{0};

  bool ok() const noexcept {
    return !error;
  }
};

namespace detail {

struct run_state;

// Type-erased parts of a plan, filled in by the templates below. Batches are
// `std::vector<T>` inside an `std::any`.

/// What a push source makes of one message its actor received.
enum class push_result {
  /// The message's item was appended to the batch.
  item,
  /// The message ends the stream (nothing was appended).
  end,
  /// The message carries no item of the source's type.
  rejected,
};

/// A source fed by messages sent to its actor (a bus topic): the actor
/// acknowledges a message (replies to its request) only once its item went
/// downstream, so a stalled pipeline stops the acknowledgements and the
/// sender's own bound applies.
struct push_spec {
  /// Called once by `run`, before it returns, with the source actor's
  /// handle; returns what keeps the feed alive (released when the actor
  /// exits). An error fails `run` with `source_failed`.
  std::function<caf::expected<std::shared_ptr<void>>(const caf::actor& self)>
      attach;
  /// Moves the item of `msg` into `batch`.
  std::function<push_result(caf::message& msg, std::any& batch)> take;
  /// Moves the first `n` items of `batch` into a new batch.
  std::function<std::any(std::any& batch, std::size_t n)> take_front;
  /// Ends the stream after this many items (0: no limit).
  std::size_t max_items = 0;
  /// Ends the stream after this long without a message (0: never).
  caf::timespan idle_timeout{0};
};

struct source_spec {
  std::string name = "source";
  /// Appends up to `max` items to the batch; returns how many (0: end).
  /// Empty for a push source.
  std::function<std::size_t(std::any& batch, std::size_t max)> pull;
  std::function<std::any(std::size_t reserve)> make_batch;
  caf::error error;
  std::optional<push_spec> push;
};

struct stage_spec {
  std::string name;
  stage_options opts;
  /// Processes in[from..] appending results to out; returns the index of the
  /// first failed item (setting `err`) or the size of `in`.
  std::function<std::size_t(std::any& in, std::size_t from, std::any& out,
                            caf::error& err)>
      process;
  std::function<std::any(std::size_t reserve)> make_batch;
  std::function<std::any(std::any& in, std::size_t i)> item_at;
  std::function<std::size_t(const std::any& batch)> size;
};

struct sink_spec {
  std::string name = "sink";
  std::function<void(std::any& batch)> consume;
};

struct plan_spec {
  source_spec source;
  std::vector<stage_spec> stages;
  sink_spec sink;
};

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};
template <class T>
struct is_expected : std::false_type {};
template <class T>
struct is_expected<caf::expected<T>> : std::true_type {};

template <class R>
struct unwrap {
  using type = R;
};
template <class T>
struct unwrap<std::optional<T>> {
  using type = T;
};
template <class T>
struct unwrap<caf::expected<T>> {
  using type = T;
};

caf::error error_from_exception(std::exception_ptr ep);

template <class T>
std::vector<T>& items(std::any& batch) {
  return *std::any_cast<std::vector<T>>(&batch);
}

template <class T>
std::any make_batch(std::size_t reserve) {
  std::vector<T> xs;
  xs.reserve(reserve);
  return std::any{std::move(xs)};
}

} // namespace detail

/// The output type of a stage function `F` applied to `In&`.
template <class F, class In>
using stage_output_t =
    typename detail::unwrap<std::decay_t<std::invoke_result_t<F&, In&>>>::type;

/// The running (or finished) pipeline. Copies share the same run; every
/// member may be called from any thread.
class pipeline_handle {
public:
  explicit pipeline_handle(std::shared_ptr<detail::run_state> state);

  /// Whether every actor of the run has exited.
  bool done() const;

  /// Waits until the run is done, at most `timeout`. Fails with
  /// `caf::sec::request_timeout` if it is not; otherwise the report (whose
  /// `error` says whether the stream ended normally).
  caf::expected<pipeline_report> wait(caf::timespan timeout) const;

  /// Stops the run: every actor exits, the report's error is `cancelled`.
  /// No effect on a finished run.
  void cancel() const;

  /// A snapshot of the statistics so far.
  std::vector<stage_stats> stats() const;

  /// The actors of the run (source, then each stage's coordinator and
  /// workers, the sink, the controller last); empty once done.
  std::vector<caf::actor> actors() const;

private:
  std::shared_ptr<detail::run_state> state_;
};

/// A pipeline ready to run: source, stages and sink.
class pipeline_plan {
public:
  explicit pipeline_plan(detail::plan_spec spec)
      : spec_(std::move(spec)) {
    // nop
  }

  /// Spawns the actors on `sys` and starts the flow. Fails for bad options
  /// (batch 0, parallelism 0) or a source that could not start.
  caf::expected<pipeline_handle> run(caf::actor_system& sys,
                                     run_options opts = {}) &&;

  /// Same, and tracks the actors so that the runtime's shutdown stops them.
  caf::expected<pipeline_handle> run(runtime::runtime& rt,
                                     run_options opts = {}) &&;

private:
  detail::plan_spec spec_;
};

/// Collects what reaches the sink. Read `items()` after the run is done.
template <class T>
class collector {
public:
  collector()
      : items_(std::make_shared<std::vector<T>>()) {
    // nop
  }

  std::vector<T>& items() noexcept {
    return *items_;
  }

  std::shared_ptr<std::vector<T>> storage() const noexcept {
    return items_;
  }

private:
  std::shared_ptr<std::vector<T>> items_;
};

/// A pipeline under construction whose items are of type `T`.
template <class T>
class flow {
public:
  explicit flow(detail::plan_spec spec)
      : spec_(std::move(spec)) {
    // nop
  }

  /// Appends a stage applying `f` to every item (see the file comment for
  /// what `f` may return).
  template <class F>
  flow<stage_output_t<F, T>> then(std::string name, F f,
                                  stage_options opts = {}) && {
    using out_t = stage_output_t<F, T>;
    using result_t = std::decay_t<std::invoke_result_t<F&, T&>>;
    detail::stage_spec st;
    st.name = std::move(name);
    st.opts = opts;
    st.process = [f = std::move(f)](std::any& in, std::size_t from,
                                    std::any& out,
                                    caf::error& err) mutable -> std::size_t {
      auto& xs = detail::items<T>(in);
      auto& ys = detail::items<out_t>(out);
      for (auto i = from; i < xs.size(); ++i) {
        try {
          if constexpr (detail::is_optional<result_t>::value) {
            auto r = f(xs[i]);
            if (r)
              ys.push_back(std::move(*r));
          } else if constexpr (detail::is_expected<result_t>::value) {
            auto r = f(xs[i]);
            if (!r) {
              err = std::move(r.error());
              return i;
            }
            ys.push_back(std::move(*r));
          } else {
            ys.push_back(f(xs[i]));
          }
        } catch (...) {
          err = detail::error_from_exception(std::current_exception());
          return i;
        }
      }
      return xs.size();
    };
    st.make_batch = &detail::make_batch<out_t>;
    st.item_at = [](std::any& in, std::size_t i) {
      return std::any{detail::items<T>(in)[i]};
    };
    st.size = [](const std::any& b) {
      return std::any_cast<const std::vector<out_t>&>(b).size();
    };
    spec_.stages.push_back(std::move(st));
    return flow<out_t>{std::move(spec_)};
  }

  /// Appends a stage keeping the items for which `pred` returns true.
  template <class Pred>
  flow<T> filter(std::string name, Pred pred, stage_options opts = {}) && {
    return std::move(*this).then(
        std::move(name),
        [pred = std::move(pred)](T& x) mutable -> std::optional<T> {
          if (pred(std::as_const(x)))
            return std::optional<T>{std::move(x)};
          return std::nullopt;
        },
        opts);
  }

  /// Ends with a sink calling `f(T&&)` for every item, in arrival order.
  template <class F>
  pipeline_plan to(F f) && {
    spec_.sink.consume = [f = std::move(f)](std::any& batch) mutable {
      for (auto& x : detail::items<T>(batch))
        f(std::move(x));
    };
    return pipeline_plan{std::move(spec_)};
  }

  /// Ends with a sink appending every item to `c`.
  pipeline_plan to(collector<T>& c) && {
    return std::move(*this).to(
        [out = c.storage()](T&& x) { out->push_back(std::move(x)); });
  }

private:
  detail::plan_spec spec_;
};

/// A source calling `next()` until it returns an empty optional.
template <class T>
flow<T> from_generator(std::function<std::optional<T>()> next) {
  detail::plan_spec spec;
  spec.source.pull = [next = std::move(next)](std::any& batch,
                                              std::size_t max) mutable {
    auto& xs = detail::items<T>(batch);
    std::size_t n = 0;
    for (; n < max; ++n) {
      auto x = next();
      if (!x)
        break;
      xs.push_back(std::move(*x));
    }
    return n;
  };
  spec.source.make_batch = &detail::make_batch<T>;
  return flow<T>{std::move(spec)};
}

/// A source of the elements of `xs`, in order.
template <class T>
flow<T> from_vector(std::vector<T> xs) {
  auto data = std::make_shared<std::vector<T>>(std::move(xs));
  std::size_t pos = 0;
  return from_generator<T>([data, pos]() mutable -> std::optional<T> {
    if (pos == data->size())
      return std::nullopt;
    return std::move((*data)[pos++]); // each element is read once
  });
}

/// A source of the integers in [first, last).
flow<int64_t> from_iota(int64_t first, int64_t last);

/// A source of the lines of a text file (without line terminators). The
/// file is opened here; a missing file makes `run` fail with
/// `source_failed`.
flow<std::string> from_lines(const std::string& path);

} // namespace actorbus::pipeline
