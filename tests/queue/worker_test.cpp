#include "actorbus/queue/worker.hpp"

#include "actorbus/queue/client.hpp"
#include "actorbus/queue/detail/embedded_redis_testing.hpp"
#include "actorbus/queue/detail/worker_hooks.hpp"
#include "actorbus/queue/embedded_redis.hpp"
#include "actorbus/runtime/runtime.hpp"

#include "gate.hpp"

#include <caf/after.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/system_messages.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <sstream>
#include <sys/resource.h>
#include <thread>
#include <vector>

using namespace actorbus;
using namespace actorbus::queue;
using namespace std::chrono_literals;

namespace {

/// CPU time this process has used so far (all its threads).
std::chrono::microseconds process_cpu_time() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto us = [](const timeval& tv) {
    return std::chrono::seconds{tv.tv_sec} +
           std::chrono::microseconds{tv.tv_usec};
  };
  return us(ru.ru_utime) + us(ru.ru_stime);
}

class worker_test : public ::testing::Test {
protected:
  void SetUp() override {
    auto srv = embedded_redis::start();
    ASSERT_TRUE(srv) << to_string(srv.error());
    redis = std::move(*srv);
    cfg.url = redis->url();
    cfg.visibility_timeout = 2s;
    cfg.sweep_interval = 20ms;
    auto c = client::connect(cfg);
    ASSERT_TRUE(c) << to_string(c.error());
    producer.emplace(std::move(*c));
    make_sut();
  }

  /// A new `sut` with `cfg`, taking "add" tasks.
  void make_sut() {
    sut = std::make_unique<worker>(rt, cfg);
    sut->handle_typed<int, int>(
        "add", [](task_context&, int a, int b) -> caf::expected<std::string> {
          return encode(a + b);
        });
  }

  /// Makes and starts `sut` with `cfg`, runs one task on it, and returns
  /// the handler actor that ran it.
  caf::actor started_handler() {
    make_sut();
    EXPECT_FALSE(sut->start());
    EXPECT_EQ(wait_for(*producer->enqueue("add", {}, 1, 2)).status,
              task_status::succeeded);
    return handler("handler-0");
  }

  void TearDown() override {
    if (sut)
      sut->stop();
  }

  /// The current actor of the supervisor's child `id` (invalid while it
  /// restarts).
  caf::actor handler(const std::string& id) {
    caf::scoped_actor self{rt.system()};
    caf::actor out;
    self->request(sut->handler_supervisor(), 5s, caf::get_atom::value, id)
        .receive([&](caf::actor& a) { out = std::move(a); },
                 [&](caf::error& err) { ADD_FAILURE() << to_string(err); });
    return out;
  }

  /// Starts `sut` with one handler actor taking one task at a time; its
  /// "echo" task counts its runs in `runs` and fulfils `reached` at run
  /// `at`.
  void start_echo_one_at_a_time(std::atomic<int>& runs, int at,
                                std::promise<void>& reached) {
    cfg.concurrency = 1;
    cfg.batch_size = 1;
    sut = std::make_unique<worker>(rt, cfg);
    sut->handle("echo",
                [&runs, at, &reached](task_context&, std::string_view p)
                    -> caf::expected<std::string> {
                  if (++runs == at)
                    reached.set_value();
                  return std::string{p};
                });
    ASSERT_FALSE(sut->start());
  }

  /// Starts `sut` with one handler actor taking one task at a time (tasks
  /// "stuck" and "add"), enqueues a "stuck" task with `opts` (its id in
  /// `id`) and returns once it runs; it waits for `release` (at most 30 s).
  void start_stuck_one_at_a_time(std::shared_ptr<test::gate> release,
                                 task_options opts = {},
                                 std::string* id = nullptr) {
    cfg.concurrency = 1;
    cfg.batch_size = 1;
    make_sut();
    auto running = std::make_shared<test::gate>();
    sut->handle(
        "stuck",
        [running, release](task_context&,
                           std::string_view) -> caf::expected<std::string> {
          running->open();
          if (!release->pass())
            return caf::make_error(caf::sec::runtime_error, "never released");
          return std::string{"released"};
        });
    ASSERT_FALSE(sut->start());
    auto stuck = producer->enqueue_payload("stuck", "", opts);
    ASSERT_TRUE(stuck);
    if (id != nullptr)
      *id = *stuck;
    ASSERT_TRUE(running->pass());
  }

  /// What "log" tasks saw: their payloads in the order they ran, and when.
  struct run_log {
    std::mutex mtx;
    std::vector<std::string> order;
    std::map<std::string, std::chrono::steady_clock::time_point> ran_at;
  };

  /// Makes `sut` with one handler actor taking "log" tasks, which record
  /// their payload in `logged` (it outlives `sut`) and return it.
  void make_logging_sut() {
    cfg.concurrency = 1;
    sut = std::make_unique<worker>(rt, cfg);
    sut->handle("log",
                [&log = logged](task_context&, std::string_view p)
                    -> caf::expected<std::string> {
                  std::lock_guard<std::mutex> guard{log.mtx};
                  log.order.emplace_back(p);
                  log.ran_at[std::string{p}] = std::chrono::steady_clock::now();
                  return std::string{p};
                });
  }

  /// Starts `sut` taking one task at a time, with tasks "add", "hold"
  /// (runs until `release` opens; `held_running` opens when it starts) and
  /// "once" (counts its runs in `runs`).
  void start_hold_and_once(std::atomic<int>& runs,
                           std::shared_ptr<test::gate> release) {
    cfg.concurrency = 1;
    cfg.batch_size = 1;
    make_sut();
    held_running = std::make_shared<test::gate>();
    sut->handle("hold",
                [running = held_running,
                 release](task_context&,
                          std::string_view) -> caf::expected<std::string> {
                  running->open();
                  if (!release->pass())
                    return caf::make_error(caf::sec::runtime_error, "stuck");
                  return std::string{"held"};
                });
    sut->handle(
        "once",
        [&runs](task_context&, std::string_view) -> caf::expected<std::string> {
          ++runs;
          return std::string{"done"};
        });
    ASSERT_FALSE(sut->start());
  }

  /// Enqueues "hold", waits until it runs (nothing more is read while it
  /// does), then enqueues "once" with a single attempt: it waits in the
  /// stream for the read sent with hold's acknowledgement. Their ids.
  std::pair<caf::expected<std::string>, caf::expected<std::string>>
  hold_then_enqueue_once() {
    auto held = producer->enqueue_payload("hold", "");
    if (!held || !held_running->pass())
      return {std::move(held), caf::make_error(caf::sec::runtime_error)};
    task_options one;
    one.max_attempts = 1;
    return {std::move(held), producer->enqueue_payload("once", "", one)};
  }

  /// Stops `sut` with `deadline` while a task is stuck: the stop keeps its
  /// deadline, and the reading thread sleeps between its looks at the task
  /// rather than spin (a spinning thread burns about one core throughout).
  void expect_stop_sleeps_for(std::chrono::milliseconds deadline) {
    auto wall0 = std::chrono::steady_clock::now();
    auto cpu0 = process_cpu_time();
    sut->stop(deadline);
    auto cpu = process_cpu_time() - cpu0;
    auto wall = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - wall0);
    EXPECT_GE(wall, deadline);
    EXPECT_LT(wall, deadline + 5s);
    EXPECT_LT(cpu * 4, wall) << "CPU " << cpu.count() << " us during a stop of "
                             << wall.count() << " us";
  }

  task_info wait_for(const std::string& id) {
    auto info = producer->wait(id, 10s);
    EXPECT_TRUE(info) << to_string(info.error());
    return info ? *info : task_info{};
  }

  /// The worker's counters move once its reading thread has taken in what
  /// happened (a handler's death, an acknowledgement's reply), which may be
  /// after a client has seen the result: waits, bounded, until `count()`
  /// reaches `n`, and returns it.
  template <class F>
  uint64_t reaches(F count, uint64_t n) {
    auto until = std::chrono::steady_clock::now() + 10s;
    while (count() < n && std::chrono::steady_clock::now() < until)
      std::this_thread::yield();
    return count();
  }

  /// Starts `sut` with one handler actor reading up to 8 tasks at once;
  /// its "echo" tasks log their payload in `logged` and return it with "@"
  /// and their attempt. The handler actor's fault hook is armed: at the
  /// first read that brings tasks, the reading thread kills the actor and
  /// sees it die before it hands it those tasks, so the actor never starts
  /// them.
  void start_echo_killing_its_handler_at_the_first_read() {
    cfg.concurrency = 1;
    cfg.batch_size = 8;
    sut = std::make_unique<worker>(rt, cfg);
    sut->handle("echo",
                [&log = logged](task_context& ctx, std::string_view p)
                    -> caf::expected<std::string> {
                  {
                    std::lock_guard<std::mutex> guard{log.mtx};
                    log.order.emplace_back(p);
                  }
                  return std::string{p} + "@" + std::to_string(ctx.attempt());
                });
    detail::on_fault_point(*sut, [this](detail::fault_point p) {
      // Called only once tasks were read (or are to be acknowledged).
      if (p != detail::fault_point::before_handle ||
          !kill_at_read.exchange(false))
        return;
      caf::scoped_actor self{rt.system()};
      self->monitor(doomed);
      caf::anon_send_exit(doomed, caf::exit_reason::kill);
      bool down = false;
      self->receive([&](const caf::down_msg&) { down = true; },
                    caf::after(10s) >> [] {});
      EXPECT_TRUE(down) << "the handler actor did not die";
    });
    ASSERT_FALSE(sut->start());
    for (int tries = 0; !doomed && tries < 1000; ++tries)
      doomed = handler("handler-0");
    ASSERT_TRUE(doomed);
    kill_at_read = true;
  }

  // Used by handlers, so declared before (and destroyed after) `sut`.
  std::shared_ptr<test::gate> held_running;
  run_log logged;
  std::unique_ptr<embedded_redis> redis;
  queue_config cfg;
  runtime::runtime rt;
  std::optional<client> producer;
  // The fault hook's (start_echo_killing_its_handler_at_the_first_read):
  // after `rt`, so that the handle goes before the actor system.
  std::atomic<bool> kill_at_read{false};
  caf::actor doomed;
  std::unique_ptr<worker> sut;
};

TEST_F(worker_test, a_task_runs_and_wait_returns_its_result) {
  ASSERT_FALSE(sut->start());
  auto id = producer->enqueue("add", {}, 2, 3);
  ASSERT_TRUE(id);
  auto info = wait_for(*id);
  EXPECT_EQ(info.status, task_status::succeeded);
  auto sum = decode<int>(info.result);
  ASSERT_TRUE(sum);
  EXPECT_EQ(std::get<0>(*sum), 5);
}

TEST_F(worker_test, a_wait_that_blocked_leaves_no_key_behind_without_expiry) {
  // wait() blocks on the task's wake-up list, which the finish script
  // fills (with the result's expiry) and the waiter empties, then fills
  // again for other waiters of the same task.
  auto release = std::make_shared<test::gate>();
  std::string id;
  start_stuck_one_at_a_time(release, {}, &id);
  auto waiter = client::connect(cfg);
  ASSERT_TRUE(waiter);
  auto waited =
      std::async(std::launch::async, [&] { return waiter->wait(id, 10s); });
  auto marked = [&] {
    auto w = producer->command({"HEXISTS", cfg.name_space + ":t:" + id, "w"});
    return uint64_t{w && *w == "1"};
  };
  ASSERT_EQ(reaches(marked, 1), 1u) << "wait did not mark the task";
  release->open();
  auto info = waited.get();
  ASSERT_TRUE(info) << to_string(info.error());
  EXPECT_EQ(info->status, task_status::succeeded);
  auto keys = producer->command({"KEYS", cfg.name_space + ":n:*"});
  ASSERT_TRUE(keys);
  std::istringstream lines{*keys};
  for (std::string key; std::getline(lines, key);) {
    if (key.empty())
      continue;
    auto ttl = producer->command({"TTL", key});
    ASSERT_TRUE(ttl);
    EXPECT_NE(*ttl, "-1") << key << " never expires";
  }
}

TEST_F(worker_test,
       an_enqueue_sent_again_after_its_reply_timed_out_adds_one_task) {
  // Redis runs another client's script for 600 ms. The producer's enqueue
  // waits behind it, times out (400 ms), reconnects and sends it again;
  // then Redis runs both. The second must add nothing: two entries of one
  // task would run it twice, and a cancel would find only one.
  auto slow_cfg = cfg;
  slow_cfg.io_timeout = 400ms;
  auto p2 = client::connect(slow_cfg);
  ASSERT_TRUE(p2);
  auto busy_client = client::connect(cfg);
  ASSERT_TRUE(busy_client);
  auto busy = std::async(std::launch::async, [&] {
    return busy_client->command({"EVAL",
                                 "local t = redis.call('TIME') "
                                 "local t0 = t[1] * 1000000 + t[2] "
                                 "repeat t = redis.call('TIME') "
                                 "until t[1] * 1000000 + t[2] - t0 > 600000 "
                                 "return 1",
                                 "0"});
  });
  // Busy once a connection with a short reply timeout gets no answer.
  auto probe_cfg = cfg;
  probe_cfg.io_timeout = 20ms;
  auto until = std::chrono::steady_clock::now() + 5s;
  while (client::connect(probe_cfg) && std::chrono::steady_clock::now() < until)
    std::this_thread::yield();
  auto t0 = std::chrono::steady_clock::now();
  auto id = p2->enqueue_payload("add", encode(1, 2));
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(busy.get());
  ASSERT_TRUE(id) << to_string(id.error());
  // The first try timed out: the task was sent twice.
  EXPECT_GE(took, 400ms);
  auto entries =
      producer->command({"XRANGE", cfg.name_space + ":q:1", "-", "+"});
  ASSERT_TRUE(entries);
  size_t copies = 0;
  for (auto at = entries->find(*id); at != std::string::npos;
       at = entries->find(*id, at + 1))
    ++copies;
  EXPECT_EQ(copies, 1u) << *entries;
  EXPECT_EQ(producer->cancel(*id), true);
  EXPECT_EQ(producer->status(*id)->status, task_status::cancelled);
  EXPECT_EQ(producer->backlog(), 0u);
}

TEST_F(worker_test, every_waiter_of_a_task_is_woken_by_its_end) {
  // run() in one client and wait() in two others, all blocked on the task
  // when it ends: run took the wake-up token for itself, and a wait timed
  // out on a task that had succeeded.
  auto release = std::make_shared<test::gate>();
  auto running = std::make_shared<test::gate>();
  sut->handle("stuck", [release, running](task_context&, std::string_view) {
    running->open();
    if (!release->pass())
      return caf::expected<std::string>{
          caf::make_error(caf::sec::runtime_error, "never released")};
    return caf::expected<std::string>{std::string{"done"}};
  });
  ASSERT_FALSE(sut->start());
  auto runner = client::connect(cfg);
  ASSERT_TRUE(runner);
  auto ran = std::async(std::launch::async,
                        [&] { return runner->run("stuck", "", {}, 10s); });
  ASSERT_TRUE(running->pass());
  auto keys = producer->command({"KEYS", cfg.name_space + ":t:*"});
  ASSERT_TRUE(keys);
  auto id = keys->substr(keys->find(":t:") + 3);
  id = id.substr(0, id.find('\n'));
  std::vector<client> waiters;
  std::vector<std::future<caf::expected<task_info>>> waited;
  for (int i = 0; i < 2; ++i) {
    auto w = client::connect(cfg);
    ASSERT_TRUE(w);
    waiters.push_back(std::move(*w));
  }
  for (auto& w : waiters)
    waited.push_back(
        std::async(std::launch::async, [&w, &id] { return w.wait(id, 10s); }));
  // All three blocked in Redis before the task ends.
  auto blocked = [&] {
    auto info = producer->command({"INFO", "clients"});
    auto at = info ? info->find("blocked_clients:") : std::string::npos;
    return at == std::string::npos ? uint64_t{0}
                                   : std::stoull(info->substr(at + 16));
  };
  ASSERT_EQ(reaches(blocked, 3), 3u);
  release->open();
  auto r = ran.get();
  ASSERT_TRUE(r) << to_string(r.error());
  EXPECT_EQ(r->status, task_status::succeeded);
  for (auto& f : waited) {
    auto info = f.get();
    ASSERT_TRUE(info) << to_string(info.error());
    EXPECT_EQ(info->status, task_status::succeeded);
    EXPECT_EQ(info->result, "done");
  }
}

TEST_F(worker_test,
       clients_and_an_idle_worker_go_on_after_redis_flushes_its_scripts) {
  // SCRIPT FLUSH (or a failover to a replica without them) empties Redis's
  // script cache: every script call answers NOSCRIPT until loaded again.
  ASSERT_FALSE(sut->start());
  ASSERT_EQ(wait_for(*producer->enqueue("add", {}, 1, 1)).status,
            task_status::succeeded);
  auto flush = [&] { ASSERT_TRUE(producer->command({"SCRIPT", "FLUSH"})); };
  flush();
  // Only the idle worker's sweep can move a delayed task to the stream.
  task_options later;
  later.delay = 50ms;
  auto delayed = producer->enqueue("add", later, 2, 2);
  ASSERT_TRUE(delayed) << to_string(delayed.error());
  auto info = wait_for(*delayed);
  EXPECT_EQ(info.status, task_status::succeeded);
  EXPECT_EQ(std::get<0>(*decode<int>(info.result)), 4);
  flush();
  auto ran = producer->run("add", encode(3, 3), {}, 10s);
  ASSERT_TRUE(ran) << to_string(ran.error());
  EXPECT_EQ(std::get<0>(*decode<int>(ran->result)), 6);
  flush();
  auto many = producer->enqueue_many("add", {encode(1, 0), encode(2, 0)});
  ASSERT_TRUE(many) << to_string(many.error());
  EXPECT_EQ(wait_for(many->back()).status, task_status::succeeded);
  flush();
  EXPECT_TRUE(producer->backlog());
  flush();
  auto waited = producer->wait(many->front(), 10s);
  ASSERT_TRUE(waited) << to_string(waited.error());
  EXPECT_EQ(waited->status, task_status::succeeded);
  flush();
  EXPECT_TRUE(producer->cancel(*delayed));
}

TEST_F(worker_test, run_enqueues_and_returns_the_final_result) {
  ASSERT_FALSE(sut->start());
  auto info = producer->run("add", encode(40, 2), {}, 10s);
  ASSERT_TRUE(info) << to_string(info.error());
  EXPECT_EQ(info->status, task_status::succeeded);
  EXPECT_EQ(std::get<0>(*decode<int>(info->result)), 42);
  auto dead = producer->run("no_such_task", "", {}, 10s);
  ASSERT_TRUE(dead);
  EXPECT_EQ(dead->status, task_status::dead);
}

TEST_F(worker_test, a_failing_task_is_retried_until_it_succeeds) {
  std::atomic<int> calls{0};
  sut->handle(
      "flaky",
      [&](task_context& ctx, std::string_view) -> caf::expected<std::string> {
        ++calls;
        if (ctx.attempt() < 3)
          return caf::make_error(caf::sec::runtime_error, "not yet");
        return std::string{"ok"};
      });
  ASSERT_FALSE(sut->start());
  task_options opts;
  opts.max_attempts = 5;
  opts.backoff.min = 10ms;
  auto id = producer->enqueue_payload("flaky", "", opts);
  ASSERT_TRUE(id);
  auto info = wait_for(*id);
  EXPECT_EQ(info.status, task_status::succeeded);
  EXPECT_EQ(info.result, "ok");
  EXPECT_EQ(calls.load(), 3);
  EXPECT_EQ(sut->stats().retried, 2u);
}

TEST_F(worker_test,
       a_task_failing_its_last_attempt_is_dead_lettered_with_the_reason) {
  std::atomic<int> calls{0};
  sut->handle(
      "doomed",
      [&](task_context&, std::string_view) -> caf::expected<std::string> {
        ++calls;
        throw std::runtime_error("disk on fire");
      });
  ASSERT_FALSE(sut->start());
  task_options opts;
  opts.max_attempts = 2;
  opts.backoff.min = 5ms;
  auto id = producer->enqueue_payload("doomed", "payload-bytes", opts);
  ASSERT_TRUE(id);
  auto info = wait_for(*id);
  EXPECT_EQ(info.status, task_status::dead);
  EXPECT_EQ(calls.load(), 2);
  auto dead = producer->dead_tasks();
  ASSERT_TRUE(dead);
  ASSERT_EQ(dead->size(), 1u);
  EXPECT_EQ(dead->front().task_id, *id);
  EXPECT_EQ(dead->front().payload, "payload-bytes");
  EXPECT_EQ(dead->front().attempts, 2u);
  EXPECT_NE(dead->front().reason.find("disk on fire"), std::string::npos)
      << dead->front().reason;
}

TEST_F(
    worker_test,
    unknown_names_and_malformed_entries_are_dead_lettered_and_the_worker_keeps_running) {
  ASSERT_FALSE(sut->start());
  auto unknown = producer->enqueue("no_such_task", {}, 1);
  ASSERT_TRUE(unknown);
  auto bad_args = producer->enqueue("add", {}, std::string{"two"});
  ASSERT_TRUE(bad_args);
  auto raw = producer->command(
      {"XADD", cfg.name_space + ":q:1", "*", "garbage", "entry"});
  ASSERT_TRUE(raw) << to_string(raw.error());
  EXPECT_EQ(wait_for(*unknown).status, task_status::dead);
  EXPECT_EQ(wait_for(*bad_args).status, task_status::dead);
  auto good = producer->enqueue("add", {}, 20, 22);
  ASSERT_TRUE(good);
  auto info = wait_for(*good);
  EXPECT_EQ(info.status, task_status::succeeded);
  EXPECT_EQ(std::get<0>(*decode<int>(info.result)), 42);
  auto dead = producer->dead_tasks();
  ASSERT_TRUE(dead);
  ASSERT_EQ(dead->size(), 3u);
  std::vector<std::string> reasons;
  for (auto& d : *dead)
    reasons.push_back(d.reason);
  auto has = [&](std::string_view what) {
    return std::any_of(reasons.begin(), reasons.end(), [&](auto& r) {
      return r.find(what) != std::string::npos;
    });
  };
  EXPECT_TRUE(has("queue.unknown_task: no handler for task name "
                  "'no_such_task'"));
  EXPECT_TRUE(has("queue.malformed_payload: "));
  EXPECT_TRUE(has("queue.malformed_entry: missing task id or name"));
}

TEST_F(worker_test, a_requeued_dead_letter_runs_again) {
  std::atomic<bool> healthy{false};
  sut->handle(
      "sometimes",
      [&](task_context&, std::string_view p) -> caf::expected<std::string> {
        if (!healthy)
          return caf::make_error(caf::sec::runtime_error, "down");
        return std::string{p};
      });
  ASSERT_FALSE(sut->start());
  task_options opts;
  opts.max_attempts = 1;
  auto id = producer->enqueue_payload("sometimes", "again", opts);
  ASSERT_TRUE(id);
  EXPECT_EQ(wait_for(*id).status, task_status::dead);
  healthy = true;
  auto dead = producer->dead_tasks();
  ASSERT_TRUE(dead);
  ASSERT_EQ(dead->size(), 1u);
  auto again = producer->requeue(dead->front().entry);
  ASSERT_TRUE(again);
  auto info = wait_for(*again);
  EXPECT_EQ(info.status, task_status::succeeded);
  EXPECT_EQ(info.result, "again");
  EXPECT_TRUE(producer->dead_tasks()->empty());
}

TEST_F(worker_test,
       a_requeued_dead_letter_keeps_the_options_it_was_enqueued_with) {
  // Requeued with the defaults, a task lost its priority, its attempts and
  // timeout, and its idempotency key (so its effects could apply twice).
  std::atomic<int> runs{0};
  sut->handle("fails", [&runs](task_context& ctx, std::string_view) {
    ++runs;
    ctx.add_effect({"INCR", "applied"});
    return caf::expected<std::string>{
        caf::make_error(caf::sec::runtime_error, "down")};
  });
  ASSERT_FALSE(sut->start());
  task_options opts;
  opts.level = priority::high;
  opts.max_attempts = 2;
  opts.backoff.min = 1ms;
  opts.backoff.max = 5ms;
  opts.timeout = 250ms;
  opts.idempotency_key = "K1";
  auto id = producer->enqueue_payload("fails", "p", opts);
  ASSERT_TRUE(id);
  EXPECT_EQ(wait_for(*id).status, task_status::dead);
  auto dead = producer->dead_tasks();
  ASSERT_TRUE(dead);
  ASSERT_EQ(dead->size(), 1u);
  auto& letter = dead->front();
  EXPECT_EQ(letter.attempts, 2u);
  EXPECT_EQ(letter.options.level, priority::high);
  EXPECT_EQ(letter.options.max_attempts, 2u);
  EXPECT_EQ(letter.options.backoff.min, 1ms);
  EXPECT_EQ(letter.options.backoff.max, 5ms);
  EXPECT_EQ(letter.options.timeout, 250ms);
  EXPECT_EQ(letter.options.idempotency_key, "K1");
  sut->stop();
  auto again = producer->requeue(letter.entry);
  ASSERT_TRUE(again);
  auto entries =
      producer->command({"XRANGE", cfg.name_space + ":q:0", "-", "+"});
  ASSERT_TRUE(entries);
  EXPECT_NE(entries->find(*again), std::string::npos) << *entries;
  EXPECT_NE(entries->find("2 1 5 250"), std::string::npos) << *entries;
  EXPECT_NE(entries->find("K1"), std::string::npos) << *entries;
  // Two attempts again, as the options say.
  make_sut();
  sut->handle("fails", [&runs](task_context&, std::string_view) {
    ++runs;
    return caf::expected<std::string>{
        caf::make_error(caf::sec::runtime_error, "down")};
  });
  ASSERT_FALSE(sut->start());
  auto info = wait_for(*again);
  EXPECT_EQ(info.status, task_status::dead);
  EXPECT_EQ(info.attempt, 2u);
  EXPECT_EQ(runs.load(), 4);
}

TEST_F(worker_test,
       a_delayed_task_is_scheduled_and_runs_no_earlier_than_its_delay) {
  ASSERT_FALSE(sut->start());
  task_options opts;
  opts.delay = 150ms;
  auto before = std::chrono::steady_clock::now();
  auto id = producer->enqueue("add", opts, 1, 1);
  ASSERT_TRUE(id);
  EXPECT_EQ(producer->status(*id)->status, task_status::scheduled);
  auto info = wait_for(*id);
  EXPECT_EQ(info.status, task_status::succeeded);
  EXPECT_GE(std::chrono::steady_clock::now() - before, 150ms);
}

TEST_F(worker_test, cancel_stops_a_task_that_has_not_started) {
  std::atomic<int> calls{0};
  sut->handle(
      "never",
      [&](task_context&, std::string_view) -> caf::expected<std::string> {
        ++calls;
        return std::string{};
      });
  task_options later;
  later.delay = 1h;
  auto scheduled = producer->enqueue_payload("never", "", later);
  auto queued = producer->enqueue_payload("never", "");
  ASSERT_TRUE(scheduled);
  ASSERT_TRUE(queued);
  EXPECT_EQ(producer->cancel(*scheduled), true);
  EXPECT_EQ(producer->cancel(*queued), true);
  EXPECT_EQ(producer->cancel(*queued), false);
  ASSERT_FALSE(sut->start());
  auto probe = producer->enqueue("add", {}, 0, 0);
  ASSERT_TRUE(probe);
  wait_for(*probe); // the worker got past the cancelled entry
  EXPECT_EQ(producer->status(*scheduled)->status, task_status::cancelled);
  EXPECT_EQ(producer->status(*queued)->status, task_status::cancelled);
  EXPECT_EQ(calls.load(), 0);
}

TEST_F(worker_test, effects_with_one_idempotency_key_apply_once) {
  sut->handle(
      "credit",
      [&](task_context& ctx, std::string_view) -> caf::expected<std::string> {
        ctx.add_effect({"INCRBY", "balance", "10"});
        return std::string{"credited"};
      });
  ASSERT_FALSE(sut->start());
  task_options opts;
  opts.idempotency_key = "payment-17";
  auto a = producer->enqueue_payload("credit", "", opts);
  auto b = producer->enqueue_payload("credit", "", opts);
  ASSERT_TRUE(a);
  ASSERT_TRUE(b);
  EXPECT_EQ(wait_for(*a).status, task_status::succeeded);
  EXPECT_EQ(wait_for(*b).status, task_status::succeeded);
  EXPECT_EQ(producer->command({"GET", "balance"}), std::string{"10"});
}

TEST_F(worker_test, a_task_whose_effect_fails_ends_dead_with_the_reason) {
  // "counter" takes its INCR; "not-a-number" is a hash, so INCR fails.
  ASSERT_TRUE(producer->command({"HSET", "not-a-number", "f", "v"}));
  sut->handle("bad", [](task_context& ctx, std::string_view) {
    ctx.add_effect({"INCR", "counter"});
    ctx.add_effect({"INCR", "not-a-number"});
    return caf::expected<std::string>{std::string{"ran"}};
  });
  sut->handle("good", [](task_context& ctx, std::string_view) {
    ctx.add_effect({"INCR", "good"});
    return caf::expected<std::string>{std::string{"ran"}};
  });
  ASSERT_FALSE(sut->start());
  auto bad = producer->enqueue_payload("bad", "payload");
  ASSERT_TRUE(bad);
  auto info = wait_for(*bad);
  EXPECT_EQ(info.status, task_status::dead);
  EXPECT_NE(info.error.find("effect 2 failed"), std::string::npos)
      << info.error;
  EXPECT_NE(info.error.find("WRONGTYPE"), std::string::npos) << info.error;
  // Redis cannot undo the effect before it.
  EXPECT_EQ(producer->command({"GET", "counter"}), std::string{"1"});
  auto letters = producer->dead_tasks();
  ASSERT_TRUE(letters);
  ASSERT_EQ(letters->size(), 1u);
  EXPECT_EQ(letters->front().task_id, *bad);
  EXPECT_EQ(letters->front().name, "bad");
  EXPECT_EQ(letters->front().payload, "payload"); // so that it can be requeued
  // The worker goes on.
  EXPECT_EQ(wait_for(*producer->enqueue_payload("good", "")).status,
            task_status::succeeded);
  EXPECT_EQ(producer->command({"GET", "good"}), std::string{"1"});
  EXPECT_EQ(reaches([&] { return sut->stats().dead_lettered; }, 1), 1u);
  EXPECT_EQ(reaches([&] { return sut->stats().succeeded; }, 1), 1u);
}

TEST_F(worker_test,
       an_effect_with_too_many_arguments_ends_its_task_dead_not_lost) {
  // Lua cannot pass 10,002 values to one call: that error came after the
  // task's XACK, and the task stayed queued for good, counted a success.
  sut->handle("big", [](task_context& ctx, std::string_view) {
    std::vector<std::string> cmd{"SADD", "bigset"};
    for (int i = 0; i < 10000; ++i)
      cmd.push_back(std::to_string(i));
    ctx.add_effect(std::move(cmd));
    return caf::expected<std::string>{std::string{"ran"}};
  });
  ASSERT_FALSE(sut->start());
  auto big = producer->enqueue_payload("big", "");
  ASSERT_TRUE(big);
  auto info = wait_for(*big);
  EXPECT_EQ(info.status, task_status::dead);
  EXPECT_NE(info.error.find("effect 1 failed: too many arguments"),
            std::string::npos)
      << info.error;
  EXPECT_EQ(producer->command({"SCARD", "bigset"}), std::string{"0"});
  EXPECT_EQ(wait_for(*producer->enqueue("add", {}, 1, 2)).status,
            task_status::succeeded);
  EXPECT_EQ(reaches([&] { return sut->stats().dead_lettered; }, 1), 1u);
  EXPECT_EQ(reaches([&] { return sut->stats().succeeded; }, 1), 1u);
  EXPECT_EQ(sut->stats().reconnects, 0u);
}

TEST_F(worker_test, a_result_ttl_redis_cannot_set_is_refused_at_start) {
  // An expiry of 0 made the finish script fail after its XACK.
  cfg.result_ttl = 0s;
  make_sut();
  auto err = sut->start();
  EXPECT_EQ(err, caf::sec::invalid_argument);
  EXPECT_NE(to_string(err).find("result_ttl"), std::string::npos)
      << to_string(err);
  auto c = client::connect(cfg);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error(), caf::sec::invalid_argument);
}

TEST_F(worker_test, high_priority_tasks_run_before_low_priority_ones) {
  task_options low;
  low.level = priority::low;
  task_options high;
  high.level = priority::high;
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i)
    ids.push_back(*producer->enqueue_payload("log", "low", low));
  for (int i = 0; i < 5; ++i)
    ids.push_back(*producer->enqueue_payload("log", "high", high));
  make_logging_sut();
  auto& log = logged;
  ASSERT_FALSE(sut->start());
  for (auto& id : ids)
    wait_for(id);
  std::lock_guard<std::mutex> guard{log.mtx};
  ASSERT_EQ(log.order.size(), 10u);
  for (size_t i = 0; i < 5; ++i)
    EXPECT_EQ(log.order[i], "high") << i;
}

TEST_F(worker_test,
       an_acknowledgement_redis_refuses_is_sent_again_and_the_task_runs_once) {
  // The worker skips the reply of a lone acknowledgement and checks it with
  // the next read; Redis without the queue's scripts refuses it.
  std::atomic<int> runs{0};
  auto release = std::make_shared<test::gate>();
  auto running = std::make_shared<test::gate>();
  sut->handle("once",
              [&runs, running, release](task_context&, std::string_view)
                  -> caf::expected<std::string> {
                ++runs;
                running->open();
                if (!release->pass())
                  return caf::make_error(caf::sec::runtime_error, "stuck");
                return std::string{"done"};
              });
  ASSERT_FALSE(sut->start());
  // A first task: its acknowledgement's reply comes before its next read's
  // (that read waits), so the worker skips the next one's.
  EXPECT_EQ(wait_for(*producer->enqueue("add", {}, 1, 2)).status,
            task_status::succeeded);
  auto id = producer->enqueue_payload("once", "");
  ASSERT_TRUE(id);
  ASSERT_TRUE(running->pass());
  ASSERT_TRUE(producer->command({"SCRIPT", "FLUSH"}));
  release->open();
  // The refused acknowledgement costs the worker its connection (the retry
  // shows Redis's error); reconnecting loads the scripts again.
  EXPECT_GE(reaches([&] { return sut->stats().reconnects; }, 1), 1u);
  auto waiter = client::connect(cfg);
  ASSERT_TRUE(waiter);
  auto info = waiter->wait(*id, 10s);
  ASSERT_TRUE(info) << to_string(info.error());
  EXPECT_EQ(info->status, task_status::succeeded);
  EXPECT_EQ(info->result, "done");
  EXPECT_EQ(reaches([&] { return sut->stats().succeeded; }, 2), 2u);
  EXPECT_EQ(runs.load(), 1);
}

TEST_F(worker_test,
       behind_a_redis_that_refuses_client_reply_acknowledgements_keep_replies) {
  ASSERT_FALSE(sut->start());
  EXPECT_EQ(wait_for(*producer->enqueue("add", {}, 1, 2)).status,
            task_status::succeeded);
  // As behind an ACL that leaves CLIENT out: the next acknowledgement's
  // CLIENT REPLY SKIP fails.
  ASSERT_TRUE(producer->command({"ACL", "SETUSER", "default", "-client"}));
  for (int i = 0; i < 3; ++i) {
    auto info = wait_for(*producer->enqueue("add", {}, i, 10));
    EXPECT_EQ(info.status, task_status::succeeded);
    EXPECT_EQ(std::get<0>(*decode<int>(info.result)), i + 10);
  }
  EXPECT_EQ(reaches([&] { return sut->stats().succeeded; }, 4), 4u);
  // The refusal is read as such (the connection stays), and the worker
  // stops asking.
  EXPECT_EQ(sut->stats().reconnects, 0u);
}

TEST_F(worker_test,
       a_task_read_along_with_a_refused_quiet_acknowledgement_still_runs) {
  std::atomic<int> runs{0};
  auto release = std::make_shared<test::gate>();
  start_hold_and_once(runs, release);
  // Its next read blocks: the worker goes quiet.
  EXPECT_EQ(wait_for(*producer->enqueue("add", {}, 1, 2)).status,
            task_status::succeeded);
  auto held = hold_then_enqueue_once();
  ASSERT_TRUE(held.first && held.second);
  ASSERT_TRUE(producer->command({"ACL", "SETUSER", "default", "-client"}));
  release->open();
  EXPECT_EQ(wait_for(*held.first).status, task_status::succeeded);
  auto info = wait_for(*held.second);
  EXPECT_EQ(info.status, task_status::succeeded) << info.error;
  EXPECT_EQ(runs.load(), 1);
}

TEST_F(worker_test, a_task_read_behind_a_failed_acknowledgement_still_runs) {
  std::atomic<int> runs{0};
  auto release = std::make_shared<test::gate>();
  start_hold_and_once(runs, release);
  // hold's acknowledgement (with its reply: the worker's first) fails, the
  // read behind it returns "once" at once.
  auto held = hold_then_enqueue_once();
  ASSERT_TRUE(held.first && held.second);
  ASSERT_TRUE(producer->command({"SCRIPT", "FLUSH"}));
  release->open();
  EXPECT_GE(reaches([&] { return sut->stats().reconnects; }, 1), 1u);
  auto waiter = client::connect(cfg);
  ASSERT_TRUE(waiter);
  for (auto& id : {*held.first, *held.second}) {
    auto info = waiter->wait(id, 10s);
    ASSERT_TRUE(info) << to_string(info.error());
    EXPECT_EQ(info->status, task_status::succeeded) << info->error;
  }
  EXPECT_EQ(runs.load(), 1);
}

TEST_F(worker_test, a_batch_enqueued_at_once_keeps_its_payloads_and_options) {
  make_logging_sut();
  auto& log = logged;
  sut->handle("fail", [](task_context&, std::string_view) {
    return caf::expected<std::string>{
        caf::make_error(caf::sec::runtime_error, "always fails")};
  });
  task_options low;
  low.level = priority::low;
  task_options high;
  high.level = priority::high;
  task_options later = high;
  later.delay = 300ms;
  task_options twice;
  twice.max_attempts = 2;
  twice.backoff.min = 1ms;
  auto lows = producer->enqueue_many("log", {"low-0", "low-1", "low-2"}, low);
  auto highs =
      producer->enqueue_many("log", {"high-0", "high-1", "high-2"}, high);
  auto enqueued = std::chrono::steady_clock::now();
  auto laters = producer->enqueue_many("log", {"later-0", "later-1"}, later);
  auto failing = producer->enqueue_many("fail", {"x", "y"}, twice);
  ASSERT_TRUE(lows && highs && laters && failing);
  EXPECT_EQ(producer->status(laters->front())->status, task_status::scheduled);
  ASSERT_FALSE(sut->start());
  std::vector<std::pair<std::string, std::string>> expect;
  for (size_t i = 0; i < 3; ++i) {
    expect.emplace_back((*lows)[i], "low-" + std::to_string(i));
    expect.emplace_back((*highs)[i], "high-" + std::to_string(i));
  }
  for (size_t i = 0; i < 2; ++i)
    expect.emplace_back((*laters)[i], "later-" + std::to_string(i));
  for (auto& [id, payload] : expect) {
    auto info = wait_for(id);
    EXPECT_EQ(info.status, task_status::succeeded) << payload;
    EXPECT_EQ(info.result, payload);
  }
  for (auto& id : *failing) {
    auto info = wait_for(id);
    EXPECT_EQ(info.status, task_status::dead);
    EXPECT_EQ(info.attempt, 2u);
  }
  std::lock_guard<std::mutex> guard{log.mtx};
  ASSERT_GE(log.order.size(), 3u);
  EXPECT_EQ(std::vector<std::string>(log.order.begin(), log.order.begin() + 3),
            (std::vector<std::string>{"high-0", "high-1", "high-2"}));
  for (auto name : {"later-0", "later-1"})
    EXPECT_GE(log.ran_at[name], enqueued + 300ms) << name;
}

TEST_F(worker_test,
       a_long_cpu_bound_task_is_not_reclaimed_while_its_worker_lives) {
  cfg.visibility_timeout = 200ms;
  cfg.heartbeat_interval = 40ms;
  std::atomic<int> runs{0};
  auto busy = [&](task_context&,
                  std::string_view) -> caf::expected<std::string> {
    ++runs;
    // Spin, without yielding, for four visibility timeouts.
    auto until = std::chrono::steady_clock::now() + 800ms;
    volatile uint64_t x = 0;
    while (std::chrono::steady_clock::now() < until)
      x = x + 1;
    return std::string{"done"};
  };
  sut = std::make_unique<worker>(rt, cfg);
  sut->handle("busy", busy);
  worker other{rt, cfg};
  other.handle("busy", busy);
  ASSERT_FALSE(sut->start());
  auto id = producer->enqueue_payload("busy", "");
  ASSERT_TRUE(id);
  // Give the task to sut first, then start a second worker that would
  // reclaim it if the lease were not renewed.
  while (sut->stats().succeeded == 0 && runs.load() == 0)
    std::this_thread::yield();
  ASSERT_FALSE(other.start());
  EXPECT_EQ(wait_for(*id).status, task_status::succeeded);
  other.stop();
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(other.stats().reclaimed, 0u);
}

TEST_F(worker_test, a_task_over_its_timeout_fails_the_attempt) {
  std::promise<void> release;
  auto released = release.get_future().share();
  sut->handle("slow",
              [released](task_context&,
                         std::string_view) -> caf::expected<std::string> {
                released.wait_for(5s);
                return std::string{"late"};
              });
  ASSERT_FALSE(sut->start());
  task_options opts;
  opts.timeout = 50ms;
  opts.max_attempts = 1;
  auto id = producer->enqueue_payload("slow", "", opts);
  ASSERT_TRUE(id);
  auto info = wait_for(*id);
  release.set_value();
  EXPECT_EQ(info.status, task_status::dead);
  EXPECT_NE(info.error.find("timed out"), std::string::npos) << info.error;
}

TEST_F(worker_test,
       a_task_timeout_counts_from_its_start_not_from_its_wait_for_a_handler) {
  // "quick" (timeout 100 ms) is handed to the one handler actor together
  // with "slow", and waits behind it longer than its timeout: it was
  // failed as timed out, and then ran anyway.
  cfg.concurrency = 1;
  cfg.batch_size = 8;
  make_sut();
  auto release = std::make_shared<test::gate>();
  auto running = std::make_shared<test::gate>();
  sut->handle("slow", [release, running](task_context&, std::string_view) {
    running->open();
    static_cast<void>(release->pass());
    return caf::expected<std::string>{std::string{"slow"}};
  });
  sut->handle("quick", [&log = logged](task_context&, std::string_view) {
    std::lock_guard<std::mutex> guard{log.mtx};
    log.order.emplace_back("quick");
    return caf::expected<std::string>{std::string{"quick"}};
  });
  auto slow = producer->enqueue_payload("slow", "");
  task_options opts;
  opts.timeout = 100ms;
  opts.max_attempts = 1;
  auto quick = producer->enqueue_payload("quick", "", opts);
  ASSERT_TRUE(slow && quick);
  ASSERT_FALSE(sut->start()); // one read takes both
  ASSERT_TRUE(running->pass());
  // Both entries delivered and idle (waiting) for 300 ms at least, as Redis
  // counts: XPENDING lists 4 fields per entry.
  auto idle_of_both_over = [&](int ms) {
    auto p = producer->command({"XPENDING", cfg.name_space + ":q:1", "workers",
                                "IDLE", std::to_string(ms), "-", "+", "10"});
    auto lines =
        p && !p->empty() ? std::count(p->begin(), p->end(), '\n') + 1 : 0;
    return uint64_t{lines == 8};
  };
  ASSERT_EQ(reaches([&] { return idle_of_both_over(300); }, 1), 1u);
  release->open();
  auto info = wait_for(*quick);
  EXPECT_EQ(info.status, task_status::succeeded) << info.error;
  EXPECT_EQ(wait_for(*slow).status, task_status::succeeded);
  std::lock_guard<std::mutex> guard{logged.mtx};
  EXPECT_EQ(logged.order, std::vector<std::string>{"quick"});
}

TEST_F(worker_test,
       a_stop_hands_back_the_tasks_no_handler_started_by_its_deadline) {
  // A deploy stops a worker whose handler actor is busy past the stop's
  // deadline, with "once" (one attempt) queued behind: left pending, it
  // was reclaimed with a second delivery and dead-lettered unrun.
  cfg.concurrency = 1;
  cfg.batch_size = 8;
  make_sut();
  auto release = std::make_shared<test::gate>();
  auto running = std::make_shared<test::gate>();
  auto install = [&](worker& w) {
    w.handle("slow", [release, running](task_context&, std::string_view) {
      running->open();
      static_cast<void>(release->pass());
      return caf::expected<std::string>{std::string{"slow"}};
    });
    w.handle("once",
             [&log = logged](task_context& ctx,
                             std::string_view) -> caf::expected<std::string> {
               std::lock_guard<std::mutex> guard{log.mtx};
               log.order.emplace_back("once");
               return "once@" + std::to_string(ctx.attempt());
             });
  };
  install(*sut);
  auto slow = producer->enqueue_payload("slow", "");
  task_options one;
  one.max_attempts = 1;
  auto once = producer->enqueue_payload("once", "", one);
  ASSERT_TRUE(slow && once);
  ASSERT_FALSE(sut->start()); // one read takes both
  ASSERT_TRUE(running->pass());
  sut->stop(100ms);
  auto info = producer->status(*once);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->status, task_status::scheduled);
  EXPECT_EQ(info->attempt, 1u);
  // The next worker runs it at once (no visibility timeout to wait out).
  worker next{rt, cfg};
  install(next);
  ASSERT_FALSE(next.start());
  auto done = wait_for(*once);
  EXPECT_EQ(done.status, task_status::succeeded);
  EXPECT_EQ(done.result, "once@1");
  EXPECT_EQ(next.stats().reclaimed, 0u);
  release->open(); // the first worker's actor skips the withdrawn task
  next.stop();
  std::lock_guard<std::mutex> guard{logged.mtx};
  EXPECT_EQ(logged.order, std::vector<std::string>{"once"});
}

TEST_F(worker_test, graceful_stop_finishes_and_acknowledges_in_flight_tasks) {
  std::promise<void> started;
  std::promise<void> release;
  auto released = release.get_future().share();
  sut->handle("long",
              [&, released](task_context&,
                            std::string_view) -> caf::expected<std::string> {
                started.set_value();
                released.wait_for(5s);
                return std::string{"finished"};
              });
  ASSERT_FALSE(sut->start());
  auto id = producer->enqueue_payload("long", "");
  ASSERT_TRUE(id);
  ASSERT_EQ(started.get_future().wait_for(5s), std::future_status::ready);
  auto stopping = std::async(std::launch::async, [&] { sut->stop(5s); });
  release.set_value();
  ASSERT_EQ(stopping.wait_for(10s), std::future_status::ready);
  auto info = producer->status(*id);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->status, task_status::succeeded);
  EXPECT_EQ(info->result, "finished");
}

TEST_F(worker_test,
       one_task_at_a_time_a_handler_actor_killed_mid_stream_loses_no_task) {
  // One actor, one task at a time: the actor acknowledges and reads on its
  // own thread between tasks; its death must give the loop back.
  std::promise<void> fiftieth;
  std::atomic<int> runs{0};
  start_echo_one_at_a_time(runs, 50, fiftieth);
  task_options opts;
  opts.backoff.min = 1ms;
  std::vector<std::string> ids;
  for (int i = 0; i < 300; ++i)
    ids.push_back(*producer->enqueue_payload("echo", std::to_string(i), opts));
  ASSERT_EQ(fiftieth.get_future().wait_for(10s), std::future_status::ready);
  auto first = handler("handler-0");
  ASSERT_TRUE(first);
  caf::anon_send_exit(first, caf::exit_reason::kill);
  for (size_t i = 0; i < ids.size(); ++i) {
    auto info = wait_for(ids[i]);
    EXPECT_EQ(info.status, task_status::succeeded) << i;
    EXPECT_EQ(info.result, std::to_string(i));
  }
  EXPECT_EQ(reaches([&] { return sut->stats().handler_restarts; }, 1), 1u);
  // An attempt cut short by the kill is retried, not counted twice.
  EXPECT_EQ(reaches([&] { return sut->stats().succeeded; }, ids.size()),
            ids.size());
  EXPECT_GE(runs.load(), 300);
}

TEST_F(worker_test, one_task_at_a_time_a_graceful_stop_leaves_no_task_running) {
  std::promise<void> tenth;
  std::atomic<int> runs{0};
  start_echo_one_at_a_time(runs, 10, tenth);
  std::vector<std::string> ids;
  for (int i = 0; i < 2000; ++i)
    ids.push_back(*producer->enqueue_payload("echo", std::to_string(i)));
  ASSERT_EQ(tenth.get_future().wait_for(10s), std::future_status::ready);
  auto stopping = std::async(std::launch::async, [&] { sut->stop(5s); });
  ASSERT_EQ(stopping.wait_for(10s), std::future_status::ready);
  // Every task that ran was acknowledged; the others wait in the stream
  // (none read and left pending).
  uint64_t succeeded = 0;
  for (auto& id : ids) {
    auto info = producer->status(id);
    ASSERT_TRUE(info);
    if (info->status == task_status::succeeded)
      ++succeeded;
    else
      EXPECT_EQ(info->status, task_status::queued);
  }
  EXPECT_EQ(succeeded, static_cast<uint64_t>(runs.load()));
  EXPECT_EQ(sut->stats().succeeded, succeeded);
  auto pending =
      producer->command({"XPENDING", cfg.name_space + ":q:1", "workers"});
  ASSERT_TRUE(pending);
  EXPECT_EQ(pending->substr(0, pending->find('\n')), "0") << *pending;
}

TEST_F(worker_test,
       one_task_at_a_time_a_worker_reconnects_after_redis_restarts) {
  std::promise<void> twentieth;
  std::atomic<int> runs{0};
  start_echo_one_at_a_time(runs, 20, twentieth);
  for (int i = 0; i < 100; ++i)
    ASSERT_TRUE(producer->enqueue_payload("echo", "before"));
  ASSERT_EQ(twentieth.get_future().wait_for(10s), std::future_status::ready);
  // Not persistent: the restarted Redis has lost every task and the
  // consumer group, which the worker recreates when it reconnects.
  actorbus::queue::detail::embedded_redis_testing::crash(*redis);
  ASSERT_FALSE(redis->restart());
  std::vector<std::string> ids;
  for (int i = 0; i < 100; ++i)
    ids.push_back(*producer->enqueue_payload("echo", std::to_string(i)));
  for (size_t i = 0; i < ids.size(); ++i) {
    auto info = wait_for(ids[i]);
    EXPECT_EQ(info.status, task_status::succeeded) << i;
    EXPECT_EQ(info.result, std::to_string(i));
  }
  EXPECT_GE(sut->stats().reconnects, 1u);
}

TEST_F(worker_test, a_waiting_client_times_out_on_a_task_nobody_runs) {
  auto id = producer->enqueue("add", {}, 1, 2);
  ASSERT_TRUE(id);
  auto info = producer->wait(*id, 50ms);
  ASSERT_FALSE(info);
  EXPECT_EQ(info.error(), caf::sec::request_timeout);
}

TEST_F(worker_test,
       a_killed_handler_actor_is_restarted_by_its_supervisor_and_work_goes_on) {
  cfg.concurrency = 1;
  auto first = started_handler();
  ASSERT_TRUE(first);
  caf::anon_send_exit(first, caf::exit_reason::kill);
  // The task waits for the restarted actor, then runs on it.
  auto info = wait_for(*producer->enqueue("add", {}, 20, 22));
  EXPECT_EQ(info.status, task_status::succeeded);
  EXPECT_EQ(std::get<0>(*decode<int>(info.result)), 42);
  EXPECT_EQ(reaches([&] { return sut->stats().handler_restarts; }, 1), 1u);
  EXPECT_FALSE(sut->stats().gave_up);
  auto second = handler("handler-0");
  EXPECT_TRUE(second);
  EXPECT_NE(second, first);
}

TEST_F(
    worker_test,
    tasks_a_dead_handler_actor_never_started_run_on_its_successor_at_the_same_attempt) {
  cfg.handler_restart_backoff.min = 1ms;
  start_echo_killing_its_handler_at_the_first_read();
  task_options once;
  once.max_attempts = 1;
  std::vector<std::string> payloads{"a", "b", "c", "d", "e"};
  auto ids = producer->enqueue_many("echo", payloads, once);
  ASSERT_TRUE(ids);
  // With one attempt each, a task charged for the death would be dead.
  for (size_t i = 0; i < payloads.size(); ++i) {
    auto info = wait_for((*ids)[i]);
    EXPECT_EQ(info.status, task_status::succeeded) << payloads[i];
    EXPECT_EQ(info.result, payloads[i] + "@1");
  }
  EXPECT_EQ(reaches([&] { return sut->stats().handler_restarts; }, 1), 1u);
  EXPECT_EQ(reaches([&] { return sut->stats().succeeded; }, 5), 5u);
  EXPECT_EQ(sut->stats().retried, 0u);
  EXPECT_EQ(sut->stats().dead_lettered, 0u);
  std::lock_guard<std::mutex> guard{logged.mtx};
  EXPECT_EQ(logged.order, payloads);
}

TEST_F(
    worker_test,
    tasks_a_worker_holds_unstarted_when_it_gives_up_go_back_to_the_queue_at_the_same_attempt) {
  cfg.handler_max_restarts = 0;
  start_echo_killing_its_handler_at_the_first_read();
  task_options once;
  once.max_attempts = 1;
  std::vector<std::string> payloads{"a", "b", "c"};
  auto ids = producer->enqueue_many("echo", payloads, once);
  ASSERT_TRUE(ids);
  ASSERT_EQ(reaches([&] { return uint64_t{sut->stats().gave_up}; }, 1), 1u);
  // Another worker takes them (the visibility timeout, 2 s, has not run
  // out: they were handed back, not reclaimed).
  worker other{rt, cfg};
  other.handle(
      "echo",
      [](task_context& ctx, std::string_view p) -> caf::expected<std::string> {
        return std::string{p} + "@" + std::to_string(ctx.attempt());
      });
  ASSERT_FALSE(other.start());
  for (size_t i = 0; i < payloads.size(); ++i) {
    auto info = wait_for((*ids)[i]);
    EXPECT_EQ(info.status, task_status::succeeded) << payloads[i];
    EXPECT_EQ(info.result, payloads[i] + "@1");
  }
  other.stop();
  EXPECT_EQ(other.stats().reclaimed, 0u);
  EXPECT_EQ(sut->stats().dead_lettered, 0u);
  std::lock_guard<std::mutex> guard{logged.mtx};
  EXPECT_TRUE(logged.order.empty());
}

TEST_F(worker_test,
       past_its_restart_intensity_a_worker_gives_up_and_loses_no_task) {
  cfg.concurrency = 1;
  cfg.handler_max_restarts = 1;
  cfg.handler_restart_backoff.min = 1ms;
  cfg.visibility_timeout = 300ms;
  sut = std::make_unique<worker>(rt, cfg);
  sut->handle(
      "echo",
      [](task_context&, std::string_view p) -> caf::expected<std::string> {
        return std::string{p};
      });
  ASSERT_FALSE(sut->start());
  caf::scoped_actor self{rt.system()};
  auto sup = sut->handler_supervisor();
  self->monitor(sup);
  // Two deaths within the period: one restart allowed, then escalation.
  for (int i = 0; i < 2; ++i) {
    caf::actor child;
    for (int tries = 0; !child && tries < 1000; ++tries)
      child = handler("handler-0");
    ASSERT_TRUE(child);
    caf::anon_send_exit(child, caf::exit_reason::kill);
    if (i == 0) {
      // Sync: the restart has happened once the task runs.
      ASSERT_EQ(wait_for(*producer->enqueue_payload("echo", "x")).status,
                task_status::succeeded);
    }
  }
  bool down = false;
  self->receive([&](caf::down_msg& dm) { down = dm.source == sup; },
                caf::after(10s) >> [] {});
  ASSERT_TRUE(down) << "the supervisor did not give up";
  // The worker learns it from its own hook on the supervisor's exit, which
  // CAF may run just after our down message: wait for it (bounded).
  auto until = std::chrono::steady_clock::now() + 5s;
  while (!sut->stats().gave_up && std::chrono::steady_clock::now() < until)
    std::this_thread::yield();
  EXPECT_TRUE(sut->stats().gave_up);
  // A task enqueued now is not stuck with the worker that gave up: another
  // worker runs it (reclaimed after the visibility timeout if the first
  // one read it before it noticed).
  auto id = producer->enqueue_payload("echo", "after");
  ASSERT_TRUE(id);
  worker other{rt, cfg};
  other.handle(
      "echo",
      [](task_context&, std::string_view p) -> caf::expected<std::string> {
        return std::string{p};
      });
  ASSERT_FALSE(other.start());
  auto info = wait_for(*id);
  EXPECT_EQ(info.status, task_status::succeeded);
  EXPECT_EQ(info.result, "after");
  other.stop();
}

TEST_F(
    worker_test,
    one_task_at_a_time_a_stop_waiting_for_a_stuck_task_sleeps_until_its_deadline) {
  auto release = std::make_shared<test::gate>();
  start_stuck_one_at_a_time(release);
  expect_stop_sleeps_for(1s);
  release->open();
}

TEST_F(
    worker_test,
    a_stop_waiting_for_a_stuck_task_with_redis_down_sleeps_until_its_deadline) {
  auto release = std::make_shared<test::gate>();
  start_stuck_one_at_a_time(release);
  actorbus::queue::detail::embedded_redis_testing::crash(*redis);
  // Long enough for a sweep (every 20 ms) to find Redis gone, so that the
  // stop waits between reconnect attempts (were it not found, the stop
  // would wait as in the test above).
  std::this_thread::sleep_for(200ms);
  expect_stop_sleeps_for(1s);
  release->open();
}

TEST_F(
    worker_test,
    one_task_at_a_time_a_task_finishing_after_its_timeout_is_not_acknowledged_again) {
  // The handler actor is still running the timed-out task when the reading
  // thread hands it the next one (and the loop with it): the late finish of
  // the first must not count as a success of a task already dead-lettered.
  auto release = std::make_shared<test::gate>();
  task_options opts;
  opts.timeout = 50ms;
  opts.max_attempts = 1;
  std::string slow;
  start_stuck_one_at_a_time(release, opts, &slow);
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i)
    ids.push_back(*producer->enqueue("add", {}, i, 1));
  auto timed_out = wait_for(slow);
  EXPECT_EQ(timed_out.status, task_status::dead);
  release->open();
  for (size_t i = 0; i < ids.size(); ++i) {
    auto info = wait_for(ids[i]);
    EXPECT_EQ(info.status, task_status::succeeded) << i;
    EXPECT_EQ(std::get<0>(*decode<int>(info.result)), static_cast<int>(i) + 1);
  }
  sut->stop();
  auto info = producer->status(slow);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->status, task_status::dead);
  EXPECT_EQ(sut->stats().succeeded, ids.size());
  EXPECT_EQ(sut->stats().dead_lettered, 1u);
}

TEST_F(worker_test,
       tasks_waiting_for_a_restarting_handler_actor_are_waited_for_asleep) {
  cfg.concurrency = 1;
  cfg.batch_size = 8;
  cfg.handler_restart_backoff.min = 1s;
  cfg.handler_restart_backoff.max = 1s;
  auto first = started_handler();
  ASSERT_TRUE(first);
  auto wall0 = std::chrono::steady_clock::now();
  auto cpu0 = process_cpu_time();
  caf::anon_send_exit(first, caf::exit_reason::kill);
  // Read while no handler actor lives: they wait a second for its restart,
  // and so does the reading thread, without asking Redis again and again.
  auto id = producer->enqueue("add", {}, 20, 22);
  ASSERT_TRUE(id);
  auto info = wait_for(*id);
  auto cpu = process_cpu_time() - cpu0;
  auto wall = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - wall0);
  EXPECT_EQ(info.status, task_status::succeeded);
  EXPECT_EQ(reaches([&] { return sut->stats().handler_restarts; }, 1), 1u);
  EXPECT_GE(wall, 1s);
  EXPECT_LT(cpu * 4, wall) << "CPU " << cpu.count() << " us in " << wall.count()
                           << " us";
}

TEST_F(worker_test,
       a_timed_out_task_stays_failed_when_its_handler_returns_before_the_ack) {
  // The acknowledgement of the timeout is lost with Redis; meanwhile the
  // handler returns. The acknowledgement sent again must still be the
  // timeout's, not the late result.
  test::gate release;
  test::gate returned;
  test::gate crashed;
  sut->handle(
      "stuck",
      [&](task_context&, std::string_view) -> caf::expected<std::string> {
        if (!release.pass())
          return caf::make_error(caf::sec::runtime_error, "never released");
        returned.open();
        return std::string{"late"};
      });
  std::atomic<bool> first{true};
  detail::on_fault_point(*sut, [&](detail::fault_point p) {
    if (p != detail::fault_point::after_effect || !first.exchange(false))
      return;
    // The timeout's acknowledgement is sent: its reply never comes.
    actorbus::queue::detail::embedded_redis_testing::crash(*redis);
    release.open();
    static_cast<void>(returned.pass());
    crashed.open();
  });
  ASSERT_FALSE(sut->start());
  task_options opts;
  opts.timeout = 50ms;
  opts.max_attempts = 1;
  ASSERT_TRUE(producer->enqueue_payload("stuck", "", opts));
  ASSERT_TRUE(crashed.pass());
  ASSERT_FALSE(redis->restart());
  sut->stop(5s);
  EXPECT_EQ(sut->stats().dead_lettered, 1u);
  EXPECT_EQ(sut->stats().succeeded, 0u);
}

TEST_F(worker_test,
       a_task_whose_acknowledgement_waits_out_a_redis_stall_runs_once) {
  // Redis takes no writes for longer than the visibility timeout: the
  // finished task's acknowledgement fails, and its entry's lease runs out
  // meanwhile. Once Redis is back, the worker acknowledges it; its own
  // sweep must not take it back and run it again.
  cfg.visibility_timeout = 300ms;
  cfg.io_timeout = 200ms;
  make_sut();
  std::atomic<int> runs{0};
  test::gate ran;
  sut->handle(
      "once",
      [&](task_context&, std::string_view) -> caf::expected<std::string> {
        if (++runs == 1)
          ran.open();
        return std::string{"done"};
      });
  std::atomic<bool> first{true};
  test::gate acked;
  detail::on_fault_point(*sut, [&](detail::fault_point p) {
    if (p == detail::fault_point::before_handle && first.exchange(false)) {
      auto paused = producer->command({"CLIENT", "PAUSE", "1500", "WRITE"});
      EXPECT_TRUE(paused) << to_string(paused.error());
    } else if (p == detail::fault_point::after_ack) {
      acked.open();
    }
  });
  ASSERT_FALSE(sut->start());
  auto id = producer->enqueue_payload("once", "");
  ASSERT_TRUE(id);
  ASSERT_TRUE(acked.pass());
  // A second run would have been handed out before the acknowledgement.
  sut->stop();
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(sut->stats().succeeded, 1u);
  auto info = producer->status(*id);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->status, task_status::succeeded);
}

} // namespace
