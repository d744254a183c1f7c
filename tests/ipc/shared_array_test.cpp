#include "actorbus/ipc/shared_array.hpp"

#include "ipc_names.hpp"
#include "race_gate.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <numeric>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace actorbus::ipc;
using namespace std::chrono_literals;
using actorbus::ipc::testing::fork_child;
using actorbus::ipc::testing::race;
using actorbus::ipc::testing::race_gate;
using actorbus::ipc::testing::unique_shm_name;
using actorbus::ipc::testing::wait_child;
using actorbus::ipc::testing::watchdog;

namespace {

bool exists(const std::string& name) {
  return ::access(("/dev/shm/" + name).c_str(), F_OK) == 0;
}

struct shared_array_test : ::testing::Test {
  unique_shm_name name{"arr"};
};

} // namespace

TEST_F(shared_array_test, elements_written_by_another_process_are_seen) {
  auto sut = shared_array<int64_t>::create(name.str(), {4, 5});
  ASSERT_TRUE(sut) << describe(sut.error());
  EXPECT_EQ(sut->size(), 20u);
  EXPECT_TRUE(sut->is_creator());
  for (auto x : sut->data())
    ASSERT_EQ(x, 0) << "a new array is zeroed";
  auto child = fork_child([&] {
    auto arr = shared_array<int64_t>::attach(name.str());
    if (!arr || arr->shape() != std::vector<size_t>{4, 5} || arr->is_creator())
      return 1;
    for (size_t i = 0; i < arr->size(); ++i)
      (*arr)[i] = static_cast<int64_t>(i * i);
    return 0;
  });
  ASSERT_EQ(wait_child(child, 10s), 0);
  int64_t total =
      std::accumulate(sut->data().begin(), sut->data().end(), int64_t{0});
  EXPECT_EQ(total, 2470); // sum of i*i for i < 20
}

TEST_F(shared_array_test, attach_refuses_another_element_type) {
  auto sut = shared_array<float>::create(name.str(), {8});
  ASSERT_TRUE(sut);
  auto wrong = shared_array<int32_t>::attach(name.str());
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error(), errc::incompatible) << describe(wrong.error());
  auto right = shared_array<float>::attach(name.str());
  EXPECT_TRUE(right);
}

TEST_F(shared_array_test, create_or_attach_attaches_when_the_name_exists) {
  auto sut = shared_array<double>::create_or_attach(name.str(), {3});
  ASSERT_TRUE(sut);
  EXPECT_TRUE(sut->is_creator());
  (*sut)[1] = 2.5;
  auto second = shared_array<double>::create_or_attach(name.str(), {3});
  ASSERT_TRUE(second);
  EXPECT_FALSE(second->is_creator());
  EXPECT_EQ((*second)[1], 2.5);
  auto other_shape = shared_array<double>::create_or_attach(name.str(), {4});
  ASSERT_FALSE(other_shape);
  EXPECT_EQ(other_shape.error(), errc::incompatible);
}

TEST_F(shared_array_test,
       two_processes_calling_create_or_attach_at_once_share_one_array) {
  watchdog guard{100s};
  constexpr int rounds = 300;
  int split = 0;
  int failed = 0;
  for (int round = 0; round < rounds; ++round) {
    unique_shm_name nm{"arrace"};
    race_gate gate;
    ASSERT_TRUE(gate.ok());
    auto kids = race(gate, 2, [&](int k) {
      auto arr = shared_array<int32_t>::create_or_attach(nm.str(), {2});
      if (!arr) {
        std::fprintf(stderr, "round %d: %s\n", round,
                     describe(arr.error()).c_str());
        gate.result(k) = -1;
        gate.arrive(2);
        return 2;
      }
      (*arr)[k] = 1;
      gate.arrive(2);
      if (!gate.wait_for(2, 2))
        return 3;
      // 1 if this process sees the other's element.
      gate.result(k) = (*arr)[1 - k] == 1 ? 1 : 0;
      gate.arrive(3);
      return gate.wait_for(3, 2) ? 0 : 4;
    });
    ASSERT_EQ(kids.size(), 2u) << "round " << round;
    int statuses = 0;
    for (auto kid : kids)
      statuses |= wait_child(kid, 10s);
    if (gate.result(0) == -1 || gate.result(1) == -1)
      ++failed;
    else if (gate.result(0) != 1 || gate.result(1) != 1)
      ++split;
    else
      EXPECT_EQ(statuses, 0) << "round " << round;
    EXPECT_FALSE(exists(nm.str())) << "round " << round;
  }
  EXPECT_EQ(split + failed, 0) << "of " << rounds << " rounds, " << split
                               << " ended on different arrays and in " << failed
                               << " create_or_attach failed (see stderr)";
}

TEST_F(shared_array_test,
       the_creator_unlinks_and_attached_mappings_stay_valid) {
  auto sut = shared_array<uint8_t>::create(name.str(), {16});
  ASSERT_TRUE(sut);
  auto attached = shared_array<uint8_t>::attach(name.str());
  ASSERT_TRUE(attached);
  (*sut)[3] = 7;
  sut->close();
  EXPECT_FALSE(exists(name.str()));
  EXPECT_EQ((*attached)[3], 7);
  attached->close();
  EXPECT_FALSE(shared_array<uint8_t>::attach(name.str()));
}

TEST_F(shared_array_test, an_array_left_by_a_dead_creator_is_reclaimed) {
  auto child = fork_child([&] {
    auto arr = shared_array<int32_t>::create(name.str(), {10});
    if (!arr)
      return 1;
    ::raise(SIGKILL);
    return 2;
  });
  wait_child(child, 10s);
  ASSERT_TRUE(exists(name.str()));
  auto sut = shared_array<int32_t>::create(name.str(), {10});
  ASSERT_TRUE(sut) << describe(sut.error());
  // A live creator's array is not taken.
  auto again = shared_array<int32_t>::create(name.str(), {10});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), errc::already_exists);
}

TEST_F(shared_array_test, the_segment_has_mode_0600) {
  auto old = ::umask(0);
  auto sut = shared_array<int16_t>::create(name.str(), {2, 2});
  ::umask(old);
  ASSERT_TRUE(sut);
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm/" + name.str()).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

// Another process of the same user may write anything into the header.
TEST_F(shared_array_test, attach_refuses_a_shape_larger_than_the_segment) {
  auto sut = shared_array<int32_t>::create(name.str(), {16});
  ASSERT_TRUE(sut);
  int fd = ::shm_open(("/" + name.str()).c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  auto* hdr = static_cast<char*>(
      ::mmap(nullptr, 128, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ::close(fd);
  ASSERT_NE(static_cast<void*>(hdr), MAP_FAILED);
  // The header: magic 8, version 4, ndim 4, type 16, elem_size 8, then
  // count at 40 and shape at 48.
  auto forge = [&](uint64_t count, std::vector<uint64_t> shape) {
    auto ndim = static_cast<uint32_t>(shape.size());
    std::memcpy(hdr + 12, &ndim, sizeof(ndim));
    std::memcpy(hdr + 40, &count, sizeof(count));
    std::memcpy(hdr + 48, shape.data(), shape.size() * sizeof(uint64_t));
  };
  struct forged {
    uint64_t count;
    std::vector<uint64_t> shape;
  };
  for (const auto& [count, shape] : {
           // 2^62 elements of 4 bytes: the byte count wraps to 0.
           forged{uint64_t{1} << 62, {uint64_t{1} << 62}},
           // 2^33 x 2^31 elements: the element count wraps to 0, and a
           // caller indexing by shape() would run off the segment.
           forged{0, {uint64_t{1} << 33, uint64_t{1} << 31}},
           // Just one element too many.
           forged{17, {17}},
       }) {
    forge(count, shape);
    auto attached = shared_array<int32_t>::attach(name.str());
    ASSERT_FALSE(attached) << "shape[0] " << shape[0] << ": size() "
                           << attached->size() << " over 64 bytes of data";
    EXPECT_EQ(attached.error(), errc::incompatible)
        << describe(attached.error());
  }
  forge(16, {16});
  EXPECT_TRUE(shared_array<int32_t>::attach(name.str()));
  ::munmap(hdr, 128);
}

TEST_F(shared_array_test, unusable_shapes_are_rejected) {
  EXPECT_EQ(shared_array<int>::create(name.str(), {}).error(),
            errc::invalid_argument);
  EXPECT_EQ(shared_array<int>::create(name.str(), {1, 1, 1, 1, 1, 1, 1, 1, 1})
                .error(),
            errc::invalid_argument);
  EXPECT_EQ(
      shared_array<int>::create(name.str(), {size_t{1} << 40, size_t{1} << 30})
          .error(),
      errc::invalid_argument);
}
