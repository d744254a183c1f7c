#pragma once

// Named, typed arrays in shared memory (the seed's `SharedArray`): one
// process creates the array, others attach by name and see the same
// elements as a `std::span`. The segment is mode 0600; its header records
// element type, element size and shape, and `attach` refuses a mismatch.
//
// Ownership: the creator unlinks the name when it closes (or is destroyed);
// attached processes keep their mapping until they close. A segment left by
// a creator that died is reclaimed by the next `create` of that name.
// Thread-safety: the handle itself is not synchronized; concurrent access to
// elements needs the caller's own protocol (e.g. messages over a channel).

#include "actorbus/ipc/error.hpp"

#include <caf/expected.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace actorbus::ipc {

namespace detail {

/// Untyped shared segment behind `shared_array<T>`.
class array_segment {
public:
  static caf::expected<array_segment> create(const std::string& name,
                                             std::string_view type,
                                             size_t elem_size,
                                             const std::vector<size_t>& shape);
  static caf::expected<array_segment>
  attach(const std::string& name, std::string_view type, size_t elem_size);

  array_segment(array_segment&&) noexcept;
  array_segment& operator=(array_segment&&) noexcept;
  ~array_segment();

  void* data() const noexcept;
  size_t count() const noexcept;
  const std::vector<size_t>& shape() const noexcept;
  bool is_creator() const noexcept;
  const std::string& name() const noexcept;
  void close() noexcept;

private:
  struct impl;
  explicit array_segment(std::unique_ptr<impl> ptr);
  std::unique_ptr<impl> impl_;
};

template <class T>
constexpr std::string_view element_type_name() {
  if constexpr (std::is_same_v<T, float>)
    return "f32";
  else if constexpr (std::is_same_v<T, double>)
    return "f64";
  else if constexpr (std::is_same_v<T, bool>)
    return "bool";
  else if constexpr (std::is_signed_v<T>)
    return sizeof(T) == 1   ? "i8"
           : sizeof(T) == 2 ? "i16"
           : sizeof(T) == 4 ? "i32"
                            : "i64";
  else
    return sizeof(T) == 1   ? "u8"
           : sizeof(T) == 2 ? "u16"
           : sizeof(T) == 4 ? "u32"
                            : "u64";
}

} // namespace detail

/// A named array of `T` (an arithmetic type) in shared memory.
template <class T>
class shared_array {
public:
  static_assert(std::is_arithmetic_v<T>,
                "shared_array holds arithmetic element types");

  /// Creates `name` with the given shape, zero-filled. Fails with
  /// `errc::already_exists` if a live process created it already.
  [[nodiscard]] static caf::expected<shared_array>
  create(const std::string& name, std::vector<size_t> shape) {
    auto seg = detail::array_segment::create(
        name, detail::element_type_name<T>(), sizeof(T), shape);
    if (!seg)
      return std::move(seg.error());
    return shared_array{std::move(*seg)};
  }

  /// Attaches to an existing array; `errc::incompatible` if its element
  /// type differs, `errc::not_found` if there is none.
  [[nodiscard]] static caf::expected<shared_array>
  attach(const std::string& name) {
    auto seg = detail::array_segment::attach(
        name, detail::element_type_name<T>(), sizeof(T));
    if (!seg)
      return std::move(seg.error());
    return shared_array{std::move(*seg)};
  }

  /// Attaches if `name` exists, creates it otherwise (the seed's
  /// behaviour). An existing array must have the same shape.
  [[nodiscard]] static caf::expected<shared_array>
  create_or_attach(const std::string& name, std::vector<size_t> shape) {
    for (int attempt = 0; attempt < 3; ++attempt) {
      if (auto arr = attach(name)) {
        if (arr->shape() != shape)
          return make_error(errc::incompatible,
                            "'" + name + "' exists with another shape");
        return arr;
      } else if (arr.error() != errc::not_found) {
        return std::move(arr.error());
      }
      auto arr = create(name, shape);
      if (arr || arr.error() != errc::already_exists)
        return arr;
    }
    return make_error(errc::busy, "'" + name + "' keeps changing");
  }

  /// All elements, row-major.
  std::span<T> data() noexcept {
    return {static_cast<T*>(seg_.data()), seg_.count()};
  }

  std::span<const T> data() const noexcept {
    return {static_cast<const T*>(seg_.data()), seg_.count()};
  }

  T& operator[](size_t i) noexcept {
    return data()[i];
  }

  const T& operator[](size_t i) const noexcept {
    return data()[i];
  }

  size_t size() const noexcept {
    return seg_.count();
  }

  const std::vector<size_t>& shape() const noexcept {
    return seg_.shape();
  }

  bool is_creator() const noexcept {
    return seg_.is_creator();
  }

  const std::string& name() const noexcept {
    return seg_.name();
  }

  /// Unmaps; the creator also unlinks the name. Spans become invalid.
  void close() noexcept {
    seg_.close();
  }

private:
  explicit shared_array(detail::array_segment seg)
      : seg_(std::move(seg)) {}

  detail::array_segment seg_;
};

} // namespace actorbus::ipc
