#include "actorbus/ipc/process.hpp"

#include "actorbus/ipc/error.hpp"

#include "ipc_names.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>

#include <gtest/gtest.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <poll.h>
#include <set>
#include <sstream>
#include <string>
#include <sys/syscall.h>
#include <unistd.h>

using namespace actorbus;
using namespace actorbus::ipc;
using namespace std::chrono_literals;
using actorbus::ipc::testing::watchdog;

namespace {

// Writes "<role> <pid>\n" to the descriptor named by PROGRESS_FD.
void report(const char* what) {
  if (const char* fd = std::getenv("PROGRESS_FD")) {
    auto line = std::string{what} + " " + std::to_string(::getpid()) + "\n";
    [[maybe_unused]] auto n = ::write(std::atoi(fd), line.data(), line.size());
  }
}

// Worker roles of this test binary, re-executed by worker_role_process:
// "report" says hello and exits 0; "fail" exits 3; "grandparent" starts a
// `sleep` child of its own, reports the child's pid and dies abruptly.
int run_role(const std::string& role) {
  if (role == "report") {
    report("report");
    return 0;
  }
  if (role == "fail")
    return 3;
  if (role == "grandparent") {
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    auto child = launch_process(sys, exec_process("/bin/sleep", {"30"}));
    if (!child)
      return 4;
    auto line = "child " + std::to_string(child->pid) + "\n";
    if (const char* fd = std::getenv("PROGRESS_FD")) [[maybe_unused]]
      auto n = ::write(std::atoi(fd), line.data(), line.size());
    ::_exit(0); // no cleanup: only PR_SET_PDEATHSIG can stop the child
  }
  return 2;
}

// Runs before gtest's main: a re-executed copy of this binary does its role
// and exits instead of running the tests.
[[maybe_unused]] const bool dispatched = [] {
  if (auto role = current_worker_role())
    std::_Exit(run_role(*role));
  return false;
}();

// A pipe whose write end the started processes inherit; lines arrive in
// the test with a bounded wait.
class progress_pipe {
public:
  progress_pipe() {
    int fds[2];
    if (::pipe(fds) == 0) {
      rd_ = fds[0];
      wr_ = fds[1];
      ::fcntl(rd_, F_SETFD, FD_CLOEXEC);
    }
  }

  progress_pipe(const progress_pipe&) = delete;
  progress_pipe& operator=(const progress_pipe&) = delete;

  ~progress_pipe() {
    ::close(rd_);
    ::close(wr_);
  }

  std::string env() const {
    return "PROGRESS_FD=" + std::to_string(wr_);
  }

  int write_fd() const {
    return wr_;
  }

  /// The next line, or "" after `timeout`.
  std::string next_line(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto pos = buf_.find('\n'); pos != std::string::npos) {
        auto line = buf_.substr(0, pos);
        buf_.erase(0, pos + 1);
        return line;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd pfd{rd_, POLLIN, 0};
      if (left.count() <= 0 ||
          ::poll(&pfd, 1, static_cast<int>(left.count())) <= 0)
        return {};
      char chunk[256];
      auto n = ::read(rd_, chunk, sizeof(chunk));
      if (n <= 0)
        return {};
      buf_.append(chunk, static_cast<size_t>(n));
    }
  }

private:
  int rd_ = -1;
  int wr_ = -1;
  std::string buf_;
};

// The pid at the end of a progress line.
pid_t pid_in(const std::string& line) {
  auto pos = line.rfind(' ');
  return pos == std::string::npos ? 0 : std::atoi(line.c_str() + pos + 1);
}

// Children of this process that are zombies (exited, not reaped).
std::vector<pid_t> zombie_children() {
  std::vector<pid_t> result;
  auto* dir = ::opendir("/proc");
  if (!dir)
    return result;
  while (auto* entry = ::readdir(dir)) {
    auto pid = std::atoi(entry->d_name);
    if (pid <= 0)
      continue;
    std::ifstream in{"/proc/" + std::to_string(pid) + "/stat"};
    std::string text((std::istreambuf_iterator<char>(in)), {});
    auto close = text.rfind(')');
    if (close == std::string::npos)
      continue;
    std::istringstream rest{text.substr(close + 2)};
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == ::getpid() && state == 'Z')
      result.push_back(pid);
  }
  ::closedir(dir);
  return result;
}

// Waits (bounded) until process `pid`, not necessarily our child, is gone.
bool ends_within(pid_t pid, std::chrono::milliseconds timeout) {
  auto fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0)
    return errno == ESRCH; // already gone
  pollfd pfd{fd, POLLIN, 0};
  auto rc = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
  ::close(fd);
  return rc > 0;
}

struct process_test : ::testing::Test {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  progress_pipe progress;
  watchdog guard{60s};

  void TearDown() override {
    EXPECT_EQ(zombie_children(), std::vector<pid_t>{});
  }

  // The down message of `who`, waiting up to `timeout`.
  caf::error await_down(const caf::actor& who, caf::timespan timeout) {
    caf::error result = make_error(errc::timeout, "no down message");
    self->monitor(who);
    self->receive([&](caf::down_msg& dm) { result = std::move(dm.reason); },
                  caf::after(timeout) >> [] {});
    return result;
  }

  // This program in worker role `name`, reporting on the progress pipe.
  process_spec role(const std::string& name) {
    auto spec = worker_role_process(name);
    spec.env.push_back(progress.env());
    return spec;
  }

  // A shell command that reports "<tag> <pid>" on the progress pipe first.
  process_spec shell(const std::string& tag, const std::string& then) {
    return exec_process("/bin/sh",
                        {"-c", "echo " + tag + " $$ >&" +
                                   std::to_string(progress.write_fd()) + "; " +
                                   then});
  }
};

} // namespace

TEST_F(process_test, a_process_actor_exits_with_its_process) {
  auto ok = spawn_process(sys, shell("ok", "exit 0"));
  ASSERT_TRUE(ok) << describe(ok.error());
  EXPECT_FALSE(await_down(*ok, caf::timespan{10s}));
  auto bad = spawn_process(sys, shell("bad", "exit 3"));
  ASSERT_TRUE(bad);
  auto reason = await_down(*bad, caf::timespan{10s});
  EXPECT_EQ(reason, errc::peer_dead);
  EXPECT_NE(describe(reason).find("exited with status 3"), std::string::npos)
      << describe(reason);
}

TEST_F(process_test, a_missing_program_fails_to_start_with_a_clear_error) {
  auto sut = spawn_process(sys, exec_process("/nonexistent/worker"));
  ASSERT_FALSE(sut);
  EXPECT_EQ(sut.error(), errc::system_error);
  EXPECT_NE(describe(sut.error()).find("No such file"), std::string::npos)
      << describe(sut.error());
  EXPECT_EQ(spawn_process(sys, process_spec{}).error(), errc::invalid_argument);
}

TEST_F(process_test,
       a_dying_program_is_restarted_with_the_supervisors_backoff) {
  actors::supervisor_config sc;
  sc.max_restarts = 10;
  sc.period = caf::timespan{30s};
  sc.backoff.min = caf::timespan{100ms};
  sc.backoff.max = caf::timespan{400ms};
  // Dies at once: restarts wait 100, 200, 400, 400 ms. Each start reports
  // its wall-clock time in ns.
  sc.children.push_back(
      process_child("flaky", shell("start $(date +%s%N)", "exit 1")));
  auto sut = actors::spawn_supervisor(sys, std::move(sc));
  ASSERT_TRUE(sut);
  std::vector<std::chrono::nanoseconds> starts;
  std::set<pid_t> pids;
  for (int i = 0; i < 5; ++i) {
    auto line = progress.next_line(10s);
    ASSERT_FALSE(line.empty()) << "start " << i << " missing";
    starts.emplace_back(std::atoll(line.c_str() + line.find(' ') + 1));
    pids.insert(pid_in(line));
  }
  self->send_exit(*sut, caf::exit_reason::user_shutdown);
  EXPECT_EQ(pids.size(), 5u) << "each start is a new process";
  const std::chrono::milliseconds expected[] = {100ms, 200ms, 400ms, 400ms};
  for (size_t i = 0; i < 4; ++i) {
    auto gap = starts[i + 1] - starts[i];
    EXPECT_GE(gap, expected[i]) << "restart " << i;
    // Generous: a loaded machine delays exec and exit detection.
    EXPECT_LE(gap, expected[i] + 3s) << "restart " << i;
  }
  await_down(*sut, caf::timespan{10s});
}

TEST_F(process_test, a_program_dying_too_often_makes_the_supervisor_escalate) {
  actors::supervisor_config sc;
  sc.max_restarts = 2;
  sc.period = caf::timespan{30s};
  sc.backoff.min = caf::timespan{10ms};
  sc.backoff.max = caf::timespan{10ms};
  sc.children.push_back(process_child("doomed", shell("start", "exit 1")));
  auto sut = actors::spawn_supervisor(sys, std::move(sc));
  ASSERT_TRUE(sut);
  auto reason = await_down(*sut, caf::timespan{20s});
  EXPECT_EQ(reason, actors::make_error(actors::errc::intensity_exceeded));
  for (int i = 0; i < 3; ++i)
    EXPECT_FALSE(progress.next_line(1s).empty()) << "start " << i;
}

TEST_F(process_test, shutdown_terminates_and_reaps_every_process) {
  actors::supervisor_config sc;
  sc.children.push_back(process_child("sleeper", shell("up", "exec sleep 30")));
  auto stubborn = forked_process([fd = progress.write_fd()] {
    ::signal(SIGTERM, SIG_IGN); // only SIGKILL ends it
    auto line = "up " + std::to_string(::getpid()) + "\n";
    [[maybe_unused]] auto n = ::write(fd, line.data(), line.size());
    for (;;)
      ::pause();
    return 0;
  });
  stubborn.kill_timeout = 300ms;
  sc.children.push_back(process_child("stubborn", std::move(stubborn)));
  sc.children.push_back(process_child("role", worker_role_process("report"),
                                      actors::restart_type::transient));
  auto sut = actors::spawn_supervisor(sys, std::move(sc));
  ASSERT_TRUE(sut);
  std::vector<pid_t> pids;
  for (int i = 0; i < 2; ++i) {
    auto line = progress.next_line(10s);
    ASSERT_FALSE(line.empty());
    pids.push_back(pid_in(line));
  }
  self->request(*sut, caf::timespan{20s}, actors::stop_atom::value)
      .receive([](caf::ok_atom) {},
               [](caf::error& err) { FAIL() << describe(err); });
  for (auto pid : pids) {
    EXPECT_NE(::kill(pid, 0), 0) << "process " << pid << " still exists";
    EXPECT_EQ(errno, ESRCH);
  }
}

TEST_F(process_test, a_worker_role_runs_this_program_in_that_role) {
  auto sut = launch_process(sys, role("report"));
  ASSERT_TRUE(sut) << describe(sut.error());
  auto line = progress.next_line(10s);
  EXPECT_EQ(line, "report " + std::to_string(sut->pid));
  EXPECT_FALSE(await_down(sut->actor, caf::timespan{10s}));
  auto failing = spawn_process(sys, role("fail"));
  ASSERT_TRUE(failing);
  auto reason = await_down(*failing, caf::timespan{10s});
  EXPECT_NE(describe(reason).find("exited with status 3"), std::string::npos)
      << describe(reason);
  EXPECT_FALSE(current_worker_role()) << "this process has no role";
}

TEST_F(process_test, a_process_dies_with_the_process_that_started_it) {
  auto sut = spawn_process(sys, role("grandparent"));
  ASSERT_TRUE(sut) << describe(sut.error());
  auto line = progress.next_line(10s);
  ASSERT_EQ(line.rfind("child ", 0), 0u) << line;
  auto grandchild = pid_in(line);
  EXPECT_FALSE(await_down(*sut, caf::timespan{10s}));
  EXPECT_TRUE(ends_within(grandchild, 5s))
      << "process " << grandchild << " outlived its parent";
}

TEST_F(process_test, a_process_actor_dropped_by_everyone_kills_its_process) {
  pid_t pid = 0;
  {
    auto sut = launch_process(sys, shell("up", "exec sleep 30"));
    ASSERT_TRUE(sut);
    pid = sut->pid;
    ASSERT_EQ(pid_in(progress.next_line(10s)), pid);
    self->send_exit(sut->actor, caf::exit_reason::kill);
    // The down message follows the actor's cleanup, which reaps the child:
    // without it, TearDown could see the zombie the watcher is about to reap.
    EXPECT_EQ(await_down(sut->actor, 10s), caf::exit_reason::kill);
  }
  EXPECT_TRUE(ends_within(pid, 5s));
}
