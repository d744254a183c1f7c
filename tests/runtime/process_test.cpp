#include "actorbus/runtime/process.hpp"

#include "actorbus/runtime/error.hpp"

#include <caf/sec.hpp>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <future>
#include <poll.h>
#include <string>
#include <sys/syscall.h>
#include <thread>
#include <unistd.h>

using namespace actorbus;
using namespace actorbus::runtime;
using namespace std::chrono_literals;

namespace {

constexpr const char* role_env = "ACTORBUS_PROCESS_TEST_ROLE";

// The role "parent": starts `sleep 30` from a thread that ends at once,
// prints the child's pid on standard output and waits to be killed.
int run_parent_role() {
  caf::expected<child_process> child{caf::error{}};
  std::thread{[&] { child = child_process::spawn("sleep", {"30"}); }}.join();
  if (!child)
    return 4;
  auto line = std::to_string(child->pid()) + "\n";
  [[maybe_unused]] auto n = ::write(STDOUT_FILENO, line.data(), line.size());
  for (;;)
    ::pause();
}

// Runs before gtest's main: a re-executed copy of this binary plays its
// role instead of running the tests.
[[maybe_unused]] const bool dispatched = [] {
  if (const char* role = std::getenv(role_env);
      role && std::string{role} == "parent")
    std::_Exit(run_parent_role());
  return false;
}();

std::string this_program() {
  char buf[PATH_MAX];
  auto n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "/proc/self/exe";
}

// A pipe whose ends are closed when it goes out of scope.
struct pipe_ends {
  int rd = -1;
  int wr = -1;

  explicit pipe_ends(int flags = O_CLOEXEC) {
    int fds[2];
    if (::pipe2(fds, flags) == 0) {
      rd = fds[0];
      wr = fds[1];
    }
  }
  pipe_ends(const pipe_ends&) = delete;
  pipe_ends& operator=(const pipe_ends&) = delete;
  ~pipe_ends() {
    close_write();
    if (rd >= 0)
      ::close(rd);
  }

  void close_write() {
    if (wr >= 0)
      ::close(wr);
    wr = -1;
  }

  // The first line written to the pipe, or "" after `timeout`.
  std::string line(std::chrono::milliseconds timeout) const {
    std::string result;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd pfd{rd, POLLIN, 0};
      if (left.count() <= 0 ||
          ::poll(&pfd, 1, static_cast<int>(left.count())) <= 0)
        return {};
      char c = 0;
      if (::read(rd, &c, 1) != 1)
        return {};
      if (c == '\n')
        return result;
      result += c;
    }
  }
};

// Waits (bounded) until process `pidfd` refers to has ended.
bool ends_within(int pidfd, std::chrono::milliseconds timeout) {
  pollfd pfd{pidfd, POLLIN, 0};
  return ::poll(&pfd, 1, static_cast<int>(timeout.count())) > 0;
}

int pidfd_of(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

struct process_test : ::testing::Test {
  child_process sut;

  // Spawns `command` in /bin/sh, failing the test if it does not start.
  void shell(const std::string& command, process_options opts = {}) {
    auto res =
        child_process::spawn("/bin/sh", {"-c", command}, std::move(opts));
    ASSERT_TRUE(res) << describe(res.error());
    sut = std::move(*res);
  }
};

} // namespace

TEST_F(process_test, a_program_reports_the_status_it_exited_with) {
  shell("exit 3");
  auto status = sut.wait(10s);
  ASSERT_TRUE(status) << describe(status.error());
  EXPECT_EQ(*status, (exit_status{3, 0}));
  EXPECT_FALSE(status->success());
  EXPECT_EQ(to_string(*status), "exited with status 3");
  EXPECT_EQ(sut.status(), *status);
}

TEST_F(process_test, a_program_killed_by_a_signal_reports_the_signal) {
  shell("exec sleep 30");
  EXPECT_FALSE(sut.status());
  ASSERT_FALSE(sut.signal(SIGUSR1));
  auto status = sut.wait(10s);
  ASSERT_TRUE(status) << describe(status.error());
  EXPECT_EQ(status->signal, SIGUSR1);
  EXPECT_EQ(to_string(exit_status{0, SIGKILL}), "killed by signal 9 (Killed)");
}

TEST_F(process_test, a_forked_body_exits_with_its_result) {
  auto res = child_process::fork([] { return 5; });
  ASSERT_TRUE(res) << describe(res.error());
  sut = std::move(*res);
  auto status = sut.wait(10s);
  ASSERT_TRUE(status);
  EXPECT_EQ(status->code, 5);
}

TEST_F(process_test, terminate_stops_a_child_with_sigterm) {
  shell("exec sleep 30");
  auto status = sut.terminate(10s);
  ASSERT_TRUE(status) << describe(status.error());
  EXPECT_EQ(status->signal, SIGTERM);
}

TEST_F(process_test, terminate_kills_a_child_that_ignores_sigterm) {
  pipe_ends out;
  process_options opts;
  opts.stdout_fd = out.wr;
  shell("trap '' TERM; echo ready; exec sleep 30", opts);
  out.close_write();
  ASSERT_EQ(out.line(10s), "ready");
  auto t0 = std::chrono::steady_clock::now();
  auto status = sut.terminate(200ms);
  ASSERT_TRUE(status) << describe(status.error());
  EXPECT_EQ(status->signal, SIGKILL);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 200ms)
      << "SIGKILL came before the grace period ran out";
}

TEST_F(process_test, wait_gives_up_after_its_timeout_while_the_child_runs) {
  shell("exec sleep 30");
  auto status = sut.wait(50ms);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error(), errc::timeout) << describe(status.error());
  EXPECT_FALSE(sut.status());
}

TEST_F(process_test, destroying_the_owner_kills_and_reaps_the_child) {
  shell("exec sleep 30");
  auto pid = sut.pid();
  ASSERT_GT(pid, 0);
  sut = child_process{};
  EXPECT_EQ(sut.pid(), 0);
  // Reaped, not a zombie: the pid is no longer ours to signal.
  EXPECT_NE(::kill(pid, 0), 0);
  EXPECT_EQ(errno, ESRCH);
}

TEST_F(process_test, a_missing_program_fails_with_the_reason_from_errno) {
  auto res = child_process::spawn("/nonexistent/program");
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), errc::process_failed);
  EXPECT_EQ(describe(res.error()),
            "runtime.process_failed: exec of '/nonexistent/program': No such "
            "file or directory");
  auto empty = child_process::spawn("");
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error(), caf::sec::invalid_argument);
}

TEST_F(process_test, a_child_gets_the_environment_and_streams_it_is_given) {
  pipe_ends out;
  process_options opts;
  opts.env = {"ACTORBUS_GREETING=hello"};
  opts.stdout_fd = out.wr;
  shell("echo $ACTORBUS_GREETING", opts);
  out.close_write();
  EXPECT_EQ(out.line(10s), "hello");
  EXPECT_EQ(sut.wait(10s), (exit_status{0, 0}));
}

TEST_F(process_test, a_program_inherits_open_descriptors_only_when_told_to) {
  pipe_ends open_fd{0}; // not close-on-exec
  auto command = "echo x >&" + std::to_string(open_fd.wr);
  process_options opts;
  opts.stderr_fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  shell(command, opts);
  EXPECT_EQ(sut.wait(10s), (exit_status{0, 0}));
  opts.inherit_fds = false;
  shell(command, opts);
  auto status = sut.wait(10s);
  ASSERT_TRUE(status);
  EXPECT_FALSE(status->success()) << "the descriptor leaked into the child";
  ::close(opts.stderr_fd);
}

TEST_F(process_test, on_exit_is_called_with_the_status) {
  shell("exit 7");
  std::promise<exit_status> ended;
  auto res = ended.get_future();
  sut.on_exit([&](const exit_status& x) { ended.set_value(x); });
  ASSERT_EQ(res.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(res.get(), (exit_status{7, 0}));
}

TEST_F(process_test, a_child_dies_with_the_process_that_started_it) {
  pipe_ends out;
  process_options opts;
  opts.env = {std::string{role_env} + "=parent"};
  opts.stdout_fd = out.wr;
  auto res = child_process::spawn(this_program(), {}, opts);
  ASSERT_TRUE(res) << describe(res.error());
  sut = std::move(*res);
  out.close_write();
  auto grandchild = std::atoi(out.line(10s).c_str());
  ASSERT_GT(grandchild, 0);
  auto pidfd = pidfd_of(grandchild);
  ASSERT_GE(pidfd, 0) << "the grandchild should still run";
  EXPECT_FALSE(ends_within(pidfd, 0ms))
      << "the grandchild died with the thread that started it";
  ASSERT_FALSE(sut.signal(SIGKILL));
  EXPECT_EQ(sut.wait(10s), (exit_status{0, SIGKILL}));
  EXPECT_TRUE(ends_within(pidfd, 10s))
      << "process " << grandchild << " outlived its parent";
  ::close(pidfd);
}
