#include "batch.hpp"

#include "actorbus/ipc/process_pool.hpp"
#include "actorbus/ipc/shared_array.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <malloc.h>
#include <mutex>
#include <optional>
#include <sys/resource.h>
#include <thread>
#include <type_traits>
#include <unistd.h>

namespace image_pool {

namespace ipc = actorbus::ipc;

namespace {

using clock_type = std::chrono::steady_clock;

/// A worker that died this many times on one image gives up on it.
constexpr uint32_t max_attempts = 2;

constexpr uint64_t table_magic = 0x696d672d706f6f6cull; // "img-pool"

// One file's slot in the shared table. Written by the worker that runs
// the file, read by the parent once `state` (release/acquire) is final.
struct slot {
  std::atomic<uint32_t> state;
  std::atomic<uint32_t> attempts;
  uint32_t input_offset;
  uint32_t input_size;
  uint32_t output_offset;
  uint32_t output_size;
  int32_t width;
  int32_t height;
  int32_t channels;
  uint32_t padding;
  uint64_t input_pixels;
  uint64_t pixel_checksum;
  uint64_t file_checksum;
  uint64_t output_bytes;
  uint64_t micros;
  char message[216];
};

struct header {
  uint64_t magic;
  uint64_t count;
  uint64_t strings_size;
  std::atomic<uint32_t> cancel;
  uint32_t padding;
  batch_settings settings;
};

static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(std::is_trivially_copyable_v<batch_settings>);

// The task message: which table, which file.
struct task {
  char table[64];
  uint32_t index;
};

// A job table mapped in this process: header | slots | path strings.
class table_view {
public:
  explicit table_view(ipc::shared_array<uint64_t> arr)
      : arr_(std::move(arr)) {}

  static size_t bytes_needed(const std::vector<file_job>& jobs) {
    size_t strings = 0;
    for (auto& j : jobs)
      strings += j.input.size() + j.output.size();
    return sizeof(header) + jobs.size() * sizeof(slot) + strings;
  }

  // Checks that what a worker attached is a table it can trust.
  bool valid() const noexcept {
    auto bytes = arr_.size() * sizeof(uint64_t);
    if (bytes < sizeof(header))
      return false;
    auto& h = head();
    return h.magic == table_magic &&
           h.count <= (bytes - sizeof(header)) / sizeof(slot) &&
           h.strings_size <= bytes - sizeof(header) - h.count * sizeof(slot);
  }

  header& head() const noexcept {
    return *static_cast<header*>(base());
  }

  slot& at(size_t i) const noexcept {
    return reinterpret_cast<slot*>(static_cast<char*>(base()) +
                                   sizeof(header))[i];
  }

  char* strings() const noexcept {
    return static_cast<char*>(base()) + sizeof(header) +
           head().count * sizeof(slot);
  }

  // The slot's paths, or nullopt if they point outside the table.
  std::optional<file_job> job(size_t i) const {
    auto& s = at(i);
    auto limit = head().strings_size;
    if (uint64_t{s.input_offset} + s.input_size > limit ||
        uint64_t{s.output_offset} + s.output_size > limit)
      return std::nullopt;
    return file_job{std::string(strings() + s.input_offset, s.input_size),
                    std::string(strings() + s.output_offset, s.output_size)};
  }

  const std::string& name() const noexcept {
    return arr_.name();
  }

private:
  void* base() const noexcept {
    return const_cast<uint64_t*>(arr_.data().data());
  }

  ipc::shared_array<uint64_t> arr_;
};

// The cancel flag of the batch running in this process, for the signal
// handler; null between batches.
std::atomic<std::atomic<uint32_t>*> current_cancel{nullptr};
std::atomic<bool> cancel_requested{false};

void copy_message(char (&dst)[216], const std::string& msg) {
  auto n = std::min(msg.size(), sizeof(dst) - 1);
  std::memcpy(dst, msg.data(), n);
  dst[n] = '\0';
}

void store(slot& s, const file_result& r) {
  s.width = r.width;
  s.height = r.height;
  s.channels = r.channels;
  s.input_pixels = r.input_pixels;
  s.pixel_checksum = r.pixel_checksum;
  s.file_checksum = r.file_checksum;
  s.output_bytes = r.output_bytes;
  s.micros = static_cast<uint64_t>(r.elapsed.count());
  copy_message(s.message, r.message);
  s.state.store(static_cast<uint32_t>(r.state), std::memory_order_release);
}

file_result load(const slot& s) {
  file_result r;
  r.state = static_cast<file_state>(s.state.load(std::memory_order_acquire));
  r.attempts = s.attempts.load();
  r.width = s.width;
  r.height = s.height;
  r.channels = s.channels;
  r.input_pixels = s.input_pixels;
  r.pixel_checksum = s.pixel_checksum;
  r.file_checksum = s.file_checksum;
  r.output_bytes = s.output_bytes;
  r.elapsed = std::chrono::microseconds{s.micros};
  r.message.assign(s.message, strnlen(s.message, sizeof(s.message)));
  return r;
}

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

// Runs in a worker process: one file of the table named in `t`.
uint32_t run_task(task t) {
  prepare_worker();
  // A worker keeps the table it used last (a batch has many files).
  static std::optional<table_view> table;
  t.table[sizeof(t.table) - 1] = '\0';
  if (!table || table->name() != t.table) {
    table.reset();
    auto arr = ipc::shared_array<uint64_t>::attach(t.table);
    if (!arr)
      return static_cast<uint32_t>(file_state::failed);
    table.emplace(std::move(*arr));
    if (!table->valid()) {
      table.reset();
      return static_cast<uint32_t>(file_state::failed);
    }
  }
  auto& head = table->head();
  if (t.index >= head.count)
    return static_cast<uint32_t>(file_state::failed);
  auto& s = table->at(t.index);
  auto done = [&](const file_result& r) {
    store(s, r);
    return static_cast<uint32_t>(r.state);
  };
  // Re-sent after its worker died past this point: the result is in.
  if (auto st = static_cast<file_state>(s.state.load()); is_final(st))
    return static_cast<uint32_t>(st);
  file_result r;
  if (head.cancel.load() != 0) {
    r.state = file_state::cancelled;
    return done(r);
  }
  auto attempt = s.attempts.fetch_add(1) + 1;
  if (attempt > max_attempts) {
    r.state = file_state::crashed;
    r.attempts = attempt - 1;
    r.message = fmt::format("its worker process died on it {} times; skipped",
                            attempt - 1);
    return done(r);
  }
  s.state.store(static_cast<uint32_t>(file_state::running));
  auto job = table->job(t.index);
  if (!job) {
    r.state = file_state::failed;
    r.message = "corrupt job table";
    return done(r);
  }
  auto settings = head.settings;
  settings.crash_on[sizeof(settings.crash_on) - 1] = '\0';
  if (settings.crash_on[0] != '\0' &&
      std::filesystem::path(job->input).filename() == settings.crash_on) {
    // --crash-on: die as a decoder bug would, without leaving a core file.
    rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    std::abort();
  }
  return done(process_file(*job, settings, true));
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
  ipc::process_pool<task, uint32_t> pool;
  uint64_t batches = 0;

  explicit impl(ipc::process_pool_options opts)
      : pool(run_task, opts) {}
};

batch_runner::batch_runner(batch_options opts) {
  keep_freed_memory(); // for the reference run in this process
  ipc::process_pool_options popts;
  popts.workers = opts.workers;
  popts.task_timeout = opts.timeout;
  popts.max_restarts = opts.max_restarts;
  // Images take milliseconds: two queued per worker keep it busy, and keep
  // the work spread evenly at the end of a batch.
  popts.prefetch = 2;
  impl_ = std::make_unique<impl>(popts);
}

batch_runner::~batch_runner() = default;

const caf::error& batch_runner::start_error() const noexcept {
  return impl_->pool.start_error();
}

size_t batch_runner::size() const noexcept {
  return impl_->pool.size();
}

void batch_runner::request_cancel() noexcept {
  cancel_requested.store(true);
  if (auto* flag = current_cancel.load())
    flag->store(1);
}

batch_report batch_runner::run(const std::vector<file_job>& jobs,
                               const batch_settings& settings,
                               progress_fn progress) {
  batch_report report;
  auto t0 = clock_type::now();
  auto name = fmt::format("image-pool-{}-{}", ::getpid(), ++impl_->batches);
  auto words = (table_view::bytes_needed(jobs) + sizeof(uint64_t) - 1) /
               sizeof(uint64_t);
  auto arr = ipc::shared_array<uint64_t>::create(name, {words});
  if (!arr) {
    report.pool_error = ipc::describe(arr.error());
    report.files.resize(jobs.size());
    for (auto& f : report.files) {
      f.state = file_state::failed;
      f.message = "no job table: " + report.pool_error;
    }
    return report;
  }
  table_view table{std::move(*arr)};
  auto& head = table.head();
  head.magic = table_magic;
  head.count = jobs.size();
  head.settings = settings;
  uint32_t offset = 0;
  auto* strings = table.strings();
  for (size_t i = 0; i < jobs.size(); ++i) {
    auto& s = table.at(i);
    auto put = [&](const std::string& str, uint32_t& at, uint32_t& size) {
      std::memcpy(strings + offset, str.data(), str.size());
      at = offset;
      size = static_cast<uint32_t>(str.size());
      offset += size;
    };
    put(jobs[i].input, s.input_offset, s.input_size);
    put(jobs[i].output, s.output_offset, s.output_size);
  }
  head.strings_size = offset;
  current_cancel.store(&head.cancel);
  if (cancel_requested.load())
    head.cancel.store(1);
  std::vector<task> tasks(jobs.size());
  for (size_t i = 0; i < jobs.size(); ++i) {
    std::snprintf(tasks[i].table, sizeof(tasks[i].table), "%s", name.c_str());
    tasks[i].index = static_cast<uint32_t>(i);
  }
  auto snapshot = [&] {
    batch_progress p;
    p.total = jobs.size();
    for (size_t i = 0; i < jobs.size(); ++i) {
      auto& s = table.at(i);
      auto st =
          static_cast<file_state>(s.state.load(std::memory_order_acquire));
      if (!is_final(st))
        continue;
      ++p.finished;
      if (st == file_state::ok)
        p.pixels += s.input_pixels;
      else if (st != file_state::cancelled)
        ++p.failed;
    }
    p.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
    return p;
  };
  // The progress reporter: polls the slots until the batch is done.
  std::mutex mx;
  std::condition_variable cv;
  bool finished = false;
  std::thread reporter;
  if (progress)
    reporter = std::thread{[&] {
      std::unique_lock guard{mx};
      while (!cv.wait_for(guard, std::chrono::milliseconds(100),
                          [&] { return finished; }))
        progress(snapshot());
    }};
  auto restarts_before = impl_->pool.restarts();
  auto res = impl_->pool.map(tasks);
  {
    std::lock_guard guard{mx};
    finished = true;
  }
  cv.notify_all();
  if (reporter.joinable())
    reporter.join();
  current_cancel.store(nullptr);
  if (!res)
    report.pool_error = ipc::describe(res.error());
  report.cancelled = head.cancel.load() != 0;
  report.restarts = impl_->pool.restarts() - restarts_before;
  report.files.reserve(jobs.size());
  for (size_t i = 0; i < jobs.size(); ++i) {
    auto r = load(table.at(i));
    if (r.state != file_state::ok) {
      // Left behind by a worker that died or was killed while writing.
      std::error_code ignored;
      std::filesystem::remove(jobs[i].output + ".part", ignored);
    }
    if (!is_final(r.state)) {
      // The pool failed this task itself (timeout, or it gave up).
      r.state = file_state::failed;
      r.message = report.pool_error.empty()
                      ? "lost by the pool"
                      : "the pool failed it: " + report.pool_error;
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
