#pragma once

// Runs a batch of image files through an `ipc::process_pool`.
//
// How work and results travel: each file is one task of the pool, submitted
// on its own (`process_pool::submit`), whose argument is the file's paths
// and the batch's settings and whose result is the file's `file_result`;
// both cross the process boundary in CAF's binary format (they have
// `inspect` overloads in batch.cpp). The worker reads the image from its
// path, runs the chain and writes the output file; no pixel crosses a
// process boundary, and decoding and encoding (most of the work) run in
// parallel in the workers.
//
// Each file has its own future, so one file's failure is its own: a file
// whose worker process died on it twice (the pool's `max_task_attempts`)
// is reported as crashed and not tried again, and whatever happens to the
// pool, every finished file keeps its result. Files are submitted a few per
// worker at a time, so that a cancel (Ctrl-C) leaves the files not yet
// submitted as cancelled; the completions drive the progress the parent
// shows.

#include "image_ops.hpp"

#include <caf/error.hpp>
#include <caf/timespan.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace image_pool {

/// What happened to one file.
enum class file_state : uint32_t {
  pending,
  running,
  ok,
  /// Unreadable, corrupt or too large; or its output could not be written.
  failed,
  /// Its worker process died on it twice; not tried again.
  crashed,
  /// Not started because the batch was cancelled.
  cancelled,
};

/// "ok", "failed", ...
const char* to_string(file_state x) noexcept;

/// Settings shared by every file of a batch.
struct batch_settings {
  op_chain chain;
  encode_settings encoding;
  /// Images with more pixels are refused from their header.
  uint64_t max_pixels = 50'000'000;
  /// Debug: a worker aborts on the input file of this name (not path).
  char crash_on[128] = {};
};

/// One input file and where its result goes.
struct file_job {
  std::string input;
  std::string output;
};

/// The outcome of one file.
struct file_result {
  file_state state = file_state::pending;
  int width = 0;
  int height = 0;
  int channels = 0;
  uint64_t input_pixels = 0;
  /// `checksum(image)` of the processed pixels.
  uint64_t pixel_checksum = 0;
  /// Checksum of the encoded output bytes.
  uint64_t file_checksum = 0;
  uint64_t output_bytes = 0;
  std::chrono::microseconds elapsed{0};
  std::string message;
};

/// Processes one file in this process: decode, chain, encode and, when
/// `write` is set, write the output (to `<output>.part`, then renamed, so
/// that no half-written output is ever left under its real name). Used by the
/// workers and by the single-process reference run.
file_result process_file(const file_job& job, const batch_settings& settings,
                         bool write);

/// Progress of a running batch.
struct batch_progress {
  size_t total = 0;
  size_t finished = 0;
  size_t failed = 0;
  uint64_t pixels = 0;
  double seconds = 0;
};

/// Everything a batch produced.
struct batch_report {
  std::vector<file_result> files;
  /// Why the pool failed some tasks as a whole (timeout, gave up), if so.
  std::string pool_error;
  size_t restarts = 0;
  double seconds = 0;
  bool cancelled = false;

  size_t count(file_state x) const noexcept;
  uint64_t input_pixels() const noexcept;
};

struct batch_options {
  /// Worker processes; 0 means one per core.
  size_t workers = 0;
  /// An image that takes longer fails (its worker is killed and replaced).
  caf::timespan timeout = std::chrono::minutes(2);
  /// Bounds worker restarts over the runner's life.
  size_t max_restarts = 1000;
};

/// A pool of worker processes that processes batches of files. Construct
/// it before starting other threads: its workers are forked on
/// construction.
class batch_runner {
public:
  using progress_fn = std::function<void(const batch_progress&)>;

  explicit batch_runner(batch_options opts);
  ~batch_runner();

  /// Why the workers could not start, or none.
  const caf::error& start_error() const noexcept;

  /// Number of worker processes.
  size_t size() const noexcept;

  /// Runs every job; blocks until each file has an outcome. `progress` is
  /// called about ten times a second from this thread, and once at the
  /// end.
  batch_report run(const std::vector<file_job>& jobs,
                   const batch_settings& settings, progress_fn progress = {});

  /// Asks the running batch (if any) to stop: files not yet handed to the
  /// workers end as cancelled, the few handed out finish. Async-signal-safe:
  /// call it from a SIGINT handler.
  static void request_cancel() noexcept;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace image_pool
