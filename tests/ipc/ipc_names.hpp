#pragma once

// Unique shared-memory names for tests, removed by an RAII guard even when
// the test fails, plus a child-process helper with a bounded wait.

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <poll.h>
#include <string>
#include <sys/mman.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace actorbus::ipc::testing {

/// A name unique to this process and call; unlinks the name (and up to 16
/// derived names "<name>.<i>") on destruction.
class unique_shm_name {
public:
  explicit unique_shm_name(const char* tag = "t") {
    static std::atomic<unsigned> counter{0};
    name_ = "actorbus-test-" + std::string{tag} + "-" +
            std::to_string(::getpid()) + "-" + std::to_string(++counter);
  }

  unique_shm_name(const unique_shm_name&) = delete;
  unique_shm_name& operator=(const unique_shm_name&) = delete;

  ~unique_shm_name() {
    ::shm_unlink(("/" + name_).c_str());
    for (int i = 0; i < 16; ++i)
      ::shm_unlink(("/" + derived(i)).c_str());
  }

  const std::string& str() const {
    return name_;
  }

  std::string derived(int i) const {
    return name_ + "." + std::to_string(i);
  }

private:
  std::string name_;
};

/// Forks a child running `body` and exiting with its return value via
/// _exit (no atexit handlers, no gtest teardown in the child).
inline pid_t fork_child(const std::function<int()>& body) {
  auto pid = ::fork();
  if (pid == 0)
    ::_exit(body());
  return pid;
}

// Reads exactly `n` bytes from `fd`, waiting at most `limit` in all.
inline bool read_within(int fd, void* buf, size_t n,
                        std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd pfd{fd, POLLIN, 0};
    if (left.count() <= 0 ||
        ::poll(&pfd, 1, static_cast<int>(left.count())) <= 0)
      return false;
    auto got = ::read(fd, p, n);
    if (got <= 0)
      return false;
    p += got;
    n -= static_cast<size_t>(got);
  }
  return true;
}

/// Waits for `pid` up to `timeout`; kills it with SIGKILL if it is still
/// running then. Returns the wait status, or -1 if it had to be killed.
inline int wait_child(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  for (;;) {
    auto rc = ::waitpid(pid, &status, WNOHANG);
    if (rc == pid)
      return status;
    if (rc < 0)
      return -1;
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    // Polling the child's exit: there is no other way to bound waitpid.
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

/// Aborts the whole test binary if the guarded scope runs longer than its
/// limit: a hang becomes a failure instead of a stuck CI job.
///
/// The constructor returns only once the watchdog's thread runs its loop,
/// which never allocates, so a test may fork right after it. A thread still
/// starting up allocates, and GCC 12's AddressSanitizer does not take its
/// allocator locks around fork: a child forked at that moment inherits a
/// lock held by a thread it does not have, and hangs on its next allocation
/// of that size class (about 1 fork in 100 under ASan).
class watchdog {
public:
  explicit watchdog(std::chrono::seconds limit)
      : thread_([this, limit] {
        auto deadline = std::chrono::steady_clock::now() + limit;
        started_.set_value();
        while (!done_.load()) {
          if (std::chrono::steady_clock::now() >= deadline) {
            std::fputs("watchdog: test hung, aborting\n", stderr);
            std::_Exit(3);
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
      }) {
    started_.get_future().wait_for(std::chrono::seconds(30));
  }

  ~watchdog() {
    done_ = true;
    thread_.join();
  }

private:
  std::atomic<bool> done_{false};
  std::promise<void> started_;
  std::thread thread_;
};

} // namespace actorbus::ipc::testing
