#pragma once

// Runs a batch of image files through an `ipc::process_pool`.
//
// How work and results travel: the parent writes one job table into a named
// shared-memory array (`ipc::shared_array<uint64_t>`, used as raw bytes):
// the operation chain, the limits, every input and output path, and one
// result slot per file. A task message carries only the table's name and a
// file's index (68 bytes); the worker reads the image from its path, runs
// the chain, writes the output file and fills its slot in place. No pixel
// crosses a process boundary, and decoding and encoding (most of the work)
// run in parallel in the workers.
//
// Why the slots live in shared memory rather than in the pool's replies:
// `process_pool::map` fails as a whole when one task fails for good (a
// timeout, or a pool that gave up), and it re-runs a task whose worker died
// until `max_restarts` is spent, so one image that crashes its decoder
// would take the whole batch with it. Here the worker counts attempts in
// the slot: an image whose worker died twice is reported as crashed instead
// of being tried again, and whatever happens to the pool, every finished
// file keeps its result. The same table carries the cancel flag (Ctrl-C)
// and the progress the parent shows.

#include "image_ops.hpp"

#include <caf/error.hpp>

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

/// Settings shared by every file of a batch; trivially copyable.
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
  /// Times a worker started on it (more than 1 after a worker crash).
  uint32_t attempts = 0;
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
  std::chrono::milliseconds timeout{std::chrono::minutes(2)};
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
  /// called about ten times a second from another thread, and once at the
  /// end.
  batch_report run(const std::vector<file_job>& jobs,
                   const batch_settings& settings, progress_fn progress = {});

  /// Asks the running batch (if any) to stop: files not yet started end
  /// as cancelled, files being processed finish. Async-signal-safe: call it
  /// from a SIGINT handler.
  static void request_cancel() noexcept;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace image_pool
