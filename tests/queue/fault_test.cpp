// Fault injection: workers killed with SIGKILL at every stage of a task, and
// Redis crashing under running workers.

#include "actorbus/queue/client.hpp"
#include "actorbus/queue/detail/embedded_redis_testing.hpp"
#include "actorbus/queue/detail/worker_hooks.hpp"
#include "actorbus/queue/embedded_redis.hpp"
#include "actorbus/queue/worker.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "gate.hpp"
#include "timing.hpp"

#include <caf/detail/scope_guard.hpp>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <map>
#include <random>
#include <sstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace actorbus;
using namespace actorbus::queue;
using namespace std::chrono_literals;

namespace {

// Whole milliseconds of a duration.
int64_t ms(caf::timespan x) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(x).count();
}

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);)
    out.push_back(line);
  return out;
}

// Where a child worker kills itself; mid_handler is inside the handler,
// after it declared its effect.
enum class kill_point { before_handle, mid_handler, after_effect, after_ack };

constexpr std::array<const char*, 4> point_names{"before_handle", "mid_handler",
                                                 "after_effect", "after_ack"};

class fault_test : public ::testing::Test {
protected:
  void SetUp() override {
    auto srv = embedded_redis::start(true);
    ASSERT_TRUE(srv) << to_string(srv.error());
    redis = std::move(*srv);
    cfg.url = redis->url();
    cfg.visibility_timeout = 300ms;
    cfg.sweep_interval = 50ms;
    cfg.heartbeat_interval = 60ms;
    cfg.batch_size = 8;
    cfg.concurrency = 2;
    cfg.io_timeout = 500ms;
    auto c = client::connect(cfg);
    ASSERT_TRUE(c) << to_string(c.error());
    sut.emplace(std::move(*c));
  }

  void TearDown() override {
    for (auto pid : children) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }

  static caf::expected<std::string> apply(task_context& ctx, std::string_view) {
    ctx.add_effect({"INCR", "effect:" + std::string{ctx.id()}});
    return std::string{"applied"};
  }

  /// Forks a worker process that kills itself (SIGKILL) the `countdown`-th
  /// time it reaches `point`, or never with a countdown of 0.
  /// A worker with a slow handler (`hold`) and batches of one takes few
  /// tasks.
  pid_t spawn_worker(kill_point point, int countdown,
                     std::chrono::microseconds hold = 200us, size_t batch = 8) {
    auto pid = fork();
    if (pid != 0)
      return pid;
    alarm(300); // never outlive a failed test (long enough for ASan builds)
    {
      runtime::runtime rt;
      auto wcfg = cfg;
      wcfg.batch_size = batch;
      wcfg.concurrency = batch == 1 ? 1 : cfg.concurrency;
      worker w{rt, wcfg};
      auto left = std::make_shared<std::atomic<int>>(countdown);
      auto maybe_die = [left, countdown](kill_point at, kill_point want) {
        if (countdown > 0 && at == want && --*left == 0)
          raise(SIGKILL);
      };
      w.handle("apply", [=](task_context& ctx, std::string_view p) {
        auto result = apply(ctx, p);
        // Some time, so that kills land inside handlers too (asleep: a
        // spinning handler would starve the sweeps of other workers).
        std::this_thread::sleep_for(hold);
        maybe_die(kill_point::mid_handler, point);
        return result;
      });
      detail::on_fault_point(w, [=](detail::fault_point p) {
        switch (p) {
        case detail::fault_point::before_handle:
          maybe_die(kill_point::before_handle, point);
          break;
        case detail::fault_point::after_effect:
          maybe_die(kill_point::after_effect, point);
          break;
        case detail::fault_point::after_ack:
          maybe_die(kill_point::after_ack, point);
          break;
        }
      });
      // Starting connects to Redis within io_timeout; when this machine
      // stalls longer than that (seconds, under a parallel build), the
      // child tries again, as a process supervisor would restart it.
      for (int attempt = 1;; ++attempt) {
        auto err = w.start();
        if (!err)
          break;
        std::fprintf(stderr, "worker %d: start failed (attempt %d): %s\n",
                     static_cast<int>(getpid()), attempt,
                     to_string(err).c_str());
        if (attempt == 10)
          _exit(3);
      }
      for (;;)
        pause();
    }
  }

  /// Task ids that consumer `name` held when it died.
  std::vector<std::string> pending_of(const std::string& name) {
    std::vector<std::string> ids;
    auto pending = sut->command({"XPENDING", cfg.name_space + ":q:1", "workers",
                                 "-", "+", "1000", name});
    if (!pending)
      return ids;
    // Rendered as lines of 4 fields: entry, consumer, idle, deliveries.
    auto xs = lines(*pending);
    for (size_t i = 0; i + 3 < xs.size(); i += 4) {
      auto entry =
          sut->command({"XRANGE", cfg.name_space + ":q:1", xs[i], xs[i]});
      if (!entry)
        continue;
      auto fields = lines(*entry);
      for (size_t j = 1; j + 1 < fields.size(); j += 2)
        if (fields[j] == "id")
          ids.push_back(fields[j + 1]);
    }
    return ids;
  }

  /// Runs one task on a started worker (a handler for "apply"), so that the
  /// next one comes through its steady path (with one handler taking one
  /// task at a time, the handler actor acknowledges and reads the next task
  /// itself). The result is in Redis before the worker has read the
  /// acknowledgement's reply, so its counters may lag: not checked here.
  void warm_up() {
    auto id = sut->enqueue_payload("apply", "");
    ASSERT_TRUE(id);
    auto info = sut->wait(*id, test::patience);
    ASSERT_TRUE(info) << to_string(info.error());
    ASSERT_EQ(info->status, task_status::succeeded);
  }

  /// A started worker with one handler taking one task at a time: "block"
  /// tasks open `running` and wait for `release`, "apply" tasks apply their
  /// effect; warmed up, so the next task comes through the handler actor's
  /// own loop. The gates must outlive `rt`: the runtime waits for the
  /// handler actor, which may still be waking in `release`.
  std::unique_ptr<worker> one_at_a_time(runtime::runtime& rt,
                                        test::gate& running,
                                        test::gate& release) {
    cfg.batch_size = 1;
    cfg.concurrency = 1;
    auto w = std::make_unique<worker>(rt, cfg);
    w->handle(
        "block",
        [&](task_context&, std::string_view) -> caf::expected<std::string> {
          running.open();
          if (!release.pass())
            return caf::make_error(caf::sec::runtime_error, "never released");
          return std::string{"released"};
        });
    w->handle("apply", [](task_context& ctx, std::string_view p) {
      return apply(ctx, p);
    });
    EXPECT_FALSE(w->start());
    warm_up();
    return w;
  }

  std::unique_ptr<embedded_redis> redis;
  queue_config cfg;
  std::optional<client> sut;
  std::vector<pid_t> children;
};

TEST_F(fault_test,
       killing_workers_100_times_loses_no_task_and_applies_effects_once) {
  constexpr int tasks = 2000;
  constexpr int kills = 100;
  task_options opts;
  opts.max_attempts = 50;
  std::vector<std::string> payloads(tasks);
  auto ids = sut->enqueue_many("apply", payloads, opts);
  ASSERT_TRUE(ids) << to_string(ids.error());
  // Idempotency keys equal to the ids (set per task).
  ASSERT_TRUE(sut->command({"FLUSHDB"}));
  ids->clear();
  for (int i = 0; i < tasks; ++i) {
    opts.idempotency_key = "key-" + std::to_string(i);
    auto id = sut->enqueue_payload("apply", "", opts);
    ASSERT_TRUE(id);
    ids->push_back(*id);
  }
  std::mt19937 rng{20261125};
  char host[64] = {0};
  gethostname(host, sizeof host - 1);
  std::map<std::string, int64_t> died_holding; // task id -> last death
  std::array<int, 4> per_point{};
  auto spawn = [&] {
    auto point = static_cast<kill_point>(rng() % 4);
    int countdown = 1 + static_cast<int>(rng() % 3);
    auto pid = spawn_worker(point, countdown);
    children.push_back(pid);
    return std::make_pair(pid, point);
  };
  // One worker is never killed, so that recovery time measures reclaiming,
  // not the restart of a process.
  // It is slow, so that the others get most tasks.
  auto survivor = spawn_worker(kill_point::after_ack, 0, 20ms, 1);
  children.push_back(survivor);
  std::map<pid_t, kill_point> planned;
  for (int i = 0; i < 2; ++i) {
    auto [pid, point] = spawn();
    planned[pid] = point;
  }
  // How late a sleeping thread gets an answer from Redis on this machine
  // now: the yardstick of the scheduling tolerance below. A sweep is just
  // that (a thread waking at its sweep time, a round trip to Redis), and
  // the probe sees a stall of Redis as well as one of the scheduler.
  auto pinger = client::connect(cfg);
  ASSERT_TRUE(pinger) << to_string(pinger.error());
  std::atomic<bool> probing{true};
  std::atomic<int64_t> worst_wakeup_us{0};
  std::thread probe{[&] {
    while (probing) {
      auto t0 = std::chrono::steady_clock::now();
      std::this_thread::sleep_for(5ms);
      static_cast<void>(pinger->command({"PING"}));
      auto late = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - t0 - 5ms)
                      .count();
      if (late > worst_wakeup_us)
        worst_wakeup_us = late;
    }
  }};
  auto stop_probe = [&] {
    probing = false;
    if (probe.joinable())
      probe.join();
  };
  auto probe_guard = caf::detail::make_scope_guard(stop_probe);
  int deaths = 0;
  auto deadline = std::chrono::steady_clock::now() + 90s;
  while (deaths < kills && std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    auto pid = waitpid(-1, &status, 0);
    ASSERT_GT(pid, 0);
    ASSERT_NE(pid, survivor) << "the survivor died";
    auto when = unix_ms();
    std::erase(children, pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "a worker ended otherwise than by the injected SIGKILL: "
        << (WIFEXITED(status) ? "exit code " : "signal ")
        << (WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    ++deaths;
    ++per_point[static_cast<int>(planned[pid])];
    for (auto& id : pending_of(fmt::format("{}-{}-1", host, pid)))
      died_holding[id] = when;
    auto [next, point] = spawn();
    planned[next] = point;
  }
  ASSERT_EQ(deaths, kills) << "workers did not die often enough in time";
  // The workers still running die here too, and what they hold recovers
  // from now on: a task one of them reclaimed a moment ago from an earlier
  // death is reclaimed again, a visibility timeout after this kill.
  for (auto pid : children) {
    if (pid == survivor)
      continue;
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    auto when = unix_ms();
    for (auto& id : pending_of(fmt::format("{}-{}-1", host, pid)))
      died_holding[id] = when;
  }
  children = {survivor};
  // The survivor and one more healthy worker drain the rest.
  children.push_back(spawn_worker(kill_point::after_ack, 0));
  int succeeded = 0;
  int dead = 0;
  int acked_before_kill = 0;
  std::vector<int64_t> recoveries;
  for (auto& id : *ids) {
    auto info = sut->wait(id, 30s);
    ASSERT_TRUE(info) << "task " << id << " lost: " << to_string(info.error());
    auto effect = sut->command({"GET", "effect:" + id});
    ASSERT_TRUE(effect);
    if (info->status == task_status::succeeded) {
      ++succeeded;
      EXPECT_EQ(*effect, "1") << "effect of " << id << " applied " << *effect;
    } else {
      ASSERT_EQ(info->status, task_status::dead) << id;
      ++dead;
      EXPECT_EQ(*effect, "(nil)");
    }
    if (auto it = died_holding.find(id); it != died_holding.end()) {
      // Redis stamps a task's hash with the time it was reclaimed (rc).
      auto rc = sut->command({"HGET", cfg.name_space + ":t:" + id, "rc"});
      ASSERT_TRUE(rc);
      if (*rc == "(nil)" || std::stoll(*rc) < it->second) {
        // Its acknowledgement, written before the kill, reached Redis
        // after we listed the pending entries: nothing to recover.
        EXPECT_EQ(info->status, task_status::succeeded) << id;
        ++acked_before_kill;
        continue;
      }
      recoveries.push_back(std::stoll(*rc) - it->second);
    }
  }
  stop_probe();
  EXPECT_EQ(succeeded + dead, tasks);
  EXPECT_EQ(dead, 0);
  std::cout << "kills by point:";
  for (size_t i = 0; i < 4; ++i) {
    std::cout << ' ' << point_names[i] << '=' << per_point[i];
    EXPECT_GT(per_point[i], 0) << point_names[i];
  }
  std::sort(recoveries.begin(), recoveries.end());
  auto worst_recovery = recoveries.empty() ? 0 : recoveries.back();
  std::cout << "\ntasks held by a dying worker: " << died_holding.size()
            << " (acknowledged before the kill took effect: "
            << acked_before_kill << ")"
            << ", recovery (kill to reclaim) ms: median "
            << (recoveries.empty() ? 0 : recoveries[recoveries.size() / 2])
            << ", p95 "
            << (recoveries.empty() ? 0
                                   : recoveries[recoveries.size() * 95 / 100])
            << ", worst " << worst_recovery << "\n";
  EXPECT_FALSE(recoveries.empty());
  // Every task a dead worker held is reclaimed by the first sweep after its
  // lease ran out: its lease was last renewed before the kill, so it is
  // stale at kill + visibility timeout at the latest, and every worker
  // sweeps every sweep interval (its waits end at the next sweep). The
  // kill time is taken when waitpid returns, after the real kill. The
  // tolerance covers the scheduling of one sweep: three times the worst
  // delay the probe measured in this run (a wake-up and a Redis round
  // trip), plus 5 ms to run it. Under no load that is a few ms; on a
  // 2-core machine shared with builds it is what the machine does to every
  // process.
  auto scheduling_tolerance =
      std::chrono::milliseconds{3 * worst_wakeup_us / 1000 + 5};
  std::cout << "worst probe delay " << worst_wakeup_us / 1000
            << " ms, so the bound is " << ms(cfg.visibility_timeout) << " + "
            << ms(cfg.sweep_interval) << " + " << scheduling_tolerance.count()
            << " ms\n";
  auto bound =
      ms(cfg.visibility_timeout + cfg.sweep_interval + scheduling_tolerance);
  ASSERT_FALSE(recoveries.empty());
  EXPECT_LE(worst_recovery, bound);
}

TEST_F(
    fault_test,
    workers_reconnect_after_redis_restarts_and_nothing_acknowledged_is_lost) {
  runtime::runtime rt;
  worker w{rt, cfg};
  w.handle("apply",
           [](task_context& ctx, std::string_view p) { return apply(ctx, p); });
  ASSERT_FALSE(w.start());
  std::vector<std::string> ids;
  task_options opts;
  for (int i = 0; i < 200; ++i) {
    opts.idempotency_key = "before-" + std::to_string(i);
    ids.push_back(*sut->enqueue_payload("apply", "", opts));
  }
  ASSERT_EQ(sut->wait(ids[50], 10s)->status, task_status::succeeded);
  std::vector<std::string> acked;
  for (auto& id : ids)
    if (sut->status(id)->status == task_status::succeeded)
      acked.push_back(id);
  actorbus::queue::detail::embedded_redis_testing::crash(*redis);
  ASSERT_FALSE(redis->restart());
  for (auto& id : acked) {
    auto info = sut->status(id);
    ASSERT_TRUE(info);
    EXPECT_EQ(info->status, task_status::succeeded) << id;
  }
  for (int i = 0; i < 200; ++i) {
    opts.idempotency_key = "after-" + std::to_string(i);
    ids.push_back(*sut->enqueue_payload("apply", "", opts));
  }
  for (auto& id : ids) {
    auto info = sut->wait(id, 20s);
    ASSERT_TRUE(info) << to_string(info.error());
    EXPECT_EQ(info->status, task_status::succeeded);
    EXPECT_EQ(sut->command({"GET", "effect:" + id}), std::string{"1"});
  }
  EXPECT_GE(w.stats().reconnects, 1u);
  w.stop();
}

TEST_F(fault_test,
       a_reclaim_records_who_took_the_task_but_taking_back_its_own_does_not) {
  runtime::runtime rt;
  worker w{rt, cfg};
  w.handle("apply",
           [](task_context& ctx, std::string_view p) { return apply(ctx, p); });
  auto orphan = sut->enqueue_payload("apply", "");
  auto own = sut->enqueue_payload("apply", "");
  ASSERT_TRUE(orphan && own);
  // The first entry goes to a consumer that then dies; the second to the
  // worker itself, as if it had read it and then missed its lease renewals.
  auto read_one = [&](const std::string& consumer) {
    return sut->command({"XREADGROUP", "GROUP", "workers", consumer, "COUNT",
                         "1", "STREAMS", cfg.name_space + ":q:1", ">"});
  };
  auto before = unix_ms();
  ASSERT_TRUE(read_one("dead-consumer"));
  ASSERT_TRUE(read_one(w.consumer()));
  ASSERT_FALSE(w.start());
  for (auto& id : {*orphan, *own}) {
    auto info = sut->wait(id, 30s);
    ASSERT_TRUE(info) << to_string(info.error());
    EXPECT_EQ(info->status, task_status::succeeded);
  }
  EXPECT_EQ(w.stats().reclaimed, 2u);
  auto field = [&](const std::string& id, const char* name) {
    auto v = sut->command({"HGET", cfg.name_space + ":t:" + id, name});
    return v ? *v : std::string{"error"};
  };
  EXPECT_EQ(field(*orphan, "rb"), w.consumer());
  auto rc = field(*orphan, "rc");
  ASSERT_NE(rc, "(nil)");
  // Not before its lease ran out (Redis's clock is this machine's).
  EXPECT_GE(std::stoll(rc) + 1, before + ms(cfg.visibility_timeout));
  EXPECT_EQ(field(*own, "rb"), "(nil)");
  EXPECT_EQ(field(*own, "rc"), "(nil)");
  w.stop();
}

TEST_F(fault_test,
       a_worker_busy_with_a_long_task_still_reclaims_for_dead_ones) {
  // One handler taking one task at a time: the worker's own task blocks
  // until released, and meanwhile a dead worker's task must be reclaimed
  // by this worker's sweeps.
  // The gates outlive the runtime (see one_at_a_time).
  test::gate running;
  test::gate release;
  runtime::runtime rt;
  auto w = one_at_a_time(rt, running, release);
  auto blocked = sut->enqueue_payload("block", "");
  ASSERT_TRUE(blocked);
  ASSERT_TRUE(running.pass());
  auto orphan = sut->enqueue_payload("apply", "");
  ASSERT_TRUE(orphan);
  ASSERT_TRUE(
      sut->command({"XREADGROUP", "GROUP", "workers", "dead-consumer", "COUNT",
                    "1", "STREAMS", cfg.name_space + ":q:1", ">"}));
  auto deadline = std::chrono::steady_clock::now() + cfg.visibility_timeout +
                  cfg.sweep_interval + test::slack(2s);
  while (w->stats().reclaimed == 0 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  EXPECT_EQ(w->stats().reclaimed, 1u)
      << "no sweep while the worker's only handler was busy";
  release.open();
  for (auto& id : {*blocked, *orphan}) {
    auto info = sut->wait(id, test::patience);
    ASSERT_TRUE(info) << to_string(info.error());
    EXPECT_EQ(info->status, task_status::succeeded);
  }
  w->stop();
}

TEST_F(fault_test, stop_keeps_its_deadline_while_the_only_handler_is_stuck) {
  // The gates outlive the runtime (see one_at_a_time).
  test::gate running;
  test::gate release;
  runtime::runtime rt;
  auto w = one_at_a_time(rt, running, release);
  auto id = sut->enqueue_payload("block", "");
  ASSERT_TRUE(id);
  ASSERT_TRUE(running.pass());
  auto t0 = std::chrono::steady_clock::now();
  w->stop(200ms);
  auto took = std::chrono::steady_clock::now() - t0;
  release.open();
  EXPECT_LT(took, 200ms + test::slack(2s));
  // Not acknowledged: it stays pending for another worker to reclaim.
  auto info = sut->status(*id);
  ASSERT_TRUE(info);
  EXPECT_NE(info->status, task_status::succeeded);
}

} // namespace
