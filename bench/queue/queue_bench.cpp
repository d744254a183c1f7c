// End-to-end throughput and round trip of the Redis task queue: one private
// redis-server, worker *processes* (this binary re-executed with
// --queue-worker), a producer in this process. Peers doing the same job
// (Celery, RQ, BullMQ, redis-benchmark) are in bench/peers/queue_*.py.
//
// jobs/s = N no-op jobs / (time from the first enqueue until the last one is
// acknowledged), workers already running and idle at the start. Each
// benchmark runs N jobs 3 times on the same workers and reports the 3N
// jobs over the 3 runs' time, with the slowest and fastest run beside it:
// single runs of the same binary here spread by +-20% (42-60k jobs/s
// batched, one worker), more than most changes move them.
//   batched:   enqueue_many (pipelined), workers read and ack 256 at a time
//   unbatched: one enqueue round trip per job, workers read and ack one job
//              at a time

#include "actorbus/queue/client.hpp"
#include "actorbus/queue/embedded_redis.hpp"
#include "actorbus/queue/worker.hpp"
#include "actorbus/runtime/runtime.hpp"
#include "actorbus/runtime/signals.hpp"

#include "latency.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <poll.h>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace q = actorbus::queue;
using namespace std::chrono_literals;

namespace {

constexpr int jobs = 100'000;

q::embedded_redis& redis() {
  static auto srv = [] {
    auto r = q::embedded_redis::start();
    if (!r) {
      std::fprintf(stderr, "cannot start redis-server\n");
      std::exit(1);
    }
    return std::move(*r);
  }();
  return *srv;
}

q::queue_config config(size_t batch) {
  q::queue_config cfg;
  cfg.url = redis().url();
  cfg.batch_size = batch;
  cfg.concurrency = 2;
  cfg.result_ttl = std::chrono::seconds{600};
  return cfg;
}

int worker_main(const std::string& url, size_t batch) {
  actorbus::runtime::signal_waiter signals;
  actorbus::runtime::runtime rt;
  q::queue_config cfg;
  cfg.url = url;
  cfg.batch_size = batch;
  cfg.concurrency = batch == 1 ? 1 : 2;
  q::worker w{rt, cfg};
  w.handle(
      "noop",
      [](q::task_context&, std::string_view) -> caf::expected<std::string> {
        return std::string{};
      });
  if (w.start())
    return 1;
  if (write(1, "r", 1) != 1)
    return 1;
  while (!signals.wait_for(1h)) {
  }
  w.stop(5s);
  return 0;
}

/// How often the threads of process `pid` went to sleep so far (voluntary
/// context switches, from /proc): each one is a wake-up later, the cost
/// that dominates a job's path on a virtual machine. Unlike CPU time, it
/// does not depend on how loaded the machine is.
double sleeps_of(long pid) {
  double total = 0;
  std::error_code ec;
  auto dir = "/proc/" + std::to_string(pid) + "/task";
  for (auto& task : std::filesystem::directory_iterator{dir, ec}) {
    std::ifstream in{task.path() / "status"};
    for (std::string line; std::getline(in, line);)
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0)
        total += std::strtod(line.c_str() + 24, nullptr);
  }
  return total;
}

/// Worker processes, ready when constructed, stopped when destroyed.
class worker_processes {
public:
  worker_processes(int n, size_t batch) {
    for (int i = 0; i < n; ++i) {
      int fds[2];
      if (pipe(fds) != 0)
        std::exit(1);
      std::string url = redis().url();
      std::string b = std::to_string(batch);
      std::vector<char*> argv{const_cast<char*>("bench_queue_jobs"),
                              const_cast<char*>("--queue-worker"), url.data(),
                              b.data(), nullptr};
      auto pid = fork();
      if (pid == 0) {
        dup2(fds[1], 1);
        execv("/proc/self/exe", argv.data());
        _exit(127);
      }
      close(fds[1]);
      pollfd p{fds[0], POLLIN, 0};
      char c = 0;
      if (poll(&p, 1, 10'000) != 1 || read(fds[0], &c, 1) != 1) {
        std::fprintf(stderr, "worker process did not start\n");
        std::exit(1);
      }
      close(fds[0]);
      pids_.push_back(pid);
    }
  }

  ~worker_processes() {
    for (auto pid : pids_)
      kill(pid, SIGTERM);
    for (auto pid : pids_)
      waitpid(pid, nullptr, 0);
  }

  /// CPU time (user and system, all threads) the worker processes used
  /// so far, from /proc/<pid>/stat.
  double cpu_seconds() const {
    double total = 0;
    for (auto pid : pids_) {
      std::ifstream in{"/proc/" + std::to_string(pid) + "/stat"};
      std::string text{std::istreambuf_iterator<char>{in}, {}};
      // Fields after the parenthesised command name: state is the 3rd
      // field, utime and stime the 14th and 15th.
      std::istringstream rest{text.substr(text.rfind(')') + 2)};
      std::string x;
      double utime = 0;
      double stime = 0;
      for (int i = 3; i <= 13; ++i)
        rest >> x;
      rest >> utime >> stime;
      total += (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
    }
    return total;
  }

  double sleeps() const {
    double total = 0;
    for (auto pid : pids_)
      total += sleeps_of(pid);
    return total;
  }

private:
  std::vector<pid_t> pids_;
};

/// Server-side cost of a run, read from INFO: commands executed (including
/// those run inside Lua scripts) and redis-server CPU time. Per job these
/// do not depend on how loaded the machine is.
struct redis_usage {
  double calls = 0;
  double cpu_s = 0;
  double sleeps = 0;

  static double field(const std::string& text, const std::string& name) {
    auto pos = text.find(name);
    if (pos == std::string::npos)
      return 0;
    return std::strtod(text.c_str() + pos + name.size(), nullptr);
  }

  static redis_usage read(q::client& c) {
    redis_usage out;
    auto stats = c.command({"INFO", "commandstats"});
    auto cpu = c.command({"INFO", "cpu"});
    if (!stats || !cpu)
      return out;
    // Lines look like: cmdstat_xadd:calls=3,usec=...; the measurement's
    // own commands (INFO, CONFIG, the drain poll's script and what it
    // calls, which no job needs) are left out.
    std::istringstream in{*stats};
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("cmdstat_", 0) != 0 ||
          line.rfind("cmdstat_info:", 0) == 0 ||
          line.rfind("cmdstat_config", 0) == 0 ||
          line.rfind("cmdstat_xinfo", 0) == 0 ||
          line.rfind("cmdstat_exists:", 0) == 0 ||
          line.rfind("cmdstat_zcard:", 0) == 0)
        continue;
      out.calls += field(line, "calls=");
      if (std::getenv("QUEUE_BENCH_VERBOSE") != nullptr)
        std::fprintf(stderr, "  %s\n", line.c_str());
    }
    out.cpu_s = field(*cpu, "used_cpu_sys:") + field(*cpu, "used_cpu_user:");
    if (auto server = c.command({"INFO", "server"}))
      out.sleeps = sleeps_of(static_cast<long>(field(*server, "process_id:")));
    return out;
  }
};

/// Drain polls (one backlog script call each) since the last reset.
int polls = 0;

void report_usage(benchmark::State& state, const redis_usage& before,
                  const redis_usage& after, double n) {
  state.counters["redis_cmds_per_job"] =
      (after.calls - before.calls - polls) / n;
  polls = 0;
  state.counters["redis_cpu_us_per_job"] =
      (after.cpu_s - before.cpu_s) * 1e6 / n;
  state.counters["redis_sleeps_per_job"] = (after.sleeps - before.sleeps) / n;
}

/// Polls the backlog until it is empty. The poll (a script reading the
/// consumer groups) takes Redis time from the workers, so it runs at most
/// every 5 ms, and sooner only when few tasks are left: the end of a run is
/// seen at most 5 ms late (0.05% of a 10 s run).
void wait_drained(q::client& c) {
  for (;;) {
    ++polls;
    auto n = c.backlog();
    if (!n || *n == 0)
      return;
    std::this_thread::sleep_for(*n < 100 ? 1ms : 5ms);
  }
}

void run_jobs(benchmark::State& state, int workers, bool batched) {
  auto batch = batched ? size_t{256} : size_t{1};
  auto producer = q::client::connect(config(batch));
  if (!producer) {
    state.SkipWithError("cannot connect");
    return;
  }
  std::vector<std::string> payloads(jobs);
  redis_usage before;
  redis_usage after;
  {
    worker_processes procs{workers, batch};
    producer->command({"CONFIG", "RESETSTAT"});
    before = redis_usage::read(*producer);
    auto worker_sleeps = procs.sleeps();
    auto producer_sleeps = sleeps_of(getpid());
    polls = 0;
    std::vector<double> rates;
    for (auto _ : state) {
      auto started = std::chrono::steady_clock::now();
      if (batched) {
        if (!producer->enqueue_many("noop", payloads)) {
          state.SkipWithError("enqueue failed");
          return;
        }
      } else {
        for (int i = 0; i < jobs; ++i)
          if (!producer->enqueue_payload("noop", "")) {
            state.SkipWithError("enqueue failed");
            return;
          }
      }
      auto enqueued = std::chrono::steady_clock::now();
      wait_drained(*producer);
      rates.push_back(jobs / std::chrono::duration<double>(
                                 std::chrono::steady_clock::now() - started)
                                 .count());
      if (std::getenv("QUEUE_BENCH_VERBOSE") != nullptr)
        std::fprintf(stderr, "  drained %.0f ms after the last enqueue\n",
                     std::chrono::duration<double, std::milli>(
                         std::chrono::steady_clock::now() - enqueued)
                         .count());
    }
    // Taken before the last INFO calls (the drain polls are in it though).
    producer_sleeps = sleeps_of(getpid()) - producer_sleeps;
    state.counters["slowest_run_jobs_per_second"] =
        *std::min_element(rates.begin(), rates.end());
    state.counters["fastest_run_jobs_per_second"] =
        *std::max_element(rates.begin(), rates.end());
    after = redis_usage::read(*producer);
    auto runs =
        static_cast<double>(jobs) * static_cast<double>(state.iterations());
    state.counters["worker_sleeps_per_job"] =
        (procs.sleeps() - worker_sleeps) / runs;
    state.counters["producer_sleeps_per_job"] = producer_sleeps / runs;
    state.counters["worker_cpu_us_per_job"] = procs.cpu_seconds() * 1e6 / runs;
  }
  state.SetItemsProcessed(state.iterations() * jobs);
  report_usage(state, before, after,
               static_cast<double>(state.iterations()) * jobs);
  // Start the next benchmark from an empty database.
  producer->command({"FLUSHALL"});
}

void jobs_1w_batched(benchmark::State& s) {
  run_jobs(s, 1, true);
}
void jobs_2w_batched(benchmark::State& s) {
  run_jobs(s, 2, true);
}
void jobs_1w_unbatched(benchmark::State& s) {
  run_jobs(s, 1, false);
}
void jobs_2w_unbatched(benchmark::State& s) {
  run_jobs(s, 2, false);
}

void rtt(benchmark::State& state) {
  auto producer = q::client::connect(config(256));
  if (!producer) {
    state.SkipWithError("cannot connect");
    return;
  }
  actorbus::bench::latency_samples samples;
  redis_usage before;
  redis_usage after;
  {
    worker_processes procs{1, 256};
    producer->command({"CONFIG", "RESETSTAT"});
    before = redis_usage::read(*producer);
    auto worker_sleeps = procs.sleeps();
    polls = 0;
    for (auto _ : state) {
      samples.measure([&] {
        auto info = producer->run("noop", "", {}, 5s);
        if (!info || info->status != q::task_status::succeeded)
          state.SkipWithError("round trip failed");
      });
    }
    after = redis_usage::read(*producer);
    state.counters["worker_sleeps_per_job"] =
        (procs.sleeps() - worker_sleeps) /
        static_cast<double>(state.iterations());
  }
  samples.report(state);
  report_usage(state, before, after, static_cast<double>(state.iterations()));
  producer->command({"FLUSHALL"});
}

} // namespace

BENCHMARK(jobs_1w_batched)
    ->Name("queue_jobs_1w/actorbus_batched")
    ->Iterations(3)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(jobs_2w_batched)
    ->Name("queue_jobs_2w/actorbus_batched")
    ->Iterations(3)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(jobs_1w_unbatched)
    ->Name("queue_jobs_1w/actorbus_unbatched")
    ->Iterations(3)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(jobs_2w_unbatched)
    ->Name("queue_jobs_2w/actorbus_unbatched")
    ->Iterations(3)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(rtt)
    ->Name("queue_rtt/actorbus")
    ->Iterations(3000)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

int main(int argc, char** argv) {
  if (argc >= 4 && std::string{argv[1]} == "--queue-worker")
    return worker_main(argv[2], std::strtoul(argv[3], nullptr, 10));
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
