#pragma once

// An allocator of whole cache lines.

#include <cstddef>
#include <new>

namespace actorbus::bus::detail {

/// The size of a cache line on the machines we run on.
inline constexpr std::size_t cache_line = 64;

/// Allocates whole cache lines, aligned to a line. What a publisher reads
/// per event then shares no line with a heap neighbour that another core
/// writes (an event freed by a courier, say), which would cost the
/// publisher a cache miss per event.
template <class T>
struct line_allocator {
  using value_type = T;

  line_allocator() = default;

  template <class U>
  line_allocator(const line_allocator<U>&) noexcept {
    // nop
  }

  /// Bytes allocated for `n` objects: rounded up to whole lines.
  static std::size_t bytes(std::size_t n) noexcept {
    return (n * sizeof(T) + cache_line - 1) / cache_line * cache_line;
  }

  T* allocate(std::size_t n) {
    return static_cast<T*>(
        ::operator new (bytes(n), std::align_val_t{cache_line}));
  }

  // Unsized: clang++-14 has no sized deallocation unless -fsized-deallocation.
  void deallocate(T* ptr, std::size_t) noexcept {
    ::operator delete (ptr, std::align_val_t{cache_line});
  }

  friend bool operator==(line_allocator, line_allocator) noexcept {
    return true;
  }

  friend bool operator!=(line_allocator, line_allocator) noexcept {
    return false;
  }
};

} // namespace actorbus::bus::detail
