#include "actorbus/runtime/signals.hpp"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <poll.h>
#include <stdexcept>
#include <unistd.h>

namespace actorbus::runtime {

namespace {

// Self-pipe: the handler writes the signal number, waiters poll the read end.
int pipe_fds[2] = {-1, -1};
std::atomic<bool> active{false};
struct sigaction previous_int;
struct sigaction previous_term;

extern "C" void on_signal(int signo) {
  auto saved = errno;
  auto byte = static_cast<unsigned char>(signo);
  [[maybe_unused]] auto n = ::write(pipe_fds[1], &byte, 1);
  errno = saved;
}

} // namespace

signal_waiter::signal_waiter() {
  if (active.exchange(true))
    throw std::logic_error("only one signal_waiter may exist at a time");
  if (::pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    active = false;
    throw std::runtime_error("signal_waiter: pipe2 failed");
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, &previous_int);
  ::sigaction(SIGTERM, &sa, &previous_term);
}

signal_waiter::~signal_waiter() {
  ::sigaction(SIGINT, &previous_int, nullptr);
  ::sigaction(SIGTERM, &previous_term, nullptr);
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
  pipe_fds[0] = pipe_fds[1] = -1;
  active = false;
}

std::optional<int> signal_waiter::wait_for(std::chrono::milliseconds timeout) {
  pollfd pfd{pipe_fds[0], POLLIN, 0};
  auto rc = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
  if (rc <= 0)
    return std::nullopt;
  unsigned char byte = 0;
  if (::read(pipe_fds[0], &byte, 1) != 1 || byte == 0) {
    // A cancel leaves its byte for every other waiter.
    if (byte == 0) [[maybe_unused]]
      auto n = ::write(pipe_fds[1], &byte, 1);
    return std::nullopt;
  }
  return static_cast<int>(byte);
}

void signal_waiter::cancel() {
  unsigned char byte = 0;
  [[maybe_unused]] auto n = ::write(pipe_fds[1], &byte, 1);
}

} // namespace actorbus::runtime
