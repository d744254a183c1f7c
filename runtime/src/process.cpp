#include "actorbus/runtime/process.hpp"

#include "actorbus/runtime/error.hpp"

#include <caf/sec.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <fcntl.h>
#include <future>
#include <mutex>
#include <new>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char** environ; // NOLINT: POSIX

namespace actorbus::runtime {

namespace {

using namespace std::chrono_literals;

// How long a child killed with SIGKILL may take to be reaped: it ends at
// once unless stuck in the kernel.
constexpr auto kill_wait = 10s;

// How long an exec may take to succeed or fail.
constexpr int exec_wait_ms = 10'000;

caf::error os_error(const std::string& what, int err) {
  return make_error(errc::process_failed, what + ": " + std::strerror(err));
}

int pidfd_open(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

int pidfd_send_signal(int pidfd, int sig) {
  return static_cast<int>(
      ::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

// argv and envp of an exec, built before fork: between fork and exec the
// child may only make async-signal-safe calls.
struct exec_image {
  std::vector<std::string> strings;
  std::vector<char*> argv;
  std::vector<char*> envp;

  exec_image(const std::string& path, const std::vector<std::string>& args,
             const std::vector<std::string>& env) {
    strings.push_back(path);
    strings.insert(strings.end(), args.begin(), args.end());
    auto argc = strings.size();
    auto overridden = [&](const char* entry) {
      const char* eq = std::strchr(entry, '=');
      auto len = eq ? static_cast<size_t>(eq - entry) : std::strlen(entry);
      return std::any_of(env.begin(), env.end(), [&](const std::string& x) {
        return x.size() > len && x.compare(0, len, entry, len) == 0 &&
               x[len] == '=';
      });
    };
    for (char** e = environ; e && *e; ++e)
      if (!overridden(*e))
        strings.emplace_back(*e);
    strings.insert(strings.end(), env.begin(), env.end());
    for (size_t i = 0; i < strings.size(); ++i)
      (i < argc ? argv : envp).push_back(strings[i].data());
    argv.push_back(nullptr);
    envp.push_back(nullptr);
  }
};

// Held from creating the exec-status pipe until its status was read, so that
// no child forked meanwhile (a forked body never execs) inherits the pipe's
// write end and delays the EOF that says the exec succeeded.
std::mutex forking_mx;

// Marks every descriptor above 2 close-on-exec (async-signal-safe).
void close_other_fds_on_exec() {
#ifdef SYS_close_range
  constexpr unsigned close_range_cloexec = 1U << 2; // CLOSE_RANGE_CLOEXEC
  if (::syscall(SYS_close_range, 3U, ~0U, close_range_cloexec) == 0)
    return;
#endif
  rlimit lim{};
  auto top =
      ::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY
          ? std::min<rlim_t>(lim.rlim_cur, 1 << 20)
          : 1 << 16;
  for (int fd = 3; fd < static_cast<int>(top); ++fd)
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
}

// Makes `fd` the child's descriptor `target` (async-signal-safe).
void redirect(int fd, int target) {
  if (fd < 0)
    return;
  if (fd == target)
    ::fcntl(fd, F_SETFD, 0); // dup2 would leave close-on-exec set
  else
    ::dup2(fd, target);
}

// Runs in the child right after fork: dies with the forking thread, and
// starts with default signal dispositions, an empty signal mask and its
// standard streams.
void prepare_child(pid_t parent, const process_options& opts) {
  if (opts.parent_death_signal != 0) {
    ::prctl(PR_SET_PDEATHSIG, opts.parent_death_signal);
    if (::getppid() != parent)
      ::_exit(127); // the parent died before PR_SET_PDEATHSIG took effect
  }
  for (int sig = 1; sig < NSIG; ++sig)
    if (sig != SIGKILL && sig != SIGSTOP)
      ::signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  ::pthread_sigmask(SIG_SETMASK, &none, nullptr);
  redirect(opts.stdin_fd, STDIN_FILENO);
  redirect(opts.stdout_fd, STDOUT_FILENO);
  redirect(opts.stderr_fd, STDERR_FILENO);
}

exit_status decode(const siginfo_t& info) {
  exit_status result;
  if (info.si_code == CLD_EXITED)
    result.code = info.si_status;
  else
    result.signal = info.si_status;
  return result;
}

} // namespace

std::string to_string(const exit_status& x) {
  if (x.signal == 0)
    return "exited with status " + std::to_string(x.code);
  auto result = "killed by signal " + std::to_string(x.signal);
  if (const char* name = ::strsignal(x.signal))
    result += std::string{" ("} + name + ")";
  return result;
}

// One child process and the thread that forked it, watches its pidfd and
// reaps it. Shared by the `child_process` and its watcher thread, which
// holds a reference until it returns.
struct child_process::impl : std::enable_shared_from_this<impl> {
  // Set before start, read by the watcher.
  std::string path_; // empty: run body_
  std::vector<std::string> args_;
  std::function<int()> body_;
  process_options opts_;

  pid_t pid_ = 0;
  int pidfd_ = -1; // open while the watcher runs
  std::thread thread_;
  mutable std::mutex mx_;
  std::condition_variable ended_;
  std::optional<exit_status> status_;               // guarded by mx_
  std::function<void(const exit_status&)> on_exit_; // guarded by mx_

  impl() = default;
  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;

  // Forks (on the watcher thread) and returns once the child runs (exec'd,
  // for programs) or failed to.
  caf::error start() {
    std::promise<caf::error> started;
    auto res = started.get_future();
    thread_ =
        std::thread{[self = shared_from_this(),
                     p = std::move(started)]() mutable { self->watch(p); }};
    auto err = res.get(); // bounded: fork_child waits at most exec_wait_ms
    if (err)
      thread_.join();
    return err;
  }

  // Reports errno from the child's failed exec through a close-on-exec
  // pipe: EOF means the exec (or the fork, for bodies) succeeded.
  caf::error fork_child() {
    std::lock_guard guard{forking_mx};
    std::optional<exec_image> image;
    if (!path_.empty())
      image.emplace(path_, args_, opts_.env);
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
      return os_error("pipe", errno);
    auto parent = ::getpid();
    auto pid = ::fork();
    if (pid < 0) {
      auto err = errno;
      ::close(fds[0]);
      ::close(fds[1]);
      return os_error("fork", err);
    }
    if (pid == 0) {
      ::close(fds[0]);
      prepare_child(parent, opts_);
      if (!image) {
        ::close(fds[1]);
        // The copy of forking_mx is held by no thread of this process: a
        // body may start processes of its own.
        new (&forking_mx) std::mutex;
        for (auto& x : opts_.env)
          ::putenv(x.data());
        int rc = 70; // EX_SOFTWARE
        try {
          rc = body_();
        } catch (...) { // NOLINT(bugprone-empty-catch): rc says it
        }
        ::_exit(rc);
      }
      if (!opts_.inherit_fds)
        close_other_fds_on_exec();
      if (path_.find('/') != std::string::npos)
        ::execve(image->argv[0], image->argv.data(), image->envp.data());
      else
        ::execvpe(image->argv[0], image->argv.data(), image->envp.data());
      int err = errno;
      [[maybe_unused]] auto n = ::write(fds[1], &err, sizeof(err));
      ::_exit(127);
    }
    ::close(fds[1]);
    int child_errno = 0;
    pollfd pfd{fds[0], POLLIN, 0};
    int ready = 0;
    do {
      ready = ::poll(&pfd, 1, exec_wait_ms);
    } while (ready < 0 && errno == EINTR);
    auto n = ready > 0 ? ::read(fds[0], &child_errno, sizeof(child_errno)) : 0;
    ::close(fds[0]);
    if (ready <= 0 || n > 0) {
      ::kill(pid, SIGKILL); // not reaped yet: the pid is still ours
      int status = 0;
      ::waitpid(pid, &status, 0);
      if (ready <= 0)
        return make_error(errc::timeout, "exec of '" + path_ + "' hung");
      return os_error("exec of '" + path_ + "'", child_errno);
    }
    pid_ = pid;
    return caf::none;
  }

  // The watcher thread: forks, then sleeps until the child exits and reaps
  // it.
  void watch(std::promise<caf::error>& started) {
    if (auto err = fork_child()) {
      started.set_value(std::move(err));
      return;
    }
    pidfd_ = pidfd_open(pid_);
    if (pidfd_ < 0) {
      auto err = errno;
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      started.set_value(os_error("pidfd_open", err));
      return;
    }
    started.set_value(caf::none);
    siginfo_t info{};
    int rc = 0;
    do {
      // Returns when the child exits; the owner ends it with SIGKILL.
      rc = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_),
                    &info, WEXITED);
    } while (rc < 0 && errno == EINTR);
    // Someone else reaped it (SIGCHLD ignored): the status is lost.
    auto status = rc == 0 ? decode(info) : exit_status{-1, 0};
    std::unique_lock guard{mx_};
    status_ = status;
    auto callback = std::move(on_exit_);
    on_exit_ = nullptr;
    guard.unlock();
    ended_.notify_all();
    if (callback)
      callback(status);
  }

  caf::expected<exit_status> wait(caf::timespan timeout) {
    std::unique_lock guard{mx_};
    if (!ended_.wait_for(guard, timeout,
                         [this] { return status_.has_value(); }))
      return make_error(errc::timeout,
                        "process " + std::to_string(pid_) + " still runs");
    return *status_;
  }

  caf::error signal(int sig) {
    std::lock_guard guard{mx_};
    if (status_)
      return caf::none;
    // The pidfd lives as long as this object: even once the child is
    // reaped, it never refers to another process.
    if (pidfd_send_signal(pidfd_, sig) != 0 && errno != ESRCH)
      return os_error("signal " + std::to_string(sig) + " to process " +
                          std::to_string(pid_),
                      errno);
    return caf::none;
  }

  // SIGKILL, then waits (bounded) until the watcher reaped the child.
  void kill_and_join() {
    {
      std::lock_guard guard{mx_};
      on_exit_ = nullptr;
    }
    signal(SIGKILL);
    auto reaped = static_cast<bool>(wait(kill_wait));
    if (!thread_.joinable())
      return;
    if (reaped && thread_.get_id() != std::this_thread::get_id())
      thread_.join(); // it only has to return
    else
      thread_.detach(); // it owns a reference and reaps the child later
  }

  ~impl() {
    if (pidfd_ >= 0)
      ::close(pidfd_);
  }
};

child_process::child_process() noexcept = default;

child_process::child_process(std::shared_ptr<impl> ptr) noexcept
    : impl_(std::move(ptr)) {}

child_process::child_process(child_process&&) noexcept = default;

child_process& child_process::operator=(child_process&& other) noexcept {
  if (this != &other) {
    reset();
    impl_ = std::move(other.impl_);
  }
  return *this;
}

child_process::~child_process() {
  reset();
}

void child_process::reset() noexcept {
  if (impl_) {
    impl_->kill_and_join();
    impl_.reset();
  }
}

caf::expected<child_process> child_process::spawn(std::string path,
                                                  std::vector<std::string> args,
                                                  process_options options) {
  if (path.empty())
    return caf::make_error(caf::sec::invalid_argument,
                           "child_process.path: must not be empty");
  auto ptr = std::make_shared<impl>();
  ptr->path_ = std::move(path);
  ptr->args_ = std::move(args);
  ptr->opts_ = std::move(options);
  if (auto err = ptr->start())
    return err;
  return child_process{std::move(ptr)};
}

caf::expected<child_process> child_process::fork(std::function<int()> body,
                                                 process_options options) {
  if (!body)
    return caf::make_error(caf::sec::invalid_argument,
                           "child_process.body: must not be empty");
  auto ptr = std::make_shared<impl>();
  ptr->body_ = std::move(body);
  ptr->opts_ = std::move(options);
  if (auto err = ptr->start())
    return err;
  return child_process{std::move(ptr)};
}

pid_t child_process::pid() const noexcept {
  return impl_ ? impl_->pid_ : 0;
}

std::optional<exit_status> child_process::status() const {
  if (!impl_)
    return std::nullopt;
  std::lock_guard guard{impl_->mx_};
  return impl_->status_;
}

caf::expected<exit_status> child_process::wait(caf::timespan timeout) {
  if (!impl_)
    return make_error(errc::process_failed, "wait: no process");
  return impl_->wait(timeout);
}

caf::error child_process::signal(int sig) {
  if (!impl_)
    return make_error(errc::process_failed, "signal: no process");
  return impl_->signal(sig);
}

caf::expected<exit_status> child_process::terminate(caf::timespan grace) {
  if (!impl_)
    return make_error(errc::process_failed, "terminate: no process");
  if (auto err = impl_->signal(SIGTERM))
    return err;
  if (auto res = impl_->wait(grace))
    return res;
  if (auto err = impl_->signal(SIGKILL))
    return err;
  if (auto res = impl_->wait(kill_wait))
    return res;
  return make_error(errc::timeout, "process " + std::to_string(pid()) +
                                       " did not end after SIGKILL");
}

void child_process::on_exit(std::function<void(const exit_status&)> f) {
  if (!impl_)
    return;
  std::unique_lock guard{impl_->mx_};
  if (impl_->status_) {
    auto status = *impl_->status_;
    guard.unlock();
    if (f)
      f(status);
    return;
  }
  impl_->on_exit_ = std::move(f);
}

} // namespace actorbus::runtime
