// task_queue: a distributed task queue on Redis (seed exercise 5).
//
//   task_queue worker --url URL [--concurrency N]   run handlers until SIGTERM
//   task_queue enqueue --url URL NAME [INT...]      enqueue, print the id
//   task_queue status --url URL ID                  print a task's status
//   task_queue dead-letters --url URL [list | requeue ENTRY]
//   task_queue demo [--tasks N]                     producer + 2 worker
//                                                   processes, end to end
// Without --url, `demo` starts a private redis-server on a Unix socket.

#include "actorbus/queue/client.hpp"
#include "actorbus/queue/worker.hpp"
#include "actorbus/runtime/runtime.hpp"
#include "actorbus/runtime/signals.hpp"

#include "command_line.hpp"

#include <fmt/core.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

using namespace actorbus;
using namespace std::chrono_literals;

namespace {

struct args {
  std::string command;
  std::string url;
  size_t concurrency = 2;
  int tasks = 200;
  std::vector<std::string> rest;
  runtime::runtime_config runtime_cfg;
};

// Adds the subcommands and their options to `app`, storing into `out`.
void add_commands(CLI::App& app, args& out) {
  app.require_subcommand(1);
  auto url_of = [&out](CLI::App* cmd, const char* what) {
    return cmd->add_option("--url", out.url, what)
        ->type_name("redis://host:port|unix:///path");
  };
  auto worker = app.add_subcommand("worker", "run handlers until SIGTERM");
  url_of(worker, "the Redis to take tasks from")->required();
  worker->add_option("--concurrency", out.concurrency, "handler actors")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1024}));
  auto enqueue = app.add_subcommand("enqueue", "enqueue a task, print its id");
  url_of(enqueue, "the Redis to enqueue on")->required();
  enqueue->add_option("NAME INT", out.rest, "task name and integer argument")
      ->required()
      ->expected(1, 2);
  auto status = app.add_subcommand("status", "print a task's status");
  url_of(status, "the Redis holding the task")->required();
  status->add_option("ID", out.rest, "the task's id")->required()->expected(1);
  auto dead =
      app.add_subcommand("dead-letters", "list dead letters, or requeue one");
  url_of(dead, "the Redis holding the dead letters")->required();
  dead->add_option("list|requeue ENTRY", out.rest,
                   "`list` (default) or `requeue ENTRY`")
      ->expected(0, 2);
  auto demo =
      app.add_subcommand("demo", "producer and 2 worker processes, end to end");
  url_of(demo, "a Redis to use (default: a private redis-server)");
  demo->add_option("--tasks", out.tasks, "tasks in the squares batch")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  for (auto* cmd : app.get_subcommands([](CLI::App*) { return true; }))
    cmd->callback([&out, cmd] { out.command = cmd->get_name(); });
}

queue::queue_config config_of(const args& a) {
  queue::queue_config cfg;
  cfg.url = a.url;
  cfg.concurrency = a.concurrency;
  cfg.visibility_timeout = 5s;
  cfg.sweep_interval = 200ms;
  return cfg;
}

// -- worker -------------------------------------------------------------------

void register_handlers(queue::worker& w) {
  w.handle_typed<int64_t>(
      "square",
      [](queue::task_context&, int64_t x) -> caf::expected<std::string> {
        return queue::encode(x * x);
      });
  // Credits an account; the credit is an effect applied with the ack, so a
  // charge enqueued twice under one idempotency key lands once.
  w.handle_typed<std::string, int64_t>(
      "charge",
      [](queue::task_context& ctx, const std::string& account,
         int64_t amount) -> caf::expected<std::string> {
        ctx.add_effect(
            {"INCRBY", "balance:" + account, std::to_string(amount)});
        return queue::encode(amount);
      });
  w.handle("flaky",
           [](queue::task_context& ctx,
              std::string_view) -> caf::expected<std::string> {
             return caf::make_error(
                 caf::sec::runtime_error,
                 fmt::format("flaky failed attempt {}", ctx.attempt()));
           });
}

int run_worker(args& a) {
  if (a.url.empty()) {
    fmt::print(stderr, "worker: --url is required\n");
    return 2;
  }
  runtime::signal_waiter signals;
  runtime::runtime rt{std::move(a.runtime_cfg)};
  queue::worker w{rt, config_of(a)};
  register_handlers(w);
  if (auto err = w.start()) {
    fmt::print(stderr, "worker: {}\n", rt.system().render(err));
    return 1;
  }
  fmt::print("worker {} ready\n", w.consumer());
  std::fflush(stdout);
  while (!signals.wait_for(1h)) {
    // Keep running until SIGINT or SIGTERM.
  }
  w.stop(5s);
  auto st = w.stats();
  fmt::print("worker {} stopped: {} succeeded, {} retried, {} dead-lettered\n",
             w.consumer(), st.succeeded, st.retried, st.dead_lettered);
  return 0;
}

// -- producer commands
// ----------------------------------------------------------

caf::expected<queue::client> connect(const args& a) {
  if (a.url.empty())
    return caf::make_error(caf::sec::invalid_argument, "--url is required");
  return queue::client::connect(config_of(a));
}

int run_enqueue(const args& a) {
  auto c = connect(a);
  if (!c || a.rest.empty()) {
    fmt::print(stderr, "enqueue: need --url and a task name\n");
    return 2;
  }
  caf::expected<std::string> id = caf::error{};
  if (a.rest.size() == 2)
    id =
        c->enqueue(a.rest[0], {}, std::strtoll(a.rest[1].c_str(), nullptr, 10));
  else
    id = c->enqueue_payload(a.rest[0], queue::encode());
  if (!id) {
    fmt::print(stderr, "enqueue: {}\n", to_string(id.error()));
    return 1;
  }
  fmt::print("{}\n", *id);
  return 0;
}

int run_status(const args& a) {
  auto c = connect(a);
  if (!c || a.rest.empty()) {
    fmt::print(stderr, "status: need --url and a task id\n");
    return 2;
  }
  auto info = c->status(a.rest[0]);
  if (!info) {
    fmt::print(stderr, "status: {}\n", to_string(info.error()));
    return 1;
  }
  std::string result = info->result;
  if (auto x = queue::decode<int64_t>(info->result))
    result = std::to_string(std::get<0>(*x));
  fmt::print("{} {} name={} attempt={} result={} error={}\n", info->id,
             queue::to_string(info->status), info->name, info->attempt, result,
             info->error);
  return 0;
}

int run_dead_letters(const args& a) {
  auto c = connect(a);
  if (!c) {
    fmt::print(stderr, "dead-letters: need --url\n");
    return 2;
  }
  if (!a.rest.empty() && a.rest[0] == "requeue") {
    if (a.rest.size() < 2) {
      fmt::print(stderr, "dead-letters requeue: need an entry id\n");
      return 2;
    }
    auto id = c->requeue(a.rest[1]);
    if (!id) {
      fmt::print(stderr, "requeue: {}\n", to_string(id.error()));
      return 1;
    }
    fmt::print("requeued as {}\n", *id);
    return 0;
  }
  auto xs = c->dead_tasks();
  if (!xs) {
    fmt::print(stderr, "dead-letters: {}\n", to_string(xs.error()));
    return 1;
  }
  for (auto& d : *xs)
    fmt::print("{} task={} name={} attempts={} reason={}\n", d.entry, d.task_id,
               d.name, d.attempts, d.reason);
  return 0;
}

// -- demo
// -------------------------------------------------------------------------

pid_t spawn_worker_process(const std::string& url) {
  std::string self = "/proc/self/exe";
  std::vector<std::string> argv_s{"task_queue", "worker", "--url", url};
  std::vector<char*> argv;
  for (auto& s : argv_s)
    argv.push_back(s.data());
  argv.push_back(nullptr);
  auto pid = fork();
  if (pid == 0) {
    execv(self.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

int run_demo(const args& a) {
  queue::queue_config cfg = config_of(a);
  auto c = queue::client::connect(cfg); // no URL: a private redis-server
  if (!c) {
    fmt::print(stderr, "demo: {}\n", to_string(c.error()));
    return 1;
  }
  auto url = c->url();
  fmt::print("demo: redis at {}{}\n", url, a.url.empty() ? " (embedded)" : "");
  std::vector<pid_t> workers{spawn_worker_process(url),
                             spawn_worker_process(url)};
  auto fail = [&](const std::string& what) {
    fmt::print("demo: FAILED: {}\n", what);
    for (auto pid : workers)
      kill(pid, SIGKILL);
    return 1;
  };
  // Squares, as a batch.
  std::vector<std::string> payloads;
  for (int64_t i = 1; i <= a.tasks; ++i)
    payloads.push_back(queue::encode(i));
  auto ids = c->enqueue_many("square", payloads);
  if (!ids)
    return fail(to_string(ids.error()));
  // Charges, each enqueued twice under one idempotency key.
  std::vector<std::string> charges;
  for (int i = 0; i < 50; ++i) {
    queue::task_options opts;
    opts.idempotency_key = fmt::format("charge-{}", i);
    for (int copy = 0; copy < 2; ++copy) {
      auto id = c->enqueue("charge", opts, std::string{"alice"}, int64_t{10});
      if (!id)
        return fail(to_string(id.error()));
      charges.push_back(*id);
    }
  }
  // One task nobody handles, one that always fails.
  auto unknown = c->enqueue("resize_image", {}, std::string{"cat.png"});
  queue::task_options twice;
  twice.max_attempts = 2;
  twice.backoff.min = 20ms;
  auto flaky = c->enqueue_payload("flaky", queue::encode(), twice);
  if (!unknown || !flaky)
    return fail("enqueue failed");
  int64_t sum = 0;
  int ok = 0;
  for (auto& id : *ids) {
    auto info = c->wait(id, 30s);
    if (!info)
      return fail("wait: " + to_string(info.error()));
    if (info->status != queue::task_status::succeeded)
      continue;
    ++ok;
    if (auto x = queue::decode<int64_t>(info->result))
      sum += std::get<0>(*x);
  }
  int64_t n = a.tasks;
  fmt::print("demo: {} tasks succeeded; sum of squares 1..{} = {} (expected "
             "{})\n",
             ok, n, sum, n * (n + 1) * (2 * n + 1) / 6);
  for (auto& id : charges)
    if (!c->wait(id, 30s))
      return fail("charge did not finish");
  auto balance = c->command({"GET", "balance:alice"});
  fmt::print("demo: charges applied once: balance {} (50 charges of 10, each "
             "enqueued twice)\n",
             balance ? *balance : "?");
  if (!c->wait(*unknown, 30s) || !c->wait(*flaky, 30s))
    return fail("dead letters did not arrive");
  auto dead = c->dead_tasks();
  if (!dead)
    return fail(to_string(dead.error()));
  std::string reasons;
  for (auto& d : *dead)
    reasons += (reasons.empty() ? "" : "; ") + d.reason;
  fmt::print("demo: dead letters: {} ({})\n", dead->size(), reasons);
  // Requeue a dead letter: it runs again with fresh attempts (and, since
  // still no worker knows its name, comes back with the same reason).
  for (auto& d : *dead) {
    if (d.name != "resize_image")
      continue;
    auto again = c->requeue(d.entry);
    if (!again)
      return fail("requeue: " + to_string(again.error()));
    auto info = c->wait(*again, 30s);
    if (!info)
      return fail("requeued task did not finish");
    fmt::print("demo: requeued dead letter {} as task {}: {} ({})\n", d.entry,
               *again, queue::to_string(info->status), info->error);
  }
  int graceful = 0;
  for (auto pid : workers) {
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
      ++graceful;
  }
  fmt::print("demo: {} workers stopped gracefully\n", graceful);
  return graceful == 2 ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
  args a;
  CLI::App app{"A distributed task queue on Redis: workers, producers, "
               "dead letters.",
               "task_queue"};
  add_commands(app, a);
  if (auto rc =
          actorbus::samples::parse_command_line(app, a.runtime_cfg, argc, argv))
    return *rc;
  if (a.command == "worker")
    return run_worker(a);
  if (a.command == "enqueue")
    return run_enqueue(a);
  if (a.command == "status")
    return run_status(a);
  if (a.command == "dead-letters")
    return run_dead_letters(a);
  if (a.command == "demo")
    return run_demo(a);
  return actorbus::samples::bad_usage; // CLI11 requires one subcommand
}
