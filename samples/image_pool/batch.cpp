#include "batch.hpp"

#include "actorbus/ipc/process_pool.hpp"

#include <caf/meta/type_name.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <malloc.h>
#include <memory>
#include <mutex>
#include <sys/resource.h>
#include <unistd.h>

namespace image_pool {

namespace ipc = actorbus::ipc;

// How the settings, the jobs and the results cross the process boundary.

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, op& x) {
  return f(caf::meta::type_name("op"), x.kind, x.a, x.b);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, op_chain& x) {
  return f(caf::meta::type_name("op_chain"), x.count, x.ops);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, encode_settings& x) {
  return f(caf::meta::type_name("encode_settings"), x.format, x.jpeg_quality);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, batch_settings& x) {
  return f(caf::meta::type_name("batch_settings"), x.chain, x.encoding,
           x.max_pixels, x.crash_on);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, file_job& x) {
  return f(caf::meta::type_name("file_job"), x.input, x.output);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, file_result& x) {
  return f(caf::meta::type_name("file_result"), x.state, x.width, x.height,
           x.channels, x.input_pixels, x.pixel_checksum, x.file_checksum,
           x.output_bytes, x.elapsed, x.message);
}

namespace {

using clock_type = std::chrono::steady_clock;

/// A worker that died this many times on one image gives up on it.
constexpr uint32_t max_attempts = 2;

// One task: a file and the batch's settings.
struct task {
  file_job job;
  batch_settings settings;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, task& x) {
  return f(caf::meta::type_name("task"), x.job, x.settings);
}

// Set by request_cancel (a signal handler); never reset.
std::atomic<bool> cancel_requested{false};

bool is_final(file_state x) noexcept {
  return x != file_state::pending && x != file_state::running;
}

// Keeps freed image buffers in the heap. They are megabytes and die young:
// by default glibc maps each one fresh and unmaps it on free, so every image
// pays a page fault per 4 KiB of pixels (a third of its time, measured).
// PIL keeps a cache of image blocks for the same reason.
void keep_freed_memory() {
  ::mallopt(M_MMAP_THRESHOLD, 256 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 512 << 20);
}

// Once per worker process: the pool starts workers with default signal
// dispositions, so a Ctrl-C sent to the process group would kill them in
// the middle of an image. The parent takes Ctrl-C and cancels the batch
// instead; workers finish the image in hand.
void prepare_worker() {
  static bool prepared = false;
  if (prepared)
    return;
  prepared = true;
  ::signal(SIGINT, SIG_IGN);
  keep_freed_memory();
}

// Runs in a worker process: one file.
file_result run_task(const task& t) {
  prepare_worker();
  auto& crash_on = t.settings.crash_on;
  if (crash_on[0] != '\0' &&
      std::filesystem::path(t.job.input).filename() ==
          std::string(crash_on, strnlen(crash_on, sizeof(crash_on)))) {
    // --crash-on: die as a decoder bug would, without leaving a core file.
    rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    std::abort();
  }
  return process_file(t.job, t.settings, true);
}

} // namespace

const char* to_string(file_state x) noexcept {
  switch (x) {
  case file_state::pending:
    return "pending";
  case file_state::running:
    return "running";
  case file_state::ok:
    return "ok";
  case file_state::failed:
    return "failed";
  case file_state::crashed:
    return "crashed";
  case file_state::cancelled:
    return "cancelled";
  }
  return "unknown";
}

file_result process_file(const file_job& job, const batch_settings& settings,
                         bool write) {
  auto t0 = clock_type::now();
  file_result r;
  auto finish = [&](file_state st) {
    r.state = st;
    r.elapsed = std::chrono::duration_cast<std::chrono::microseconds>(
        clock_type::now() - t0);
    return r;
  };
  auto img = decode_file(job.input, settings.max_pixels, r.message);
  if (!img)
    return finish(file_state::failed);
  r.input_pixels = img->pixel_count();
  auto out = apply(settings.chain, std::move(*img));
  r.width = out.width;
  r.height = out.height;
  r.channels = out.channels;
  r.pixel_checksum = checksum(out);
  auto bytes = encode(out, settings.encoding);
  if (bytes.empty()) {
    r.message = "the encoder refused the image";
    return finish(file_state::failed);
  }
  r.file_checksum = checksum(bytes);
  r.output_bytes = bytes.size();
  if (write) {
    // One worker at a time works on a file, so the name is its own; the
    // parent removes it if that worker dies (see batch_runner::run).
    auto tmp = job.output + ".part";
    if (!write_file(tmp, bytes, r.message)) {
      std::remove(tmp.c_str());
      return finish(file_state::failed);
    }
    std::error_code ec;
    std::filesystem::rename(tmp, job.output, ec);
    if (ec) {
      std::remove(tmp.c_str());
      r.message = fmt::format("cannot write {}: {}", job.output, ec.message());
      return finish(file_state::failed);
    }
  }
  return finish(file_state::ok);
}

size_t batch_report::count(file_state x) const noexcept {
  return static_cast<size_t>(std::count_if(
      files.begin(), files.end(), [x](auto& f) { return f.state == x; }));
}

uint64_t batch_report::input_pixels() const noexcept {
  uint64_t n = 0;
  for (auto& f : files)
    if (f.state == file_state::ok)
      n += f.input_pixels;
  return n;
}

struct batch_runner::impl {
  ipc::process_pool<task, file_result> pool_;

  explicit impl(ipc::process_pool_options opts)
      : pool_(run_task, std::move(opts)) {}
};

batch_runner::batch_runner(batch_options opts) {
  keep_freed_memory(); // for the reference run in this process
  ipc::process_pool_options popts;
  popts.workers = opts.workers;
  popts.task_timeout = opts.timeout;
  popts.max_restarts = opts.max_restarts;
  // An image whose worker died on it twice is not tried again.
  popts.max_task_attempts = max_attempts;
  // Images take milliseconds: two queued per worker keep it busy, and keep
  // the work spread evenly at the end of a batch.
  popts.prefetch = 2;
  impl_ = std::make_unique<impl>(popts);
}

batch_runner::~batch_runner() = default;

const caf::error& batch_runner::start_error() const noexcept {
  return impl_->pool_.start_error();
}

size_t batch_runner::size() const noexcept {
  return impl_->pool_.size();
}

void batch_runner::request_cancel() noexcept {
  cancel_requested.store(true);
}

namespace {

// What the completions of a batch's tasks tell its thread.
struct batch_tally {
  std::mutex mx;
  std::condition_variable cv;
  size_t finished = 0;
  size_t failed = 0;
  uint64_t pixels = 0;
};

} // namespace

batch_report batch_runner::run(const std::vector<file_job>& jobs,
                               const batch_settings& settings,
                               progress_fn progress) {
  batch_report report;
  auto t0 = clock_type::now();
  auto& pool = impl_->pool_;
  auto tally = std::make_shared<batch_tally>();
  auto snapshot = [&] {
    batch_progress p;
    p.total = jobs.size();
    {
      std::lock_guard guard{tally->mx};
      p.finished = tally->finished;
      p.failed = tally->failed;
      p.pixels = tally->pixels;
    }
    p.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
    return p;
  };
  auto restarts_before = pool.restarts();
  // A few files per worker in the pool at a time: enough to keep every
  // worker busy, few enough that a cancel leaves the rest unstarted.
  const size_t window = 2 * std::max<size_t>(pool.size(), 1);
  std::vector<actorbus::actors::task_future<file_result>> futures;
  futures.reserve(jobs.size());
  auto last_report = clock_type::now();
  for (;;) {
    std::unique_lock guard{tally->mx};
    auto done = tally->finished;
    guard.unlock();
    bool cancelled = cancel_requested.load();
    while (!cancelled && futures.size() < jobs.size() &&
           futures.size() - done < window) {
      auto& fut = futures.emplace_back(
          pool.submit(task{jobs[futures.size()], settings}));
      fut.then([tally](const caf::expected<file_result>& r) {
        {
          std::lock_guard guard{tally->mx};
          ++tally->finished;
          if (!r || r->state != file_state::ok)
            ++tally->failed;
          else
            tally->pixels += r->input_pixels;
        }
        tally->cv.notify_all();
      });
    }
    if (done == futures.size() && (cancelled || done == jobs.size()))
      break;
    guard.lock();
    tally->cv.wait_for(guard, std::chrono::milliseconds(100),
                       [&] { return tally->finished != done; });
    guard.unlock();
    if (progress &&
        clock_type::now() - last_report >= std::chrono::milliseconds(100)) {
      last_report = clock_type::now();
      progress(snapshot());
    }
  }
  report.cancelled = cancel_requested.load();
  report.restarts = pool.restarts() - restarts_before;
  report.files.reserve(jobs.size());
  for (size_t i = 0; i < jobs.size(); ++i) {
    file_result r;
    if (i >= futures.size()) {
      r.state = file_state::cancelled; // never handed to a worker
      report.files.push_back(std::move(r));
      continue;
    }
    auto res = futures[i].get(caf::timespan{0});
    if (res) {
      r = std::move(*res);
    } else if (res.error() == ipc::errc::task_crashed) {
      r.state = file_state::crashed;
      r.message = fmt::format("its worker process died on it {} times; skipped",
                              max_attempts);
    } else {
      // The pool failed this task itself (timeout, or it gave up).
      if (report.pool_error.empty())
        report.pool_error = ipc::describe(res.error());
      r.state = file_state::failed;
      r.message = "the pool failed it: " + ipc::describe(res.error());
    }
    if (!is_final(r.state)) {
      r.state = file_state::failed;
      r.message = "lost by the pool";
    }
    if (r.state != file_state::ok) {
      // Left behind by a worker that died or was killed while writing.
      std::error_code ignored;
      std::filesystem::remove(jobs[i].output + ".part", ignored);
    }
    report.files.push_back(std::move(r));
  }
  report.seconds =
      std::chrono::duration<double>(clock_type::now() - t0).count();
  if (progress)
    progress(snapshot());
  return report;
}

} // namespace image_pool
