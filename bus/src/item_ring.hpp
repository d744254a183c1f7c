#pragma once

// The queue of one subscription: a FIFO ring that reuses its slots.

#include "line_allocator.hpp"

#include <algorithm>
#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

namespace actorbus::bus::detail {

/// A FIFO of `T` in a power-of-two ring that grows on demand (to 8 slots,
/// then doubling) and allocates nothing per item once grown. Four words
/// and a count, so that it shares a cache line with the lock that guards
/// it. Not thread-safe.
///
/// A handled item may stay in its slot, spent (see `drop_front`): the push
/// that reuses the slot then hands it back as `displaced`, so that it is
/// destroyed on the pushing thread, where the next item is allocated. Items
/// freed on another core would instead go back through the allocator's
/// shared lists, a cache miss per item on both sides. `T` must be default
/// constructible (an empty slot) and movable.
template <class T>
class item_ring {
public:
  item_ring() = default;

  item_ring(const item_ring&) = delete;

  item_ring& operator=(const item_ring&) = delete;

  ~item_ring() {
    release();
  }

  /// Items queued (spent ones not counted).
  std::size_t size() const noexcept {
    return count_;
  }

  bool empty() const noexcept {
    return count_ == 0;
  }

  /// Slots allocated now.
  std::size_t slots() const noexcept {
    return size_;
  }

  /// Spent items still held in their slots.
  std::size_t spent() const noexcept {
    return spent_;
  }

  /// Queues `x`; a spent item in its slot moves to `displaced`, so that the
  /// caller destroys it outside its lock (an event's destructor may
  /// publish).
  void push_back(T&& x, T& displaced) {
    if (count_ == size_)
      grow();
    auto& slot = buf_[(head_ + count_) & (size_ - 1)];
    displaced = std::move(slot);
    slot = std::move(x);
    ++count_;
    spent_ = std::min(spent_, size_ - count_);
  }

  /// Removes and returns the oldest item; leaves an empty slot.
  T pop_front() {
    T x = std::move(buf_[head_]);
    drop_front();
    return x;
  }

  /// The oldest item, to be handled in place. Requires `!empty()`.
  T& front() noexcept {
    return buf_[head_];
  }

  /// Removes the oldest item but leaves it in its slot, spent.
  void drop_front() noexcept {
    head_ = (head_ + 1) & (size_ - 1);
    --count_;
    ++spent_;
  }

  /// Destroys the spent items (replaces them with empty ones).
  void release_spent() noexcept {
    for (std::size_t i = 1; i <= spent_; ++i)
      buf_[(head_ - i) & (size_ - 1)] = T{};
    spent_ = 0;
  }

  /// Exchanges contents (slots, items and spent items) with `other`.
  void swap(item_ring& other) noexcept {
    std::swap(buf_, other.buf_);
    std::swap(size_, other.size_);
    std::swap(head_, other.head_);
    std::swap(count_, other.count_);
    std::swap(spent_, other.spent_);
  }

  /// Moves the first `n` items to the end of `out`. Requires `n <= size()`.
  void take(std::size_t n, std::vector<T>& out) {
    for (std::size_t i = 0; i < n; ++i)
      out.push_back(pop_front());
  }

private:
  void grow() {
    auto next_size = std::max<std::size_t>(8, size_ * 2);
    auto* next = line_allocator<T>{}.allocate(next_size);
    std::uninitialized_default_construct_n(next, next_size);
    for (std::size_t i = 0; i < count_; ++i)
      next[i] = std::move(buf_[(head_ + i) & (size_ - 1)]);
    release();
    buf_ = next;
    size_ = next_size;
    head_ = 0;
    spent_ = 0;
  }

  void release() noexcept {
    if (buf_ == nullptr)
      return;
    std::destroy_n(buf_, size_);
    line_allocator<T>{}.deallocate(buf_, size_);
  }

  T* buf_ = nullptr;
  std::size_t size_ = 0;
  std::size_t head_ = 0;
  std::size_t count_ = 0;
  // Slots before head_ holding spent items; at most size_ - count_.
  std::size_t spent_ = 0;
};

} // namespace actorbus::bus::detail
