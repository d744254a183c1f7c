#include "actorbus/ipc/channel.hpp"
#include "actorbus/ipc/shared_buffer.hpp"

#include "ipc_names.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <cstring>
#include <unistd.h>

using namespace actorbus::ipc;
using namespace std::chrono_literals;
using actorbus::ipc::testing::fork_child;
using actorbus::ipc::testing::unique_shm_name;
using actorbus::ipc::testing::wait_child;

namespace {

bool exists(const buffer_handle& h) {
  return ::access((std::string{"/dev/shm/"} + h.name).c_str(), F_OK) == 0;
}

struct shared_buffer_test : ::testing::Test {
  unique_shm_name name{"buf"};
};

} // namespace

TEST_F(shared_buffer_test, a_handed_over_buffer_shares_its_pages) {
  auto ch = channel::create(name.str());
  ASSERT_TRUE(ch);
  auto sut = shared_buffer::allocate(4 << 20);
  ASSERT_TRUE(sut) << describe(sut.error());
  std::memset(sut->bytes().data(), 'a', sut->bytes().size());
  auto child = fork_child([&] {
    auto peer = channel::open(name.str(), 5s);
    if (!peer)
      return 1;
    auto msg = peer->receive(5s);
    if (!msg)
      return 2;
    auto handle = buffer_handle::from_bytes(*msg);
    if (!handle)
      return 3;
    auto buf = shared_buffer::map(*handle);
    if (!buf || buf->bytes().size() != (4u << 20) ||
        buf->bytes()[12345] != std::byte{'a'})
      return 4;
    buf->bytes()[4 << 19] = std::byte{'z'}; // visible to the sender
    std::vector<std::byte> ack{std::byte{1}};
    return peer->send(ack, 5s) ? 5 : 0;
  });
  ASSERT_FALSE(ch->send(sut->handle().bytes(), 1s));
  auto ack = ch->receive(10s);
  ASSERT_TRUE(ack) << describe(ack.error());
  EXPECT_EQ(sut->bytes()[4 << 19], std::byte{'z'});
  EXPECT_EQ(wait_child(child, 10s), 0);
}

TEST_F(shared_buffer_test, the_last_holder_unlinks_the_buffer) {
  auto sut = shared_buffer::allocate(100);
  ASSERT_TRUE(sut);
  auto handle = sut->handle();
  auto second = shared_buffer::map(handle);
  ASSERT_TRUE(second) << describe(second.error());
  EXPECT_EQ(sut->holders(), 2u);
  sut->release();
  EXPECT_TRUE(exists(handle));
  EXPECT_EQ(second->holders(), 1u);
  second->release();
  EXPECT_FALSE(exists(handle));
  EXPECT_EQ(shared_buffer::map(handle).error(), errc::not_found);
}

TEST_F(shared_buffer_test, a_holder_that_dies_does_not_keep_the_buffer_alive) {
  auto sut = shared_buffer::allocate(1 << 16);
  ASSERT_TRUE(sut);
  auto handle = sut->handle();
  auto child = fork_child([&] {
    auto buf = shared_buffer::map(handle);
    if (!buf)
      return 1;
    ::raise(SIGKILL); // dies while holding
    return 2;
  });
  wait_child(child, 10s);
  EXPECT_EQ(sut->holders(), 1u);
  sut->release();
  EXPECT_FALSE(exists(handle));
}

TEST_F(shared_buffer_test, sweep_removes_a_buffer_whose_holders_all_died) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  auto child = fork_child([&] {
    auto buf = shared_buffer::allocate(4096);
    if (!buf)
      return 1;
    auto h = buf->handle();
    if (::write(fds[1], &h, sizeof(h)) != static_cast<ssize_t>(sizeof(h)))
      return 2;
    ::raise(SIGKILL);
    return 3;
  });
  buffer_handle handle;
  ASSERT_EQ(::read(fds[0], &handle, sizeof(handle)),
            static_cast<ssize_t>(sizeof(handle)));
  ::close(fds[0]);
  ::close(fds[1]);
  wait_child(child, 10s);
  ASSERT_TRUE(exists(handle));
  EXPECT_GE(shared_buffer::sweep(), 1u);
  EXPECT_FALSE(exists(handle));
}

TEST_F(shared_buffer_test, forged_handles_are_rejected) {
  auto sut = shared_buffer::allocate(64);
  ASSERT_TRUE(sut);
  auto wrong_gen = sut->handle();
  wrong_gen.generation ^= 1;
  EXPECT_EQ(shared_buffer::map(wrong_gen).error(), errc::incompatible);
  buffer_handle elsewhere;
  std::strcpy(elsewhere.name, "not-a-buffer");
  EXPECT_EQ(shared_buffer::map(elsewhere).error(), errc::invalid_argument);
  std::vector<std::byte> short_bytes(10);
  EXPECT_EQ(buffer_handle::from_bytes(short_bytes).error(),
            errc::corrupt_frame);
}
