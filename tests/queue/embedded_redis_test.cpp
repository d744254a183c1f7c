#include "actorbus/queue/embedded_redis.hpp"

#include "actorbus/runtime/error.hpp"
#include "actorbus/runtime/process.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <poll.h>
#include <string>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

using namespace actorbus;
using namespace actorbus::queue;
using namespace std::chrono_literals;

namespace {

constexpr const char* role_env = "ACTORBUS_EMBEDDED_REDIS_TEST_ROLE";

// The role "user": a program using the embedded Redis as queues without a
// URL do. Prints "<server pid> <folder>" and waits to be killed.
int run_user_role() {
  auto redis = embedded_redis::shared();
  if (!redis)
    return 3;
  auto url = (*redis)->url();
  auto dir = std::filesystem::path{url.substr(url.find("//") + 2)}
                 .parent_path()
                 .string();
  std::printf("%d %s\n", (*redis)->pid(), dir.c_str());
  std::fflush(stdout);
  for (;;)
    ::pause();
}

// Runs before gtest's main: a re-executed copy of this binary plays its
// role instead of running the tests.
[[maybe_unused]] const bool dispatched = [] {
  if (const char* role = std::getenv(role_env);
      role && std::string{role} == "user")
    std::_Exit(run_user_role());
  return false;
}();

std::string this_program() {
  char buf[PATH_MAX];
  auto n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "/proc/self/exe";
}

// The first line on `fd`, or "" after `timeout`.
std::string read_line(int fd, std::chrono::milliseconds timeout) {
  std::string result;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd pfd{fd, POLLIN, 0};
    if (left.count() <= 0 ||
        ::poll(&pfd, 1, static_cast<int>(left.count())) <= 0)
      return {};
    char c = 0;
    if (::read(fd, &c, 1) != 1)
      return {};
    if (c == '\n')
      return result;
    result += c;
  }
}

// True when the server on the Unix socket `path` answers PING.
bool answers_ping(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
  bool ok = false;
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): sockets
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::write(fd, "PING\r\n", 6) == 6) {
    ok = read_line(fd, 5s) == "+PONG\r";
  }
  ::close(fd);
  return ok;
}

// A process watched through its pidfd (so a reused pid cannot fool it),
// and a folder watched through inotify; both waited for with a deadline.
class leftovers {
public:
  leftovers(pid_t server, std::string dir)
      : server_(server)
      , dir_(std::move(dir))
      , pidfd_(static_cast<int>(::syscall(SYS_pidfd_open, server, 0)))
      , inotify_(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK)) {
    ::inotify_add_watch(inotify_, dir_.c_str(), IN_DELETE_SELF);
  }

  leftovers(const leftovers&) = delete;
  leftovers& operator=(const leftovers&) = delete;

  // Removes what the program under test left behind, so that a failing
  // test leaves nothing either.
  ~leftovers() {
    if (pidfd_ >= 0) {
      ::syscall(SYS_pidfd_send_signal, pidfd_, SIGKILL, nullptr, 0);
      ::close(pidfd_);
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    ::close(inotify_);
  }

  bool server_running() const {
    pollfd pfd{pidfd_, POLLIN, 0};
    return pidfd_ >= 0 && ::poll(&pfd, 1, 0) == 0;
  }

  // Waits up to `timeout` for the server to end.
  bool server_ends_within(std::chrono::milliseconds timeout) const {
    pollfd pfd{pidfd_, POLLIN, 0};
    return ::poll(&pfd, 1, static_cast<int>(timeout.count())) > 0;
  }

  // Waits up to `timeout` for the folder to be removed.
  bool folder_removed_within(std::chrono::milliseconds timeout) const {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      std::error_code ec;
      if (!std::filesystem::exists(dir_, ec))
        return true;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd pfd{inotify_, POLLIN, 0};
      if (left.count() <= 0 ||
          ::poll(&pfd, 1, static_cast<int>(left.count())) < 0)
        return false;
      char events[4096];
      [[maybe_unused]] auto n = ::read(inotify_, events, sizeof(events));
    }
  }

  pid_t server() const noexcept {
    return server_;
  }

private:
  pid_t server_;
  std::string dir_;
  int pidfd_;
  int inotify_;
};

struct embedded_redis_test : ::testing::Test {
  std::unique_ptr<embedded_redis> sut;

  // The folder of the server at `url`.
  static std::string folder_of(const std::string& url) {
    return std::filesystem::path{url.substr(url.find("//") + 2)}
        .parent_path()
        .string();
  }

  // Starts this binary in the role "user", kills it with `sig` once its
  // server runs, and expects neither the server nor its folder to remain.
  void expect_nothing_left_after(int sig) {
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    runtime::process_options opts;
    opts.env.emplace_back(role_env);
    opts.env.back() += "=user";
    opts.stdout_fd = fds[1];
    auto program = runtime::child_process::spawn(this_program(), {}, opts);
    ::close(fds[1]);
    ASSERT_TRUE(program) << runtime::describe(program.error());
    auto line = read_line(fds[0], 20s);
    ::close(fds[0]);
    auto space = line.find(' ');
    ASSERT_NE(space, std::string::npos) << "no server: '" << line << "'";
    leftovers left{std::atoi(line.c_str()), line.substr(space + 1)};
    ASSERT_TRUE(left.server_running());
    ASSERT_FALSE(program->signal(sig));
    EXPECT_EQ(program->wait(10s), (runtime::exit_status{0, sig}));
    EXPECT_TRUE(left.server_ends_within(10s))
        << "redis-server " << left.server() << " outlived its program";
    EXPECT_TRUE(left.folder_removed_within(10s))
        << line.substr(space + 1) << " outlived its program";
  }
};

} // namespace

TEST_F(embedded_redis_test, a_started_server_answers_on_its_url) {
  auto res = embedded_redis::start();
  ASSERT_TRUE(res) << runtime::describe(res.error());
  sut = std::move(*res);
  ASSERT_EQ(sut->url().rfind("unix://", 0), 0u) << sut->url();
  EXPECT_GT(sut->pid(), 0);
  EXPECT_TRUE(answers_ping(sut->url().substr(7)));
}

TEST_F(embedded_redis_test,
       destroying_it_stops_the_server_and_removes_its_folder) {
  auto res = embedded_redis::start(true);
  ASSERT_TRUE(res) << runtime::describe(res.error());
  sut = std::move(*res);
  leftovers left{sut->pid(), folder_of(sut->url())};
  ASSERT_TRUE(left.server_running());
  sut.reset();
  EXPECT_FALSE(left.server_running());
  EXPECT_TRUE(left.folder_removed_within(0ms));
}

TEST_F(embedded_redis_test, a_stopped_server_restarts_on_the_same_url) {
  auto res = embedded_redis::start();
  ASSERT_TRUE(res) << runtime::describe(res.error());
  sut = std::move(*res);
  sut->stop();
  EXPECT_EQ(sut->pid(), 0);
  EXPECT_FALSE(answers_ping(sut->url().substr(7)));
  ASSERT_FALSE(sut->restart());
  EXPECT_TRUE(answers_ping(sut->url().substr(7)));
}

TEST_F(embedded_redis_test, sigkill_of_its_program_leaves_no_server_or_folder) {
  expect_nothing_left_after(SIGKILL);
}

TEST_F(embedded_redis_test, sigterm_of_its_program_leaves_no_server_or_folder) {
  expect_nothing_left_after(SIGTERM);
}
