#pragma once

// Implementation of process_pool.hpp: the untyped pool core (tasks are byte
// strings) and the CAF binary encoding of arguments and results.

#include "actorbus/ipc/error.hpp"

#include <caf/binary_deserializer.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/serializer_impl.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <sys/types.h>
#include <type_traits>
#include <utility>
#include <vector>

namespace actorbus::ipc {

struct process_pool_options;

namespace detail {

/// How a worker's call of the task function ended.
enum class task_outcome : uint8_t {
  /// `out` holds the serialized result.
  ok,
  /// The function threw; `out` holds the exception's `what()`.
  threw,
  /// The argument did not deserialize; `out` holds why.
  bad_argument,
};

/// Untyped core: tasks are byte strings, workers run `fn` on them.
class pool_core {
public:
  using worker_fn = std::function<task_outcome(std::span<const std::byte>,
                                               std::vector<std::byte>&)>;
  using result_fn = std::function<void(caf::expected<std::vector<std::byte>>)>;
  using done_fn =
      std::function<void(size_t index, caf::expected<std::vector<std::byte>>)>;

  pool_core(worker_fn fn, process_pool_options opts);
  ~pool_core();

  caf::error start();

  /// Runs every task; `done` is called once per task, from pool threads.
  /// Returns when every task has its result.
  void run(std::vector<std::vector<std::byte>> tasks, done_fn done);

  /// Queues one task and returns; `done` is called once, from a pool
  /// thread (or from this one when the task fails at once).
  void submit(std::vector<std::byte> task, result_fn done);

  size_t size() const noexcept;
  size_t restarts() const noexcept;
  std::vector<pid_t> worker_pids() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// Whether `T` travels as its bytes: both ends are this binary, so a
/// trivially copyable value needs no encoding (and a large array of bytes
/// costs a copy instead of a call per element).
template <class T>
inline constexpr bool travels_as_bytes = std::is_trivially_copyable_v<T>;

/// Appends `x` to `buf`: its bytes, or CAF's binary serialization.
template <class T>
caf::error append_bytes(const T& x, std::vector<std::byte>& buf) {
  if constexpr (travels_as_bytes<T>) {
    auto* first = reinterpret_cast<const std::byte*>(&x);
    buf.insert(buf.end(), first, first + sizeof(T));
    return caf::none;
  } else {
    caf::serializer_impl<std::vector<std::byte>> sink{nullptr, buf};
    return sink(x);
  }
}

/// Serializes `x` (see `append_bytes`).
template <class T>
caf::expected<std::vector<std::byte>> to_bytes(const T& x) {
  std::vector<std::byte> buf;
  if (auto err = append_bytes(x, buf))
    return make_error(errc::invalid_argument,
                      "cannot serialize a process_pool value: " +
                          caf::to_string(err));
  return buf;
}

/// Deserializes a `T` that fills `bytes` exactly.
template <class T>
caf::expected<T> from_bytes(std::span<const std::byte> bytes) {
  if constexpr (travels_as_bytes<T>) {
    if (bytes.size() != sizeof(T))
      return make_error(errc::corrupt_frame,
                        "process_pool value of " +
                            std::to_string(bytes.size()) + " bytes where " +
                            std::to_string(sizeof(T)) + " were expected");
    T x;
    std::memcpy(&x, bytes.data(), sizeof(T));
    return x;
  } else {
    caf::binary_deserializer source{
        nullptr, reinterpret_cast<const char*>(bytes.data()), bytes.size()};
    T x{};
    if (auto err = source(x))
      return make_error(errc::corrupt_frame,
                        "cannot deserialize a process_pool value: " +
                            caf::to_string(err));
    if (source.remaining() != 0)
      return make_error(errc::corrupt_frame,
                        "process_pool value followed by " +
                            std::to_string(source.remaining()) +
                            " extra bytes");
    return x;
  }
}

/// The worker side of `Result fn(Arg)`: decodes the argument, calls `fn`,
/// encodes the result (or the text of what went wrong).
template <class Arg, class Result, class F>
pool_core::worker_fn make_worker_fn(F fn) {
  return [fn = std::move(fn)](std::span<const std::byte> in,
                              std::vector<std::byte>& out) mutable {
    auto say = [&out](const std::string& text, task_outcome x) {
      auto* first = reinterpret_cast<const std::byte*>(text.data());
      out.assign(first, first + text.size());
      return x;
    };
    auto arg = from_bytes<Arg>(in);
    if (!arg)
      return say(caf::to_string(arg.error()), task_outcome::bad_argument);
    try {
      if (auto err = append_bytes<Result>(fn(*arg), out))
        return say("cannot serialize the result: " + caf::to_string(err),
                   task_outcome::threw);
      return task_outcome::ok;
    } catch (const std::exception& e) {
      return say(e.what(), task_outcome::threw);
    } catch (...) {
      return say("unknown exception", task_outcome::threw);
    }
  };
}

} // namespace detail

} // namespace actorbus::ipc
