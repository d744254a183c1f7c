// Internal Redis connection and the embedded redis-server.

#include "redis.hpp"

#include "actorbus/queue/embedded_redis.hpp"
#include "actorbus/queue/error.hpp"
#include "actorbus/runtime/error.hpp"

#include "scripts.hpp"

#include <caf/sec.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <mutex>
#include <poll.h>
#include <sys/time.h>
#include <thread>
#include <unistd.h>

namespace actorbus::queue::internal {

namespace {

std::string script_text(script s) {
  switch (s) {
  case script::enqueue:
    return enqueue_lua;
  case script::promote:
    return std::string{groups_lua} + promote_lua;
  case script::finish:
    return finish_lua;
  case script::wait_prepare:
    return wait_prepare_lua;
  case script::enqueue_many:
    return enqueue_many_lua;
  case script::reclaim:
    return reclaim_lua;
  case script::backlog:
    return std::string{groups_lua} + backlog_lua;
  default:
    return cancel_lua;
  }
}

timeval to_timeval(caf::timespan t) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(t).count();
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(us / 1'000'000);
  tv.tv_usec = static_cast<suseconds_t>(us % 1'000'000);
  return tv;
}

void render_to(std::string& out, const redisReply* r) {
  if (r == nullptr) {
    out += "(nil)";
    return;
  }
  switch (r->type) {
  case REDIS_REPLY_INTEGER:
    out += std::to_string(r->integer);
    break;
  case REDIS_REPLY_NIL:
    out += "(nil)";
    break;
  case REDIS_REPLY_ARRAY:
    for (size_t i = 0; i < r->elements; ++i) {
      if (i > 0)
        out += '\n';
      render_to(out, r->element[i]);
    }
    break;
  default:
    out.append(r->str, r->len);
  }
}

} // namespace

std::string render(const redisReply* r) {
  std::string out;
  render_to(out, r);
  return out;
}

keys::keys(const std::string& name_space)
    : ns(name_space) {
  for (int i = 0; i < 3; ++i)
    streams[i] = fmt::format("{}:q:{}", ns, i);
  delayed = ns + ":delayed";
  dead = ns + ":dead";
}

std::string keys::task(std::string_view id) const {
  return fmt::format("{}:t:{}", ns, id);
}

std::string keys::notify(std::string_view id) const {
  return fmt::format("{}:n:{}", ns, id);
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

connection::connection(const queue_config& cfg, std::string url)
    : cfg_(cfg)
    , url_(std::move(url)) {
  // nop
}

connection::~connection() {
  drop();
}

void connection::drop() {
  if (ctx_ != nullptr) {
    redisFree(ctx_);
    ctx_ = nullptr;
  }
}

bool is_noscript(const redisReply* r) {
  return r != nullptr && r->type == REDIS_REPLY_ERROR &&
         str(r).rfind("NOSCRIPT", 0) == 0;
}

caf::error connection::connect() {
  if (ctx_ != nullptr) {
    if (!scripts_lost_)
      return caf::none;
    drop();
  }
  scripts_lost_ = false;
  // A write to a closed socket must be an error, not a signal that kills
  // the process (the runtime does the same).
  static const bool sigpipe_ignored = [] {
    std::signal(SIGPIPE, SIG_IGN);
    return true;
  }();
  static_cast<void>(sigpipe_ignored);
  auto tv = to_timeval(cfg_.io_timeout);
  if (url_.rfind("unix://", 0) == 0) {
    ctx_ = redisConnectUnixWithTimeout(url_.c_str() + 7, tv);
  } else if (url_.rfind("redis://", 0) == 0) {
    auto rest = url_.substr(8);
    auto slash = rest.find('/');
    if (slash != std::string::npos)
      rest.resize(slash);
    auto colon = rest.rfind(':');
    std::string host = rest.substr(0, colon);
    int port = 6379;
    if (colon != std::string::npos)
      port = std::atoi(rest.c_str() + colon + 1);
    if (host.empty() || port <= 0)
      return caf::make_error(caf::sec::invalid_argument,
                             "queue_config.url: malformed Redis URL '" + url_ +
                                 "'");
    ctx_ = redisConnectWithTimeout(host.c_str(), port, tv);
  } else {
    return caf::make_error(caf::sec::invalid_argument,
                           "queue_config.url: must start with redis:// or "
                           "unix://, got '" +
                               url_ + "'");
  }
  if (ctx_ == nullptr || ctx_->err != 0) {
    std::string what = ctx_ != nullptr ? ctx_->errstr : "out of memory";
    drop();
    return make_error(errc::unreachable,
                      "cannot connect to " + url_ + ": " + what);
  }
  timeout(caf::timespan{0});
  for (int i = 0; i < static_cast<int>(script::count); ++i) {
    auto r = run({"SCRIPT", "LOAD", script_text(static_cast<script>(i))});
    if (!r)
      return std::move(r.error());
    if ((*r)->type != REDIS_REPLY_STRING) {
      auto what = render(r->get());
      drop();
      return make_error(errc::redis_error, "SCRIPT LOAD failed: " + what);
    }
    shas_[i] = std::string{str(r->get())};
  }
  for (int i = 0; i < 3; ++i) {
    auto r =
        run({"XGROUP", "CREATE", fmt::format("{}:q:{}", cfg_.name_space, i),
             group_name, "0", "MKSTREAM"});
    if (!r)
      return std::move(r.error());
    if ((*r)->type == REDIS_REPLY_ERROR &&
        str(r->get()).find("BUSYGROUP") == std::string_view::npos) {
      auto what = render(r->get());
      drop();
      return make_error(errc::redis_error, "XGROUP CREATE failed: " + what);
    }
  }
  return caf::none;
}

void connection::timeout(caf::timespan t) {
  // Replies are awaited with poll() and this timeout; the socket's own
  // timeouts stay at io_timeout (set when connecting, they bound writes),
  // so changing this costs no system call.
  current_timeout_ = t.count() == 0 ? cfg_.io_timeout : t;
}

caf::error connection::wait_readable() {
  auto deadline = std::chrono::steady_clock::now() + current_timeout_;
  for (;;) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{ctx_->fd, POLLIN, 0};
    auto n = poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
    if (n > 0)
      return caf::none; // Readable, or closed: the read tells which.
    if (n == 0) {
      drop();
      return make_error(
          errc::unreachable,
          fmt::format("no reply from Redis within {} ms",
                      std::chrono::duration_cast<std::chrono::milliseconds>(
                          current_timeout_)
                          .count()));
    }
    if (errno != EINTR)
      return io_error("poll");
  }
}

caf::error connection::io_error(const char* what) {
  std::string msg = fmt::format("Redis I/O error during {}: {}", what,
                                ctx_ != nullptr ? ctx_->errstr : "");
  drop();
  return make_error(errc::unreachable, std::move(msg));
}

void connection::append(const std::vector<std::string>& args) {
  if (ctx_ == nullptr)
    return;
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  argv.reserve(args.size());
  lens.reserve(args.size());
  for (auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  redisAppendCommandArgv(ctx_, static_cast<int>(args.size()), argv.data(),
                         lens.data());
}

caf::error connection::flush() {
  if (ctx_ == nullptr)
    return make_error(errc::unreachable, "not connected");
  int done = 0;
  while (done == 0)
    if (redisBufferWrite(ctx_, &done) != REDIS_OK)
      return io_error("write");
  return caf::none;
}

caf::expected<reply_ptr> connection::next_reply() {
  if (ctx_ == nullptr)
    return make_error(errc::unreachable, "not connected");
  // Like redisGetReply, but waits for the reply in poll() rather than
  // asleep in read(): a thread asleep in read() on a Unix socket is also
  // woken each time the server takes a request off that socket (the
  // kernel signals free write space to every sleeper of the socket), a
  // second wake-up per round trip; poll() only wakes for input.
  void* raw = nullptr;
  if (redisGetReplyFromReader(ctx_, &raw) != REDIS_OK)
    return io_error("read");
  if (raw == nullptr) {
    if (auto err = flush())
      return err;
    while (raw == nullptr) {
      if (auto err = wait_readable())
        return err;
      if (redisBufferRead(ctx_) != REDIS_OK ||
          redisGetReplyFromReader(ctx_, &raw) != REDIS_OK)
        return io_error("read");
    }
  }
  reply_ptr r{static_cast<redisReply*>(raw)};
  if (is_noscript(r.get()))
    scripts_lost_ = true;
  return r;
}

bool connection::input_buffered() const noexcept {
  return ctx_ != nullptr && ctx_->reader != nullptr &&
         ctx_->reader->pos < ctx_->reader->len;
}

caf::expected<reply_ptr> connection::run(const std::vector<std::string>& args) {
  if (ctx_ == nullptr)
    return make_error(errc::unreachable, "not connected");
  append(args);
  return next_reply();
}

std::vector<std::string> connection::eval(script s,
                                          std::vector<std::string> keys,
                                          std::vector<std::string> argv) const {
  std::vector<std::string> cmd;
  cmd.reserve(3 + keys.size() + argv.size());
  cmd.emplace_back("EVALSHA");
  cmd.push_back(shas_[static_cast<int>(s)]);
  cmd.push_back(std::to_string(keys.size()));
  for (auto& k : keys)
    cmd.push_back(std::move(k));
  for (auto& a : argv)
    cmd.push_back(std::move(a));
  return cmd;
}

} // namespace actorbus::queue::internal

namespace actorbus::queue {

namespace {

using namespace std::chrono_literals;

// Grace period of a graceful stop before SIGKILL.
constexpr auto stop_grace = 3s;

// How long the server may take to answer PING after it was started.
constexpr auto ready_timeout = 5s;

// The cleaner: ignores the signals that end a program group (the terminal's
// ^C, a session's SIGHUP), reads standard input until EOF, which comes when
// the program that started it is gone, then removes the folder ($1). The
// server, killed at the same moment, may still be dying: a few tries.
constexpr const char* cleaner_script =
    "trap '' HUP INT QUIT TERM; read -r _; n=0; "
    "while [ -e \"$1\" ] && [ $n -lt 100 ]; do "
    "rm -rf -- \"$1\"; n=$((n+1)); done";

caf::error failure(std::string what) {
  return caf::make_error(caf::sec::runtime_error,
                         "embedded_redis: " + std::move(what));
}

// A descriptor of /dev/null, closed on scope exit.
struct dev_null {
  int fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  dev_null() = default;
  dev_null(const dev_null&) = delete;
  dev_null& operator=(const dev_null&) = delete;
  ~dev_null() {
    if (fd >= 0)
      ::close(fd);
  }
};

// True when the server on `socket` answers PING.
bool answers_ping(const std::string& socket) {
  std::error_code ec;
  if (!std::filesystem::exists(socket, ec))
    return false;
  timeval tv{0, 200'000};
  auto* ctx = redisConnectUnixWithTimeout(socket.c_str(), tv);
  bool ok = false;
  if (ctx != nullptr && ctx->err == 0) {
    redisSetTimeout(ctx, tv);
    auto* r = static_cast<redisReply*>(redisCommand(ctx, "PING"));
    ok = r != nullptr && r->type == REDIS_REPLY_STATUS;
    if (r != nullptr)
      freeReplyObject(r);
  }
  if (ctx != nullptr)
    redisFree(ctx);
  return ok;
}

} // namespace

caf::expected<std::unique_ptr<embedded_redis>>
embedded_redis::start(bool persistent) {
  std::unique_ptr<embedded_redis> self{new embedded_redis};
  auto tmpl = (std::filesystem::temp_directory_path() / "actorbus-redis-XXXXXX")
                  .string();
  if (mkdtemp(tmpl.data()) == nullptr)
    return failure("cannot create a temporary folder: " +
                   std::string{std::strerror(errno)});
  self->dir_ = tmpl;
  self->socket_ = tmpl + "/redis.sock";
  self->url_ = "unix://" + self->socket_;
  self->persistent_ = persistent;
  if (auto err = self->start_cleaner())
    return err; // the destructor removes the folder
  if (auto err = self->launch())
    return err;
  return self;
}

caf::error embedded_redis::start_cleaner() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    return failure("pipe: " + std::string{std::strerror(errno)});
  dev_null null;
  runtime::process_options opts;
  opts.stdin_fd = fds[0];
  opts.stdout_fd = null.fd;
  opts.parent_death_signal = 0; // it must outlive this program to clean up
  opts.inherit_fds = false;
  auto proc = runtime::child_process::spawn(
      "/bin/sh", {"-c", cleaner_script, "actorbus-redis-cleaner", dir_}, opts);
  ::close(fds[0]);
  if (!proc) {
    ::close(fds[1]);
    return failure("cannot start the folder's cleaner: " +
                   runtime::describe(proc.error()));
  }
  cleaner_ = std::move(*proc);
  cleaner_fd_ = fds[1];
  return caf::none;
}

caf::error embedded_redis::launch() {
  std::vector<std::string> args{"--port",
                                "0",
                                "--unixsocket",
                                socket_,
                                "--unixsocketperm",
                                "700",
                                "--dir",
                                dir_,
                                "--save",
                                "",
                                "--appendonly",
                                persistent_ ? "yes" : "no",
                                "--appendfsync",
                                "always",
                                "--loglevel",
                                "warning",
                                "--logfile",
                                dir_ + "/redis.log"};
  std::error_code ec;
  std::filesystem::remove(socket_, ec);
  dev_null null;
  runtime::process_options opts;
  opts.stdin_fd = null.fd;
  opts.stdout_fd = null.fd;
  opts.inherit_fds = false;
  auto proc = runtime::child_process::spawn("redis-server", args, opts);
  if (!proc)
    return failure("cannot start redis-server (is it installed?): " +
                   runtime::describe(proc.error()));
  server_ = std::move(*proc);
  // Ready when the socket answers PING; each wait returns at once if the
  // server exits instead.
  auto deadline = std::chrono::steady_clock::now() + ready_timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto status = server_.wait(10ms)) {
      server_ = runtime::child_process{};
      return failure("redis-server " + runtime::to_string(*status) +
                     " at start (its log: " + dir_ + "/redis.log)");
    }
    if (answers_ping(socket_))
      return caf::none;
  }
  crash();
  return failure("redis-server did not come up");
}

void embedded_redis::crash() {
  server_ = runtime::child_process{}; // SIGKILL, reaped
}

void embedded_redis::stop() {
  if (server_)
    server_.terminate(stop_grace);
  server_ = runtime::child_process{};
}

caf::error embedded_redis::restart() {
  stop();
  return launch();
}

embedded_redis::~embedded_redis() {
  stop();
  std::error_code ec;
  if (!dir_.empty())
    std::filesystem::remove_all(dir_, ec);
  cleaner_ = runtime::child_process{}; // not needed any more: SIGKILL
  if (cleaner_fd_ >= 0)
    ::close(cleaner_fd_);
}

caf::expected<std::shared_ptr<embedded_redis>> embedded_redis::shared() {
  static std::mutex mtx;
  static std::weak_ptr<embedded_redis> instance;
  std::lock_guard<std::mutex> guard{mtx};
  if (auto ptr = instance.lock())
    return ptr;
  auto fresh = start(false);
  if (!fresh)
    return std::move(fresh.error());
  std::shared_ptr<embedded_redis> ptr{std::move(*fresh)};
  instance = ptr;
  return ptr;
}

} // namespace actorbus::queue
