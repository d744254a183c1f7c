#include "item_ring.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

// The ring that queues a subscription's events (bus/src/item_ring.hpp).
// Items are shared tokens: a token's use count tells whether the ring still
// holds a copy of it.

namespace {

using actorbus::bus::detail::item_ring;
using token = std::shared_ptr<int>;

class item_ring_test : public ::testing::Test {
protected:
  /// Pushes a new token with value `x`; returns it.
  token push(int x) {
    auto t = std::make_shared<int>(x);
    token displaced;
    sut.push_back(token{t}, displaced);
    return t;
  }

  /// Pops every item; returns their values in order.
  std::vector<int> drain() {
    std::vector<int> out;
    while (!sut.empty())
      out.push_back(*sut.pop_front());
    return out;
  }

  item_ring<token> sut;
};

TEST_F(item_ring_test, items_come_out_in_the_order_they_went_in) {
  for (int i = 0; i < 100; ++i)
    push(i);
  EXPECT_EQ(sut.size(), 100u);
  std::vector<int> want;
  for (int i = 0; i < 100; ++i)
    want.push_back(i);
  EXPECT_EQ(drain(), want);
  EXPECT_TRUE(sut.empty());
}

TEST_F(item_ring_test, order_holds_when_the_ring_wraps_around_and_grows) {
  // Move the head to the middle of 8 slots, then fill past the end.
  for (int i = 0; i < 5; ++i)
    push(i);
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(*sut.pop_front(), i);
  for (int i = 5; i < 13; ++i) // wraps around
    push(i);
  EXPECT_EQ(sut.slots(), 8u);
  push(13); // grows while wrapped
  EXPECT_EQ(sut.slots(), 16u);
  EXPECT_EQ(drain(), (std::vector<int>{5, 6, 7, 8, 9, 10, 11, 12, 13}));
}

TEST_F(item_ring_test, the_ring_allocates_eight_slots_then_doubles) {
  EXPECT_EQ(sut.slots(), 0u);
  push(0);
  EXPECT_EQ(sut.slots(), 8u);
  for (int i = 1; i < 9; ++i)
    push(i);
  EXPECT_EQ(sut.slots(), 16u);
  for (int i = 9; i < 17; ++i)
    push(i);
  EXPECT_EQ(sut.slots(), 32u);
}

TEST_F(item_ring_test,
       a_dropped_item_stays_in_its_slot_until_the_slot_is_reused) {
  auto first = push(1);
  EXPECT_EQ(*sut.front(), 1);
  sut.drop_front();
  EXPECT_TRUE(sut.empty());
  EXPECT_EQ(sut.spent(), 1u);
  EXPECT_EQ(first.use_count(), 2); // still in its slot, spent
  // Seven more pushes fill the other slots; the eighth reuses the slot of
  // the spent item and hands it back.
  for (int i = 2; i < 9; ++i)
    push(i);
  EXPECT_EQ(first.use_count(), 2);
  token displaced;
  sut.push_back(std::make_shared<int>(9), displaced);
  EXPECT_EQ(displaced, first);
  EXPECT_EQ(sut.spent(), 0u);
  displaced.reset();
  EXPECT_EQ(first.use_count(), 1);
}

TEST_F(item_ring_test, release_spent_destroys_the_spent_items_only) {
  auto a = push(1);
  auto b = push(2);
  auto c = push(3);
  sut.drop_front();
  sut.drop_front();
  sut.release_spent();
  EXPECT_EQ(sut.spent(), 0u);
  EXPECT_EQ(a.use_count(), 1);
  EXPECT_EQ(b.use_count(), 1);
  EXPECT_EQ(c.use_count(), 2); // still queued
  EXPECT_EQ(drain(), (std::vector<int>{3}));
}

TEST_F(item_ring_test, pop_front_leaves_no_copy_behind) {
  auto a = push(1);
  auto x = sut.pop_front();
  x.reset();
  EXPECT_EQ(a.use_count(), 1);
}

TEST_F(item_ring_test, take_moves_the_oldest_items_to_a_vector) {
  for (int i = 0; i < 5; ++i)
    push(i);
  std::vector<token> out;
  sut.take(3, out);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(*out[0], 0);
  EXPECT_EQ(*out[2], 2);
  EXPECT_EQ(drain(), (std::vector<int>{3, 4}));
}

TEST_F(item_ring_test, swap_exchanges_items_and_slots) {
  push(1);
  push(2);
  item_ring<token> other;
  sut.swap(other);
  EXPECT_TRUE(sut.empty());
  EXPECT_EQ(sut.slots(), 0u);
  EXPECT_EQ(other.size(), 2u);
  EXPECT_EQ(*other.pop_front(), 1);
  EXPECT_EQ(*other.pop_front(), 2);
}

TEST_F(item_ring_test, destroying_the_ring_destroys_queued_and_spent_items) {
  auto spent = push(1);
  auto queued = push(2);
  {
    item_ring<token> ring;
    ring.swap(sut);
    ring.drop_front();
    EXPECT_EQ(spent.use_count(), 2);
    EXPECT_EQ(queued.use_count(), 2);
  }
  EXPECT_EQ(spent.use_count(), 1);
  EXPECT_EQ(queued.use_count(), 1);
}

} // namespace
