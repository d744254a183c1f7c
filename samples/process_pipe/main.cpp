// Seed pattern "Process Communication": a parent and a worker process linked
// by a pipe; the parent sends work items and reads each result, then sends
// "STOP". Here the pipe is an actorbus shared-memory channel, which also
// tells the parent if the worker dies instead of hanging.
//
// Usage: process_pipe [items]   (default 10)

#include "actorbus/ipc/channel.hpp"

#include "command_line.hpp"
#include "process_pipe.hpp"

#include <fmt/core.h>

#include <string>
#include <sys/wait.h>
#include <unistd.h>

namespace ipc = actorbus::ipc;
namespace pp = actorbus::samples::process_pipe;

int main(int argc, char** argv) {
  int items = 10;
  CLI::App app{"A parent sends work items to a worker process over a "
               "shared-memory channel and reads each result.",
               "process_pipe"};
  app.add_option("items", items, "work items to send")
      ->capture_default_str()
      ->check(CLI::Range(0, 1'000'000));
  if (auto rc = actorbus::samples::parse_command_line(app, argc, argv))
    return *rc;
  auto name = "actorbus-process-pipe-" + std::to_string(::getpid());
  auto parent_conn = ipc::channel::create(name);
  if (!parent_conn) {
    fmt::print(stderr, "process_pipe: {}\n",
               ipc::describe(parent_conn.error()));
    return 1;
  }
  auto pid = pp::start_worker(name);
  auto total = pp::send_items(*parent_conn, items, [](const std::string& r) {
    fmt::print("Got result: {}\n", r);
  });
  if (!total) {
    fmt::print("process_pipe: worker failed: {}\n",
               ipc::describe(total.error()));
    return 1;
  }
  int status = pp::stop_worker(*parent_conn, pid);
  fmt::print("sum of squares 1..{} = {}\n", items, *total);
  fmt::print("worker exited with {}\n", WEXITSTATUS(status));
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
