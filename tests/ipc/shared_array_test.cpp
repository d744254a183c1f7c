#include "actorbus/ipc/shared_array.hpp"

#include "ipc_names.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <numeric>
#include <sys/stat.h>
#include <unistd.h>

using namespace actorbus::ipc;
using namespace std::chrono_literals;
using actorbus::ipc::testing::fork_child;
using actorbus::ipc::testing::unique_shm_name;
using actorbus::ipc::testing::wait_child;

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
