#include "actorbus/ipc/process.hpp"

#include "actorbus/ipc/error.hpp"

#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include <cerrno>
#include <climits>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <future>
#include <memory>
#include <mutex>
#include <new>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char** environ; // NOLINT: POSIX

namespace actorbus::ipc {

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

using exited_atom = caf::atom_constant<caf::atom("abProcExit")>;

caf::error system_error(const std::string& what, int err) {
  return make_error(errc::system_error, what + ": " + std::strerror(err));
}

// "process 42 exited with status 3" / "process 42 was killed by signal 9".
std::string describe_status(pid_t pid, int status) {
  auto who = "process " + std::to_string(pid);
  if (WIFSIGNALED(status))
    return who + " was killed by signal " + std::to_string(WTERMSIG(status));
  return who + " exited with status " + std::to_string(WEXITSTATUS(status));
}

// argv and envp of an exec, built before fork: between fork and exec the
// child may only make async-signal-safe calls.
struct exec_image {
  std::vector<std::string> strings;
  std::vector<char*> argv;
  std::vector<char*> envp;

  explicit exec_image(const process_spec& spec) {
    strings.push_back(spec.path);
    strings.insert(strings.end(), spec.args.begin(), spec.args.end());
    auto argc = strings.size();
    auto overridden = [&](const char* entry) {
      const char* eq = std::strchr(entry, '=');
      auto len = eq ? static_cast<size_t>(eq - entry) : std::strlen(entry);
      for (auto& x : spec.env)
        if (x.size() > len && x.compare(0, len, entry, len) == 0 &&
            x[len] == '=')
          return true;
      return false;
    };
    for (char** e = environ; e && *e; ++e)
      if (!overridden(*e))
        strings.emplace_back(*e);
    strings.insert(strings.end(), spec.env.begin(), spec.env.end());
    for (size_t i = 0; i < strings.size(); ++i)
      (i < argc ? argv : envp).push_back(strings[i].data());
    argv.push_back(nullptr);
    envp.push_back(nullptr);
  }
};

// Held from creating the exec-status pipe until its status was read.
std::mutex forking_mx;

// Runs in the child right after fork: dies with the forking thread, and
// starts with default signal dispositions and an empty signal mask (the
// parent's runtime may block SIGTERM in its threads).
void prepare_child(pid_t parent) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent)
    ::_exit(127); // the parent died before PR_SET_PDEATHSIG took effect
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD})
    ::signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  ::pthread_sigmask(SIG_SETMASK, &none, nullptr);
}

// One child process and the thread that forked it, watches its pidfd and
// reaps it. Shared by the process actor and the watcher thread.
class watched_process : public std::enable_shared_from_this<watched_process> {
public:
  explicit watched_process(process_spec spec)
      : spec_(std::move(spec)) {}

  ~watched_process() {
    if (wake_fd_ >= 0)
      ::close(wake_fd_);
  }

  // Forks (on the watcher thread) and returns once the child runs (exec'd,
  // for programs) or failed to.
  caf::error start() {
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0)
      return system_error("eventfd", errno);
    std::promise<caf::error> started;
    auto res = started.get_future();
    thread_ =
        std::thread{[self = shared_from_this(),
                     p = std::move(started)]() mutable { self->watch(p); }};
    auto err = res.get(); // bounded: see watch()
    if (err)
      thread_.join();
    return err;
  }

  pid_t pid() const noexcept {
    return pid_;
  }

  // Delivers the exit status to `target` (at once if it already came).
  void notify(caf::weak_actor_ptr target) {
    std::unique_lock guard{mx_};
    if (status_) {
      auto status = *status_;
      guard.unlock();
      send_exit_status(target, status);
      return;
    }
    target_ = std::move(target);
  }

  // SIGTERM now, SIGKILL after `grace` unless the process exited.
  void terminate(std::chrono::milliseconds grace) {
    std::lock_guard guard{mx_};
    if (status_)
      return;
    ::kill(pid_, SIGTERM);
    kill_at_ = clock_type::now() + grace;
    wake();
  }

  // SIGKILL, then waits (bounded) until the watcher reaped the process.
  void kill_and_join() {
    {
      std::unique_lock guard{mx_};
      if (!status_)
        ::kill(pid_, SIGKILL);
      // A SIGKILLed process ends at once unless stuck in the kernel.
      reaped_.wait_for(guard, 10s, [this] { return status_.has_value(); });
      target_ = nullptr;
    }
    if (!thread_.joinable())
      return;
    if (status_)
      thread_.join(); // it only has to return
    else
      thread_.detach(); // it owns a reference and reaps the process later
  }

private:
  static void send_exit_status(const caf::weak_actor_ptr& target, int status) {
    if (auto strong = target.lock())
      caf::anon_send(caf::actor_cast<caf::actor>(strong), exited_atom::value,
                     status);
  }

  void wake() {
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof(one));
  }

  // Reports errno from the child's failed exec through a close-on-exec
  // pipe: EOF means the exec (or the fork, for bodies) succeeded. Starts are
  // serialized so that no child forked meanwhile (a forked body never execs)
  // inherits the pipe's write end and delays that EOF.
  caf::error fork_child() {
    std::lock_guard guard{forking_mx};
    std::optional<exec_image> image;
    if (!spec_.path.empty())
      image.emplace(spec_);
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
      return system_error("pipe", errno);
    auto parent = ::getpid();
    auto pid = ::fork();
    if (pid < 0) {
      auto err = errno;
      ::close(fds[0]);
      ::close(fds[1]);
      return system_error("fork", err);
    }
    if (pid == 0) {
      ::close(fds[0]);
      prepare_child(parent);
      if (!image) {
        ::close(fds[1]);
        // The copy of forking_mx is held by no thread of this process: a
        // body may start processes of its own.
        new (&forking_mx) std::mutex;
        for (auto& x : spec_.env)
          ::putenv(x.data());
        int rc = 70;
        try {
          rc = spec_.body();
        } catch (...) {
          // rc stays 70 (EX_SOFTWARE)
        }
        ::_exit(rc);
      }
      if (spec_.path.find('/') != std::string::npos)
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
    // exec succeeds or fails within milliseconds; 10 s bounds a stuck one.
    auto ready = ::poll(&pfd, 1, 10'000);
    auto n = ready > 0 ? ::read(fds[0], &child_errno, sizeof(child_errno)) : 0;
    ::close(fds[0]);
    if (ready <= 0 || n > 0) {
      ::kill(pid, SIGKILL);
      int status = 0;
      ::waitpid(pid, &status, 0);
      if (ready <= 0)
        return make_error(errc::timeout, "exec of '" + spec_.path + "' hung");
      return system_error("exec of '" + spec_.path + "'", child_errno);
    }
    pid_ = pid;
    return caf::none;
  }

  // The watcher thread: forks, then sleeps on the pidfd until the process
  // exits, sending SIGKILL when a termination's grace period runs out.
  void watch(std::promise<caf::error>& started) {
    if (auto err = fork_child()) {
      started.set_value(std::move(err));
      return;
    }
    auto pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    if (pidfd < 0) {
      auto err = errno;
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      started.set_value(system_error("pidfd_open", err));
      return;
    }
    started.set_value(caf::none);
    int status = 0;
    for (;;) {
      int timeout_ms = 1000; // bounded: re-checks the kill deadline
      {
        std::lock_guard guard{mx_};
        if (kill_at_) {
          auto left = std::chrono::ceil<std::chrono::milliseconds>(
              *kill_at_ - clock_type::now());
          if (left.count() <= 0) {
            ::kill(pid_, SIGKILL);
            kill_at_.reset();
          } else {
            timeout_ms =
                static_cast<int>(std::min<int64_t>(left.count(), timeout_ms));
          }
        }
      }
      pollfd fds[2] = {{pidfd, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
      auto rc = ::poll(fds, 2, timeout_ms);
      if (rc > 0 && (fds[1].revents & POLLIN) != 0) {
        uint64_t drained = 0;
        [[maybe_unused]] auto n = ::read(wake_fd_, &drained, sizeof(drained));
      }
      if (rc > 0 && (fds[0].revents & POLLIN) != 0) {
        std::unique_lock guard{mx_};
        // The pidfd is readable: the process exited, waitpid returns now.
        if (::waitpid(pid_, &status, 0) != pid_)
          status = 0;
        status_ = status;
        auto target = std::move(target_);
        guard.unlock();
        reaped_.notify_all();
        ::close(pidfd);
        send_exit_status(target, status);
        return;
      }
    }
  }

  process_spec spec_;
  pid_t pid_ = 0;
  int wake_fd_ = -1;
  std::thread thread_;
  std::mutex mx_;
  std::condition_variable reaped_;
  std::optional<int> status_;
  std::optional<clock_type::time_point> kill_at_;
  caf::weak_actor_ptr target_;
};

struct process_state {
  std::shared_ptr<watched_process> proc;
  std::chrono::milliseconds kill_timeout{0};
  std::optional<caf::error> stop_reason;

  process_state() = default;
  process_state(const process_state&) = delete;
  process_state& operator=(const process_state&) = delete;

  ~process_state() {
    if (proc)
      proc->kill_and_join();
  }

  static inline const char* name = "actorbus.process";
};

caf::behavior process_actor(caf::stateful_actor<process_state>* self,
                            std::shared_ptr<watched_process> proc,
                            std::chrono::milliseconds kill_timeout) {
  self->state.proc = proc;
  self->state.kill_timeout = kill_timeout;
  proc->notify(caf::actor_cast<caf::weak_actor_ptr>(self));
  self->set_exit_handler([self](caf::exit_msg& em) {
    auto& st = self->state;
    if (st.stop_reason)
      return;
    st.stop_reason = std::move(em.reason);
    st.proc->terminate(st.kill_timeout);
  });
  return {
      [self](exited_atom, int status) {
        auto& st = self->state;
        if (st.stop_reason)
          self->quit(*st.stop_reason);
        else if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
          self->quit(caf::exit_reason::normal);
        else
          self->quit(make_error(errc::peer_dead,
                                describe_status(st.proc->pid(), status)));
      },
      [self](caf::get_atom) {
        return static_cast<int32_t>(self->state.proc->pid());
      },
  };
}

} // namespace

process_spec exec_process(std::string path, std::vector<std::string> args) {
  process_spec result;
  result.path = std::move(path);
  result.args = std::move(args);
  return result;
}

process_spec worker_role_process(std::string role,
                                 std::vector<std::string> args) {
  char buf[PATH_MAX];
  auto n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  auto result = exec_process(n > 0 ? std::string(buf, static_cast<size_t>(n))
                                   : "/proc/self/exe",
                             std::move(args));
  result.env.push_back(std::string{worker_role_env} + "=" + role);
  return result;
}

process_spec forked_process(std::function<int()> body) {
  process_spec result;
  result.body = std::move(body);
  return result;
}

std::optional<std::string> current_worker_role() {
  if (const char* role = std::getenv(worker_role_env); role && *role)
    return std::string{role};
  return std::nullopt;
}

caf::expected<started_process> launch_process(caf::actor_system& sys,
                                              process_spec spec) {
  if (spec.path.empty() && !spec.body)
    return make_error(errc::invalid_argument,
                      "a process needs a program path or a body");
  auto kill_timeout = spec.kill_timeout;
  auto proc = std::make_shared<watched_process>(std::move(spec));
  if (auto err = proc->start())
    return err;
  auto pid = proc->pid();
  return started_process{
      sys.spawn(process_actor, std::move(proc), kill_timeout), pid};
}

caf::expected<caf::actor> spawn_process(caf::actor_system& sys,
                                        process_spec spec) {
  auto res = launch_process(sys, std::move(spec));
  if (!res)
    return std::move(res.error());
  return std::move(res->actor);
}

actors::child_spec process_child(std::string id, process_spec spec,
                                 actors::restart_type restart) {
  actors::child_spec result;
  result.id = std::move(id);
  result.restart = restart;
  result.shutdown_timeout = spec.kill_timeout + std::chrono::seconds(1);
  result.start = [spec = std::move(spec)](caf::actor_system& sys) {
    return spawn_process(sys, spec);
  };
  return result;
}

} // namespace actorbus::ipc
