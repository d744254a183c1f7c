// Channel throughput (64 B, 1 KiB) and round-trip latency between two
// processes: the actorbus shared-memory channel beside a pipe, a Unix
// socket, Boost.Interprocess message_queue and (for the round trip) CAF's
// middleman over loopback TCP, all in one run. Plus the handoff of a 4 MiB
// buffer: actorbus shared_buffer (a handle through the channel) beside
// copying it through a pipe.

#include "actorbus/ipc/channel.hpp"
#include "actorbus/ipc/shared_buffer.hpp"

#include "latency.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/io/middleman.hpp>
#include <caf/io/publish.hpp>
#include <caf/io/remote_actor.hpp>
#include <caf/scoped_actor.hpp>

#include <benchmark/benchmark.h>
#include <boost/interprocess/ipc/message_queue.hpp>

#include <chrono>
#include <csignal>
#include <cstring>
#include <memory>
#include <optional>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace {

namespace ipc = actorbus::ipc;
namespace bip = boost::interprocess;
using namespace std::chrono_literals;

constexpr size_t batch = 1000;

// One bidirectional link between the bench process and a forked child.
class transport {
public:
  virtual ~transport() = default;
  /// Called in the child right after fork.
  virtual bool become_child() = 0;
  virtual bool send(const std::byte* p, size_t n) = 0;
  /// Receives exactly one message of `n` bytes.
  virtual bool recv(std::byte* p, size_t n) = 0;
};

bool write_all(int fd, const std::byte* p, size_t n) {
  while (n > 0) {
    auto k = ::write(fd, p, n);
    if (k <= 0)
      return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

bool read_all(int fd, std::byte* p, size_t n) {
  while (n > 0) {
    auto k = ::read(fd, p, n);
    if (k <= 0)
      return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

class fd_transport : public transport {
public:
  bool send(const std::byte* p, size_t n) override {
    return write_all(out_, p, n);
  }
  bool recv(std::byte* p, size_t n) override {
    return read_all(in_, p, n);
  }

protected:
  int in_ = -1;
  int out_ = -1;
};

class pipe_transport : public fd_transport {
public:
  pipe_transport() {
    if (::pipe(down_) != 0 || ::pipe(up_) != 0)
      throw std::runtime_error("pipe");
    out_ = down_[1];
    in_ = up_[0];
  }
  ~pipe_transport() override {
    for (int fd : {down_[0], down_[1], up_[0], up_[1]})
      ::close(fd);
  }
  bool become_child() override {
    out_ = up_[1];
    in_ = down_[0];
    return true;
  }

private:
  int down_[2];
  int up_[2];
};

class socket_transport : public fd_transport {
public:
  socket_transport() {
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds_) != 0)
      throw std::runtime_error("socketpair");
    in_ = out_ = fds_[0];
  }
  ~socket_transport() override {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  bool become_child() override {
    in_ = out_ = fds_[1];
    return true;
  }

private:
  int fds_[2];
};

std::string unique_name(const char* tag) {
  static int counter = 0;
  return std::string{"actorbus-bench-"} + tag + "-" +
         std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

class mq_transport : public transport {
public:
  explicit mq_transport(size_t max_size)
      : down_name_(unique_name("mqd"))
      , up_name_(unique_name("mqu")) {
    down_ = std::make_unique<bip::message_queue>(
        bip::create_only, down_name_.c_str(), 1024, max_size);
    up_ = std::make_unique<bip::message_queue>(
        bip::create_only, up_name_.c_str(), 1024, max_size);
    // The child inherits the mappings through fork(), so the names can go
    // now: nothing is left in /dev/shm even if the benchmark never returns.
    bip::message_queue::remove(down_name_.c_str());
    bip::message_queue::remove(up_name_.c_str());
    tx_ = down_.get();
    rx_ = up_.get();
  }
  ~mq_transport() override {
    bip::message_queue::remove(down_name_.c_str());
    bip::message_queue::remove(up_name_.c_str());
  }
  bool become_child() override {
    tx_ = up_.get();
    rx_ = down_.get();
    return true;
  }
  bool send(const std::byte* p, size_t n) override {
    tx_->send(p, n, 0);
    return true;
  }
  bool recv(std::byte* p, size_t n) override {
    size_t got = 0;
    unsigned prio = 0;
    rx_->receive(p, n, got, prio);
    return got == n;
  }

private:
  std::string down_name_;
  std::string up_name_;
  std::unique_ptr<bip::message_queue> down_;
  std::unique_ptr<bip::message_queue> up_;
  bip::message_queue* tx_;
  bip::message_queue* rx_;
};

class channel_transport : public transport {
public:
  channel_transport()
      : name_(unique_name("ch")) {
    auto ch = ipc::channel::create(name_);
    if (!ch)
      throw std::runtime_error(ipc::describe(ch.error()));
    ch_.emplace(std::move(*ch));
  }
  bool become_child() override {
    // The owner's object belongs to the parent: park it in storage that is
    // never destroyed, so the child neither closes nor unlinks it.
    new (&ch_storage_) ipc::channel(std::move(*ch_));
    auto peer = ipc::channel::open(name_, 5s);
    if (!peer)
      return false;
    ch_.emplace(std::move(*peer));
    return true;
  }
  bool send(const std::byte* p, size_t n) override {
    return !ch_->send({p, n}, 5s);
  }
  bool recv(std::byte* p, size_t n) override {
    if (ch_->receive(buf_, 5s) || buf_.size() != n)
      return false;
    std::memcpy(p, buf_.data(), n);
    return true;
  }
  ipc::channel& channel() {
    return *ch_;
  }

private:
  std::string name_;
  std::optional<ipc::channel> ch_;
  alignas(ipc::channel) unsigned char ch_storage_[sizeof(ipc::channel)];
  std::vector<std::byte> buf_;
};

enum class mode { sink, echo };

// The child: consumes messages; acks the last of each batch (sink) or
// echoes every message (echo); byte 0 == 2 stops it.
[[noreturn]] void child_main(transport& t, size_t size, mode m) {
  if (!t.become_child())
    ::_exit(1);
  std::vector<std::byte> msg(size);
  for (;;) {
    if (!t.recv(msg.data(), size))
      ::_exit(2);
    auto tag = static_cast<int>(msg[0]);
    if (tag == 2)
      ::_exit(0);
    if ((m == mode::echo || tag == 1) && !t.send(msg.data(), size))
      ::_exit(3);
  }
}

template <class Make>
void run_throughput(benchmark::State& state, size_t size, Make make) {
  auto t = make();
  auto pid = ::fork();
  if (pid == 0)
    child_main(*t, size, mode::sink);
  std::vector<std::byte> msg(size, std::byte{0});
  std::vector<std::byte> ack(size);
  for (auto _ : state) {
    auto start = std::chrono::steady_clock::now();
    for (size_t i = 0; i < batch; ++i) {
      msg[0] = i + 1 == batch ? std::byte{1} : std::byte{0};
      if (!t->send(msg.data(), size))
        state.SkipWithError("send failed");
    }
    if (!t->recv(ack.data(), size))
      state.SkipWithError("no ack");
    state.SetIterationTime(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count());
  }
  msg[0] = std::byte{2};
  t->send(msg.data(), size);
  ::waitpid(pid, nullptr, 0);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * batch));
  state.SetBytesProcessed(
      static_cast<int64_t>(state.iterations() * batch * size));
}

template <class Make>
void run_rtt(benchmark::State& state, Make make) {
  constexpr size_t size = 64;
  auto t = make();
  auto pid = ::fork();
  if (pid == 0)
    child_main(*t, size, mode::echo);
  std::vector<std::byte> msg(size, std::byte{0});
  std::vector<std::byte> back(size);
  actorbus::bench::latency_samples samples;
  for (auto _ : state) {
    samples.measure([&] {
      if (!t->send(msg.data(), size) || !t->recv(back.data(), size))
        state.SkipWithError("round trip failed");
    });
  }
  msg[0] = std::byte{2};
  t->send(msg.data(), size);
  ::waitpid(pid, nullptr, 0);
  samples.report(state);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

auto make_channel = [] { return std::make_unique<channel_transport>(); };
auto make_pipe = [] { return std::make_unique<pipe_transport>(); };
auto make_socket = [] { return std::make_unique<socket_transport>(); };
// message_queue::receive needs a buffer of the queue's maximum size, so
// each queue is made for exactly the message size in use.
auto make_mq64 = [] { return std::make_unique<mq_transport>(64); };
auto make_mq1k = [] { return std::make_unique<mq_transport>(1024); };

void BM_tp64_channel(benchmark::State& s) {
  run_throughput(s, 64, make_channel);
}
void BM_tp64_pipe(benchmark::State& s) {
  run_throughput(s, 64, make_pipe);
}
void BM_tp64_socket(benchmark::State& s) {
  run_throughput(s, 64, make_socket);
}
void BM_tp64_mq(benchmark::State& s) {
  run_throughput(s, 64, make_mq64);
}
void BM_tp1k_channel(benchmark::State& s) {
  run_throughput(s, 1024, make_channel);
}
void BM_tp1k_pipe(benchmark::State& s) {
  run_throughput(s, 1024, make_pipe);
}
void BM_tp1k_socket(benchmark::State& s) {
  run_throughput(s, 1024, make_socket);
}
void BM_tp1k_mq(benchmark::State& s) {
  run_throughput(s, 1024, make_mq1k);
}
void BM_rtt_channel(benchmark::State& s) {
  run_rtt(s, make_channel);
}
void BM_rtt_pipe(benchmark::State& s) {
  run_rtt(s, make_pipe);
}
void BM_rtt_socket(benchmark::State& s) {
  run_rtt(s, make_socket);
}
void BM_rtt_mq(benchmark::State& s) {
  run_rtt(s, make_mq64);
}

// CAF's middleman: an echo actor published on loopback TCP in a child
// process, called with request/receive from a scoped actor here.
caf::behavior echo_actor() {
  return {[](const std::vector<char>& x) { return x; }};
}

// Reads `n` bytes from `fd`, giving up after `timeout`.
bool read_with_timeout(int fd, std::byte* p, size_t n,
                       std::chrono::milliseconds timeout) {
  pollfd pfd{fd, POLLIN, 0};
  while (n > 0) {
    if (::poll(&pfd, 1, static_cast<int>(timeout.count())) != 1)
      return false;
    auto k = ::read(fd, p, n);
    if (k <= 0)
      return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

void BM_rtt_caf_middleman(benchmark::State& state) {
  int port_pipe[2];
  int stop_pipe[2];
  if (::pipe(port_pipe) != 0 || ::pipe(stop_pipe) != 0) {
    state.SkipWithError("pipe");
    return;
  }
  auto pid = ::fork();
  if (pid == 0) {
    ::close(port_pipe[0]);
    ::close(stop_pipe[1]);
    caf::actor_system_config cfg;
    cfg.load<caf::io::middleman>();
    caf::actor_system sys{cfg};
    auto echo = sys.spawn(echo_actor);
    auto port = caf::io::publish(echo, 0, "127.0.0.1");
    uint16_t p = port ? *port : 0;
    if (::write(port_pipe[1], &p, sizeof(p)) != sizeof(p))
      ::_exit(1);
    char stop = 0;
    (void)::read(stop_pipe[0], &stop, 1); // EOF when the parent is done
    ::_exit(0);
  }
  ::close(port_pipe[1]);
  ::close(stop_pipe[0]);
  uint16_t port = 0;
  if (!read_with_timeout(port_pipe[0], reinterpret_cast<std::byte*>(&port),
                         sizeof(port), 10s) ||
      port == 0) {
    state.SkipWithError("child did not publish");
  } else {
    caf::actor_system_config cfg;
    cfg.load<caf::io::middleman>();
    caf::actor_system sys{cfg};
    auto remote = caf::io::remote_actor(sys, "127.0.0.1", port);
    if (!remote) {
      state.SkipWithError("remote_actor failed");
    } else {
      caf::scoped_actor self{sys};
      std::vector<char> msg(64);
      actorbus::bench::latency_samples samples;
      for (auto _ : state) {
        samples.measure([&] {
          self->request(*remote, std::chrono::seconds(5), msg)
              .receive([](const std::vector<char>&) {},
                       [&](caf::error&) { state.SkipWithError("error"); });
        });
      }
      samples.report(state);
      state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
    }
  }
  ::close(stop_pipe[1]);
  ::close(port_pipe[0]);
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

// Handoff of a 4 MiB buffer: the handle crosses the channel, the child maps
// the buffer, reads a byte in the middle and acknowledges.
void BM_handoff_shared_buffer(benchmark::State& state) {
  constexpr size_t size = 4 << 20;
  channel_transport t;
  auto pid = ::fork();
  if (pid == 0) {
    if (!t.become_child())
      ::_exit(1);
    std::vector<std::byte> msg;
    for (;;) {
      if (t.channel().receive(msg, 10s))
        ::_exit(2);
      auto h = ipc::buffer_handle::from_bytes(msg);
      if (!h)
        ::_exit(0); // the stop message
      auto buf = ipc::shared_buffer::map(*h);
      std::byte probe{0};
      if (buf)
        probe = buf->bytes()[size / 2];
      if (t.channel().send(std::span{&probe, 1}, 10s))
        ::_exit(3);
    }
  }
  auto buf = ipc::shared_buffer::allocate(size);
  if (!buf) {
    state.SkipWithError("allocate failed");
    return;
  }
  std::memset(buf->bytes().data(), 7, size);
  auto handle = buf->handle();
  std::vector<std::byte> ack;
  actorbus::bench::latency_samples samples;
  for (auto _ : state) {
    samples.measure([&] {
      if (t.channel().send(handle.bytes(), 5s) ||
          t.channel().receive(ack, 5s) || ack.size() != 1 ||
          ack[0] != std::byte{7})
        state.SkipWithError("handoff failed");
    });
  }
  (void)t.channel().send(std::vector<std::byte>(3), 5s);
  ::waitpid(pid, nullptr, 0);
  samples.report(state);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

// The same 4 MiB copied through a pipe.
void BM_handoff_pipe_copy(benchmark::State& state) {
  constexpr size_t size = 4 << 20;
  pipe_transport t;
  auto pid = ::fork();
  if (pid == 0) {
    t.become_child();
    std::vector<std::byte> buf(size);
    for (;;) {
      if (!t.recv(buf.data(), size))
        ::_exit(0);
      if (!t.send(buf.data() + size / 2, 1))
        ::_exit(3);
    }
  }
  std::vector<std::byte> data(size, std::byte{7});
  std::byte ack{0};
  actorbus::bench::latency_samples samples;
  for (auto _ : state) {
    samples.measure([&] {
      if (!t.send(data.data(), size) || !t.recv(&ack, 1))
        state.SkipWithError("copy failed");
    });
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  samples.report(state);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

} // namespace

#define ACTORBUS_IPC_TP(fn, name)                                              \
  BENCHMARK(fn)->Name(name)->Iterations(300)->UseManualTime()

ACTORBUS_IPC_TP(BM_tp64_channel, "ipc_throughput_64/actorbus_channel");
ACTORBUS_IPC_TP(BM_tp64_pipe, "ipc_throughput_64/pipe");
ACTORBUS_IPC_TP(BM_tp64_socket, "ipc_throughput_64/unix_socket");
ACTORBUS_IPC_TP(BM_tp64_mq, "ipc_throughput_64/boost_message_queue");
ACTORBUS_IPC_TP(BM_tp1k_channel, "ipc_throughput_1k/actorbus_channel");
ACTORBUS_IPC_TP(BM_tp1k_pipe, "ipc_throughput_1k/pipe");
ACTORBUS_IPC_TP(BM_tp1k_socket, "ipc_throughput_1k/unix_socket");
ACTORBUS_IPC_TP(BM_tp1k_mq, "ipc_throughput_1k/boost_message_queue");
BENCHMARK(BM_rtt_channel)
    ->Name("ipc_rtt/actorbus_channel")
    ->Iterations(20000)
    ->UseRealTime();
BENCHMARK(BM_rtt_pipe)->Name("ipc_rtt/pipe")->Iterations(20000)->UseRealTime();
BENCHMARK(BM_rtt_socket)
    ->Name("ipc_rtt/unix_socket")
    ->Iterations(20000)
    ->UseRealTime();
BENCHMARK(BM_rtt_mq)
    ->Name("ipc_rtt/boost_message_queue")
    ->Iterations(20000)
    ->UseRealTime();
BENCHMARK(BM_rtt_caf_middleman)
    ->Name("ipc_rtt/caf_middleman")
    ->Iterations(5000)
    ->UseRealTime();
BENCHMARK(BM_handoff_shared_buffer)
    ->Name("ipc_handoff_4m/actorbus_shared_buffer")
    ->Iterations(2000)
    ->UseRealTime();
BENCHMARK(BM_handoff_pipe_copy)
    ->Name("ipc_handoff_4m/pipe_copy")
    ->Iterations(200)
    ->UseRealTime();

BENCHMARK_MAIN();
