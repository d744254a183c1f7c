// The seed's "Concurrent Pipeline": a source, then stages, results out.
// Here each stage is an actor (the middle one runs 4 workers and keeps input
// order), queues are bounded by credit instead of unbounded, results stream
// to the sink as they are ready instead of after everything finished, a bad
// item is skipped and reported instead of killing its task, and the end of
// the data is a message of its own, not `None`.
//
// usage: pipeline [items=20]

#include "actorbus/pipeline/pipeline.hpp"
#include "actorbus/runtime/error.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "command_line.hpp"

#include <fmt/core.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace pipeline = actorbus::pipeline;
using actorbus::runtime::describe;
using namespace std::chrono_literals;

namespace {

struct result {
  int64_t input;
  int64_t square;
  std::string text;
};

} // namespace

int main(int argc, char** argv) {
  int64_t n = 20;
  CLI::App app{"A pipeline of actor stages with backpressure: parse, square "
               "(4 workers, ordered), format.",
               "pipeline"};
  app.add_option("items", n, "items from the source (item 13 is malformed)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  actorbus::runtime::runtime_config cfg;
  if (auto rc = actorbus::samples::parse_command_line(app, cfg, argc, argv))
    return *rc;
  actorbus::runtime::runtime rt{std::move(cfg)};
  // The source: an async iterator in the seed, a generator here. Item 13 is
  // malformed on purpose.
  int64_t next = 0;
  auto source = pipeline::from_generator<std::string>(
      [&next, n]() -> std::optional<std::string> {
        if (next == n)
          return std::nullopt;
        auto i = next++;
        return i == 13 ? "x13" : std::to_string(i);
      });
  int64_t count = 0;
  int64_t sum = 0;
  int64_t expected_next = 0;
  bool in_order = true;
  auto plan =
      std::move(source)
          .then("parse",
                [](std::string& s) -> int64_t {
                  std::size_t used = 0;
                  auto x = std::stoll(s, &used);
                  if (used != s.size())
                    throw std::invalid_argument("not a number");
                  return x;
                },
                {.on_error = pipeline::error_policy::skip()})
          .then("square", [](int64_t& x) { return std::make_pair(x, x * x); },
                {.parallelism = 4, .ordered = true})
          .then("format",
                [](std::pair<int64_t, int64_t>& p) {
                  return result{p.first, p.second,
                                fmt::format("{} = {}^2", p.second, p.first)};
                })
          .to([&](result r) {
            // Streams in while the source is still producing.
            if (r.input == 14 && expected_next == 13)
              ++expected_next; // 13 was skipped
            in_order = in_order && r.input == expected_next;
            ++expected_next;
            if (count < 3 || r.input == n - 1)
              fmt::print("result {}: {}\n", r.input, r.text);
            ++count;
            sum += r.square;
          });
  auto run = std::move(plan).run(
      rt, {.batch = 16, .on_error = [&](const pipeline::item_error& e) {
             fmt::print("skipped an item in {}: {}\n", e.stage,
                        describe(e.error));
           }});
  if (!run) {
    fmt::print("cannot start: {}\n", describe(run.error()));
    return 1;
  }
  auto report = run->wait(caf::timespan{60s});
  if (!report) {
    fmt::print("pipeline did not finish in time\n");
    run->cancel();
    return 1;
  }
  fmt::print("{} results {}, sum {}\n", count,
             in_order ? "in input order" : "OUT OF ORDER", sum);
  for (auto& s : report->stages)
    fmt::print("stage {:<7} in {:>6} out {:>6} errors {} busy {:.2f} ms "
               "peak queue {}\n",
               s.name, s.in, s.out, s.errors,
               std::chrono::duration<double, std::milli>(s.busy).count(),
               s.peak_queue_depth);
  fmt::print("completed: {}\n", report->ok() ? "ok" : describe(report->error));
  return report->ok() && in_order ? 0 : 1;
}
