#include "actorbus/ipc/process_pool.hpp"

#include "actorbus/ipc/shared_array.hpp"

#include "ipc_names.hpp"

#include <caf/meta/type_name.hpp>
#include <caf/sec.hpp>

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <future>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <unistd.h>

using namespace actorbus::ipc;
using namespace std::chrono_literals;
using actorbus::ipc::testing::unique_shm_name;
using actorbus::ipc::testing::watchdog;

namespace {

int64_t cpu_bound_task(int64_t n) {
  int64_t sum = 0;
  for (int64_t i = 0; i < n; ++i)
    sum += i * i;
  return sum;
}

// Shared with the forked workers (the mapping is inherited): per task, the
// pid that started it and how often it ran.
std::atomic<int64_t>* started_by = nullptr;
std::atomic<int64_t>* runs = nullptr;

// Task i spins for 300 ms of CPU time, recording who runs it.
int64_t slow_task(int64_t i) {
  started_by[i].store(::getpid());
  runs[i].fetch_add(1);
  auto until = std::chrono::steady_clock::now() + 300ms;
  while (std::chrono::steady_clock::now() < until)
    ; // busy: the worker is mid-task for the whole time
  return i * 10;
}

// Negative arguments never finish.
int64_t maybe_endless_task(int64_t x) {
  volatile int64_t spins = 0;
  while (x < 0)
    spins = spins + 1; // an endless loop the compiler must keep
  return x * 2;
}

process_pool_options with_workers(size_t n) {
  process_pool_options opts;
  opts.workers = n;
  return opts;
}

struct process_pool_test : ::testing::Test {
  unique_shm_name name{"pool"};
  watchdog guard{60s};
};

} // namespace

TEST_F(process_pool_test, map_returns_results_in_input_order) {
  process_pool<int64_t, int64_t> sut{cpu_bound_task, with_workers(2)};
  ASSERT_FALSE(sut.start_error()) << describe(sut.start_error());
  std::vector<int64_t> args;
  for (int64_t i = 0; i < 50; ++i)
    args.push_back(i * 1000);
  auto res = sut.map(args);
  ASSERT_TRUE(res) << describe(res.error());
  ASSERT_EQ(res->size(), args.size());
  for (size_t i = 0; i < args.size(); ++i)
    EXPECT_EQ((*res)[i], cpu_bound_task(args[i]));
  EXPECT_EQ(sut.restarts(), 0u);
}

TEST_F(process_pool_test, map_unordered_returns_every_result_exactly_once) {
  process_pool<int64_t, int64_t> sut{cpu_bound_task, with_workers(2)};
  std::vector<int64_t> args{5, 50000, 7, 300000, 1, 20};
  auto res = sut.map_unordered(args);
  ASSERT_TRUE(res) << describe(res.error());
  std::set<size_t> seen;
  for (auto& [i, r] : *res) {
    EXPECT_TRUE(seen.insert(i).second);
    EXPECT_EQ(r, cpu_bound_task(args[i]));
  }
  EXPECT_EQ(seen.size(), args.size());
}

TEST_F(process_pool_test, submit_delivers_one_result_through_a_task_future) {
  process_pool<int64_t, int64_t> sut{cpu_bound_task, with_workers(1)};
  actorbus::actors::task_future<int64_t> fut = sut.submit(1000);
  auto res = fut.get(30s);
  ASSERT_TRUE(res) << describe(res.error());
  EXPECT_EQ(*res, 332833500);
}

namespace {

// The threads of this process, from /proc.
size_t thread_count() {
  size_t n = 0;
  for (auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    static_cast<void>(entry);
    ++n;
  }
  return n;
}

} // namespace

TEST_F(process_pool_test, submit_starts_no_thread_per_task) {
  auto table = shared_array<int64_t>::create(name.str(), {2, 8});
  ASSERT_TRUE(table);
  started_by = reinterpret_cast<std::atomic<int64_t>*>(table->data().data());
  runs = started_by + 8;
  process_pool<int64_t, int64_t> sut{slow_task, with_workers(1)};
  ASSERT_FALSE(sut.start_error()) << describe(sut.start_error());
  auto before = thread_count();
  std::vector<actorbus::actors::task_future<int64_t>> futs;
  for (int64_t i = 0; i < 4; ++i)
    futs.push_back(sut.submit(i));
  // Four tasks of 300 ms on one worker: all but at most one still wait.
  EXPECT_EQ(thread_count(), before);
  for (int64_t i = 0; i < 4; ++i) {
    auto res = futs[static_cast<size_t>(i)].get(30s);
    ASSERT_TRUE(res) << describe(res.error());
    EXPECT_EQ(*res, i * 10);
    EXPECT_EQ(runs[i].load(), 1) << "task " << i << " was sent once";
  }
}

namespace {

// A value that is not trivially copyable, with CAF's inspect.
struct labelled {
  std::string label;
  std::vector<int32_t> values;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, labelled& x) {
  return f(caf::meta::type_name("labelled"), x.label, x.values);
}

labelled sum_up(const labelled& x) {
  int32_t sum = 0;
  for (auto v : x.values)
    sum += v;
  return labelled{x.label + "!", {sum}};
}

int64_t throwing_task(int64_t x) {
  if (x < 0)
    throw std::runtime_error("negative input " + std::to_string(x));
  return x + 1;
}

} // namespace

TEST_F(process_pool_test, values_with_an_inspect_overload_cross_both_ways) {
  process_pool<labelled, labelled> sut{sum_up, with_workers(2)};
  ASSERT_FALSE(sut.start_error()) << describe(sut.start_error());
  auto res = sut.map({labelled{"a", {1, 2, 3}}, labelled{"bb", {}}});
  ASSERT_TRUE(res) << describe(res.error());
  ASSERT_EQ(res->size(), 2u);
  EXPECT_EQ((*res)[0].label, "a!");
  EXPECT_EQ((*res)[0].values, std::vector<int32_t>{6});
  EXPECT_EQ((*res)[1].label, "bb!");
  auto one = sut.submit(labelled{"c", {40, 2}}).get(30s);
  ASSERT_TRUE(one) << describe(one.error());
  EXPECT_EQ(one->values, std::vector<int32_t>{42});
}

TEST_F(
    process_pool_test,
    a_task_that_throws_fails_with_the_exception_text_and_its_worker_goes_on) {
  process_pool<int64_t, int64_t> sut{throwing_task, with_workers(1)};
  ASSERT_FALSE(sut.start_error()) << describe(sut.start_error());
  auto pids = sut.worker_pids();
  auto res = sut.submit(-5).get(30s);
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), caf::sec::runtime_error) << describe(res.error());
  EXPECT_NE(describe(res.error()).find("negative input -5"), std::string::npos)
      << describe(res.error());
  auto next = sut.submit(1).get(30s);
  ASSERT_TRUE(next) << describe(next.error());
  EXPECT_EQ(*next, 2);
  EXPECT_EQ(sut.restarts(), 0u);
  EXPECT_EQ(sut.worker_pids(), pids);
}

TEST_F(process_pool_test,
       a_worker_killed_mid_task_is_replaced_and_the_task_rerun) {
  auto table = shared_array<int64_t>::create(name.str(), {2, 8});
  ASSERT_TRUE(table);
  started_by = reinterpret_cast<std::atomic<int64_t>*>(table->data().data());
  runs = started_by + 8;
  process_pool<int64_t, int64_t> sut{slow_task, with_workers(2)};
  ASSERT_FALSE(sut.start_error());
  auto pending = std::async(std::launch::async, [&] {
    return sut.map({0, 1, 2, 3});
  });
  // Wait (bounded) until a worker is inside task 0, then kill it.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (started_by[0].load() == 0 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  auto victim = static_cast<pid_t>(started_by[0].load());
  ASSERT_NE(victim, 0);
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  ASSERT_EQ(pending.wait_for(30s), std::future_status::ready);
  auto res = pending.get();
  ASSERT_TRUE(res) << describe(res.error());
  EXPECT_EQ(*res, (std::vector<int64_t>{0, 10, 20, 30}));
  EXPECT_EQ(sut.restarts(), 1u);
  EXPECT_EQ(runs[0].load(), 2) << "the interrupted task ran again";
  EXPECT_NE(started_by[0].load(), victim) << "on another process";
  for (auto pid : sut.worker_pids())
    EXPECT_NE(pid, victim);
}

TEST_F(process_pool_test,
       a_task_beyond_its_timeout_fails_and_the_pool_goes_on) {
  auto opts = with_workers(1);
  opts.task_timeout = 200ms;
  process_pool<int64_t, int64_t> sut{maybe_endless_task, opts};
  auto res = sut.map({-1});
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), errc::timeout) << describe(res.error());
  // The stuck worker was replaced: the next task runs on a fresh one.
  auto again = sut.map({21});
  ASSERT_TRUE(again) << describe(again.error());
  EXPECT_EQ(again->front(), 42);
  EXPECT_EQ(sut.restarts(), 1u);
}

namespace {

// Takes its worker down with it.
int64_t crashing_task(int64_t) {
  ::_exit(9);
}

} // namespace

TEST_F(process_pool_test, workers_dying_too_often_make_the_pool_give_up) {
  auto opts = with_workers(1);
  opts.max_restarts = 2;
  opts.restart_period = 30s;
  process_pool<int64_t, int64_t> sut{crashing_task, opts};
  ASSERT_FALSE(sut.start_error()) << describe(sut.start_error());
  auto res = sut.map({1});
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), errc::peer_dead) << describe(res.error());
  EXPECT_NE(describe(res.error()).find("gave up"), std::string::npos)
      << describe(res.error());
  EXPECT_EQ(sut.restarts(), 2u);
  // Later tasks fail at once instead of waiting for a worker.
  auto again = sut.map({2, 3});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), errc::peer_dead);
}

TEST_F(process_pool_test, restarts_back_off_between_crashes) {
  auto opts = with_workers(1);
  opts.max_restarts = 3;
  opts.restart_period = 30s;
  opts.restart_backoff = {.min = 100ms, .max = 1s};
  process_pool<int64_t, int64_t> sut{crashing_task, opts};
  auto t0 = std::chrono::steady_clock::now();
  auto res = sut.map({1});
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(res);
  // Three restarts waited 100 + 200 + 400 ms before the pool gave up.
  EXPECT_GE(took, 700ms);
  EXPECT_LE(took, 10s);
  EXPECT_EQ(sut.restarts(), 3u);
}

namespace {

// Negative arguments take their worker down; others return x * 10.
int64_t crash_on_negative(int64_t x) {
  if (x < 0)
    ::_exit(3);
  return x * 10;
}

// Returns i * 10; task 0 first ends its worker with exit status 0, as a task
// calling exit(0) would, and returns only when it runs again.
int64_t quitting_task(int64_t i) {
  if (i == 0 && runs[0].fetch_add(1) == 0)
    ::_exit(0);
  return i * 10;
}

} // namespace

TEST_F(process_pool_test,
       a_task_whose_worker_dies_on_it_max_task_attempts_times_fails_alone) {
  auto opts = with_workers(1);
  opts.max_task_attempts = 2;
  process_pool<int64_t, int64_t> sut{crash_on_negative, opts};
  ASSERT_FALSE(sut.start_error()) << describe(sut.start_error());
  auto doomed = sut.submit(-1);
  auto fine = sut.submit(4);
  auto res = doomed.get(30s);
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), errc::task_crashed) << describe(res.error());
  EXPECT_EQ(describe(res.error()),
            "ipc.task_crashed: its worker process died on it 2 times");
  auto other = fine.get(30s);
  ASSERT_TRUE(other) << describe(other.error());
  EXPECT_EQ(*other, 40);
  EXPECT_EQ(sut.restarts(), 2u);
}

namespace {

// More than the default max_frame of 64 KiB.
using oversized = std::array<char, 70000>;

oversized oversized_result(int64_t x) {
  oversized result{};
  result[0] = static_cast<char>(x);
  return result;
}

int64_t first_byte(oversized x) {
  return x[0];
}

// Fits a frame; a 1 MiB ring holds 34 of them.
using payload = std::array<char, 30000>;

// Counts its runs in runs[0].
payload echo(payload x) {
  runs[0].fetch_add(1);
  return x;
}

} // namespace

TEST_F(
    process_pool_test,
    a_worker_that_exits_with_status_0_mid_task_is_replaced_and_the_task_rerun) {
  auto table = shared_array<int64_t>::create(name.str(), {1, 8});
  ASSERT_TRUE(table);
  runs = reinterpret_cast<std::atomic<int64_t>*>(table->data().data());
  // Declared before the pool: if map hangs, destroying the pool ends it.
  std::future<caf::expected<std::vector<int64_t>>> pending;
  process_pool<int64_t, int64_t> sut{quitting_task, with_workers(1)};
  ASSERT_FALSE(sut.start_error()) << describe(sut.start_error());
  auto pids = sut.worker_pids();
  pending = std::async(std::launch::async, [&] {
    return sut.map({0, 1, 2, 3});
  });
  ASSERT_EQ(pending.wait_for(20s), std::future_status::ready)
      << "map still waits for a worker that was never replaced";
  auto res = pending.get();
  ASSERT_TRUE(res) << describe(res.error());
  EXPECT_EQ(*res, (std::vector<int64_t>{0, 10, 20, 30}));
  EXPECT_EQ(runs[0].load(), 2) << "the interrupted task ran again";
  EXPECT_EQ(sut.restarts(), 1u);
  EXPECT_NE(sut.worker_pids(), pids) << "on a new worker";
}

TEST_F(process_pool_test,
       a_result_larger_than_max_frame_fails_its_task_and_keeps_its_worker) {
  auto opts = with_workers(2);
  opts.task_timeout = 3s;
  std::future<caf::expected<std::vector<oversized>>> pending;
  process_pool<int64_t, oversized> sut{oversized_result, opts};
  ASSERT_FALSE(sut.start_error()) << describe(sut.start_error());
  auto pids = sut.worker_pids();
  pending = std::async(std::launch::async, [&] { return sut.map({1, 2, 3}); });
  ASSERT_EQ(pending.wait_for(20s), std::future_status::ready)
      << "map still waits for a worker that was never replaced";
  auto res = pending.get();
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), errc::frame_too_large) << describe(res.error());
  auto why = describe(res.error());
  EXPECT_NE(why.find("70000"), std::string::npos) << why;
  EXPECT_NE(why.find("65536"), std::string::npos) << why;
  // The same workers answer the next map the same way.
  auto again = sut.map({4});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), errc::frame_too_large) << describe(again.error());
  EXPECT_EQ(sut.restarts(), 0u);
  EXPECT_EQ(sut.worker_pids(), pids);
}

TEST_F(
    process_pool_test,
    an_argument_larger_than_max_frame_fails_its_task_and_no_worker_is_killed) {
  auto opts = with_workers(2);
  opts.max_restarts = 20;
  process_pool<oversized, int64_t> sut{first_byte, opts};
  ASSERT_FALSE(sut.start_error()) << describe(sut.start_error());
  auto pids = sut.worker_pids();
  auto res = sut.map({oversized{}, oversized{}});
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), errc::frame_too_large) << describe(res.error());
  auto why = describe(res.error());
  EXPECT_NE(why.find("70000"), std::string::npos) << why;
  EXPECT_NE(why.find("65536"), std::string::npos) << why;
  EXPECT_EQ(sut.restarts(), 0u);
  EXPECT_EQ(sut.worker_pids(), pids);
}

TEST_F(process_pool_test,
       large_arguments_and_results_of_short_tasks_complete_without_a_timeout) {
  auto table = shared_array<int64_t>::create(name.str(), {1, 8});
  ASSERT_TRUE(table);
  runs = reinterpret_cast<std::atomic<int64_t>*>(table->data().data());
  auto opts = with_workers(1);
  opts.task_timeout = 3s;
  opts.max_restarts = 3;
  process_pool<payload, payload> sut{echo, opts};
  ASSERT_FALSE(sut.start_error()) << describe(sut.start_error());
  // 400 tasks of 30 kB each way: 12 MB, a dozen rings' worth per direction,
  // and short, so that the pool sends many ahead.
  std::vector<payload> args(400);
  for (size_t i = 0; i < args.size(); ++i) {
    args[i][0] = static_cast<char>(i);
    args[i][args[i].size() - 1] = static_cast<char>(i / 256);
  }
  auto t0 = std::chrono::steady_clock::now();
  auto res = sut.map(args);
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(res) << describe(res.error()) << "; fn ran " << runs[0].load()
                   << " times, " << sut.restarts() << " restarts";
  ASSERT_EQ(res->size(), args.size());
  for (size_t i = 0; i < args.size(); ++i)
    ASSERT_EQ((*res)[i], args[i]) << "task " << i;
  EXPECT_EQ(runs[0].load(), 400) << "every task ran once";
  EXPECT_EQ(sut.restarts(), 0u);
  // A driver and a worker waiting on each other end only by the timeout.
  EXPECT_LT(took, opts.task_timeout);
}

TEST_F(process_pool_test, destroying_the_pool_stops_and_reaps_every_worker) {
  std::vector<pid_t> pids;
  {
    process_pool<int64_t, int64_t> sut{cpu_bound_task, with_workers(3)};
    ASSERT_FALSE(sut.start_error());
    ASSERT_TRUE(sut.map({1, 2, 3}));
    pids = sut.worker_pids();
  }
  ASSERT_EQ(pids.size(), 3u);
  for (auto pid : pids) {
    ASSERT_GT(pid, 0);
    // A zombie would still answer kill(pid, 0).
    EXPECT_NE(::kill(pid, 0), 0) << "worker " << pid << " left behind";
    EXPECT_EQ(errno, ESRCH);
  }
}

TEST_F(process_pool_test, pools_in_static_objects_shut_down_cleanly_at_exit) {
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  auto pid = actorbus::ipc::testing::fork_child([&] {
    ::dup2(out[1], STDOUT_FILENO);
    ::close(out[0]);
    ::close(out[1]);
    ::execl(ACTORBUS_STATIC_POOL_PROGRAM, ACTORBUS_STATIC_POOL_PROGRAM,
            static_cast<char*>(nullptr));
    return 127;
  });
  ASSERT_GT(pid, 0);
  ::close(out[1]);
  std::string text;
  char buf[256];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof(buf))) > 0;)
    text.append(buf, static_cast<size_t>(n));
  ::close(out[0]);
  auto status = actorbus::ipc::testing::wait_child(pid, 30s);
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status << ", output: " << text;
  EXPECT_EQ(WEXITSTATUS(status), 0) << text;
  EXPECT_EQ(text.rfind("results 9 36\nworkers ", 0), 0u) << text;
  // Its three workers were stopped and reaped before it exited.
  std::istringstream pids{text.substr(text.find("workers ") + 8)};
  int count = 0;
  for (int worker = 0; pids >> worker; ++count)
    EXPECT_NE(::kill(worker, 0), 0) << "worker " << worker << " left behind";
  EXPECT_EQ(count, 3);
}
