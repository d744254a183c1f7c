// Exercise 4, "a concurrent pipeline for data processing": a web-server
// access log (Common Log Format) is read, parsed, filtered, enriched and
// aggregated by pipeline stages running in parallel (see log_pipeline.hpp),
// with bounded memory, then a report is written. The result is checked against
// a plain single-threaded loop over the same input.
//
// usage: data_pipeline [--input FILE | --generate SIZE] [--seed N]
//                      [--report FILE] [--keep-log FILE] [--no-check]
//   SIZE: bytes, with an optional K/M/G suffix (default 8M).

#include "actorbus/pipeline/pipeline.hpp"
#include "actorbus/runtime/error.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "access_log.hpp"
#include "command_line.hpp"
#include "log_pipeline.hpp"

#include <caf/expected.hpp>

#include <fmt/core.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

using actorbus::pipeline::pipeline_report;
using actorbus::runtime::describe;
using namespace std::chrono_literals;

namespace {

struct options {
  std::string input;
  uint64_t generate = 8u << 20;
  uint64_t seed = 1;
  std::string report;
  std::string keep_log;
  bool check = true;
};

std::optional<uint64_t> parse_size(std::string s) {
  uint64_t mult = 1;
  if (!s.empty()) {
    switch (s.back()) {
    case 'K':
    case 'k':
      mult = 1u << 10;
      break;
    case 'M':
    case 'm':
      mult = 1u << 20;
      break;
    case 'G':
    case 'g':
      mult = 1u << 30;
      break;
    }
    if (mult != 1)
      s.pop_back();
  }
  try {
    std::size_t used = 0;
    auto n = std::stoull(s, &used);
    if (used != s.size())
      return std::nullopt;
    return n * mult;
  } catch (...) {
    return std::nullopt;
  }
}

// Adds the sample's options to `app`, storing into `o`.
void add_options(CLI::App& app, options& o) {
  auto input = app.add_option("--input", o.input, "the access log to read")
                   ->check(CLI::ExistingFile);
  app.add_option_function<std::string>(
         "--generate",
         [&o](const std::string& s) {
           if (auto n = parse_size(s))
             o.generate = *n;
           else
             throw CLI::ValidationError("--generate",
                                        "'" + s + "' is not a size");
         },
         "generate a log of SIZE bytes (K/M/G suffix; default 8M)")
      ->type_name("SIZE")
      ->excludes(input);
  app.add_option("--seed", o.seed, "seed of the generated log")
      ->capture_default_str();
  app.add_option("--report", o.report, "write the report to FILE");
  app.add_option("--keep-log", o.keep_log, "keep the generated log in FILE");
  app.add_flag("!--no-check", o.check,
               "skip the comparison with the single-threaded loop");
}

void draw_progress(uint64_t done, uint64_t total, double secs) {
  constexpr int width = 40;
  auto frac = total == 0 ? 1.0 : std::min(1.0, double(done) / double(total));
  auto filled = static_cast<int>(frac * width);
  fmt::print("\r[{}{}] {:5.1f}% {:7.1f} MB/s", std::string(filled, '#'),
             std::string(width - filled, '.'), 100 * frac,
             secs > 0 ? double(done) / 1e6 / secs : 0.0);
  std::fflush(stdout);
}

} // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"Exercise 4: an access log parsed, filtered, enriched and "
               "aggregated by parallel pipeline stages into a report.",
               "data_pipeline"};
  add_options(app, o);
  actorbus::runtime::runtime_config cfg;
  if (auto rc = actorbus::samples::parse_command_line(app, cfg, argc, argv))
    return *rc;
  namespace fs = std::filesystem;
  std::string log_path = o.input;
  bool remove_log = false;
  if (log_path.empty()) {
    log_path = !o.keep_log.empty()
                   ? o.keep_log
                   : (fs::temp_directory_path() /
                      fmt::format("data_pipeline_{}.log", ::getpid()))
                         .string();
    remove_log = o.keep_log.empty();
    auto lines = access_log::generate(log_path, o.generate, o.seed);
    fmt::print("generated {} lines ({} bytes) into {}\n", lines,
               fs::file_size(log_path), log_path);
  }
  struct cleanup {
    std::string path;
    bool active;
    ~cleanup() {
      if (active) {
        std::error_code ec;
        fs::remove(path, ec);
      }
    }
  } guard{log_path, remove_log};

  access_log::chunk_reader reader{log_path, 256 * 1024};
  if (!reader.good()) {
    fmt::print(stderr, "cannot open '{}'\n", log_path);
    return 1;
  }
  const auto total_bytes = fs::file_size(log_path);
  auto bytes_read = reader.bytes_read();

  actorbus::runtime::runtime rt{std::move(cfg)};
  auto agg = std::make_shared<access_log::aggregate>();
  auto plan = access_log::make_plan(std::move(reader), agg);
  auto t0 = std::chrono::steady_clock::now();
  auto run = std::move(plan).run(rt, {.batch = 1});
  if (!run) {
    fmt::print(stderr, "cannot start: {}\n", describe(run.error()));
    return 1;
  }
  const bool tty = ::isatty(STDOUT_FILENO) == 1;
  auto secs = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
        .count();
  };
  caf::expected<pipeline_report> report{caf::error{}};
  for (auto deadline = t0 + 10min;;) {
    report = run->wait(caf::timespan{100ms});
    if (report)
      break;
    if (std::chrono::steady_clock::now() > deadline) {
      run->cancel();
      fmt::print(stderr, "\ngave up after 10 minutes\n");
      return 1;
    }
    if (tty)
      draw_progress(bytes_read->load(), total_bytes, secs());
  }
  auto elapsed = secs();
  if (tty) {
    draw_progress(total_bytes, total_bytes, elapsed);
    fmt::print("\n");
  }
  if (!report->ok()) {
    fmt::print(stderr, "pipeline failed: {}\n", describe(report->error));
    return 1;
  }
  const auto& st = report->stages;
  auto text = agg->report();
  fmt::print("{}", text);
  if (!o.report.empty()) {
    std::ofstream out{o.report, std::ios::binary};
    out << text;
    if (!out) {
      fmt::print(stderr, "cannot write '{}'\n", o.report);
      return 1;
    }
    fmt::print("report written to {}\n", o.report);
  }
  fmt::print("pipeline: {:.1f} MB in {:.3f} s, {:.1f} MB/s\n",
             double(total_bytes) / 1e6, elapsed,
             double(total_bytes) / 1e6 / elapsed);
  for (auto& s : st)
    fmt::print("  stage {:<9} in {:>9} out {:>9} errors {:>6} busy {:8.1f} ms "
               "peak queue {}\n",
               s.name, s.in, s.out, s.errors,
               std::chrono::duration<double, std::milli>(s.busy).count(),
               s.peak_queue_depth);
  if (o.check) {
    auto r0 = std::chrono::steady_clock::now();
    auto ref = access_log::reference_report(log_path);
    auto ref_secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - r0)
            .count();
    if (!ref || *ref != text) {
      fmt::print("reference: MISMATCH with the single-threaded result\n{}",
                 ref ? *ref : std::string{"(unreadable input)\n"});
      return 1;
    }
    fmt::print("reference: identical to the single-threaded loop ({:.3f} s)\n",
               ref_secs);
  }
  return 0;
}
