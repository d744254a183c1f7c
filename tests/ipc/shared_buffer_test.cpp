#include "actorbus/ipc/shared_buffer.hpp"

#include "actorbus/ipc/channel.hpp"

#include "ipc_names.hpp"
#include "race_gate.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <limits>
#include <poll.h>
#include <unistd.h>

using namespace actorbus::ipc;
using namespace std::chrono_literals;
using actorbus::ipc::testing::fork_child;
using actorbus::ipc::testing::race_gate;
using actorbus::ipc::testing::read_within;
using actorbus::ipc::testing::unique_shm_name;
using actorbus::ipc::testing::wait_child;
using actorbus::ipc::testing::watchdog;

namespace {

bool exists(const buffer_handle& h) {
  return ::access((std::string{"/dev/shm/"} + h.name).c_str(), F_OK) == 0;
}

// Kilobytes of shared memory that `pid` has resident (RssShmem).
long resident_shmem_kb(pid_t pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/status"};
  std::string key;
  while (in >> key) {
    if (key == "RssShmem:") {
      long kb = -1;
      in >> kb;
      return kb;
    }
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return -1;
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
  // Under ctest -j2 the sweeper of the next test, in another process, may
  // remove the orphan first; either way a sweep removed it.
  if (exists(handle)) {
    EXPECT_GE(shared_buffer::sweep(), 1u);
  }
  EXPECT_FALSE(exists(handle));
}

TEST_F(shared_buffer_test,
       sweep_in_another_process_never_removes_a_buffer_just_allocated) {
  watchdog guard{100s};
  race_gate gate;
  ASSERT_TRUE(gate.ok());
  // The sweeper sweeps until told to stop (step 1), at most 60 s.
  auto sweeper = fork_child([&] {
    gate.arrive(0);
    auto deadline = std::chrono::steady_clock::now() + 60s;
    while (!gate.wait_for(1, 1, 0ms)) {
      if (std::chrono::steady_clock::now() >= deadline)
        return 1;
      (void)shared_buffer::sweep();
    }
    return 0;
  });
  ASSERT_GT(sweeper, 0);
  ASSERT_TRUE(gate.wait_for(0, 1));
  constexpr int count = 20'000;
  int lost = 0;
  for (int i = 0; i < count; ++i) {
    auto buf = shared_buffer::allocate(1 << 16);
    ASSERT_TRUE(buf) << describe(buf.error());
    if (!exists(buf->handle()))
      ++lost;
  }
  gate.arrive(1);
  EXPECT_EQ(wait_child(sweeper, 10s), 0);
  EXPECT_EQ(lost, 0) << lost << " of " << count
                     << " buffers just allocated and still held were swept";
}

TEST_F(shared_buffer_test,
       a_released_buffer_keeps_no_memory_in_a_receiver_that_lives_on) {
  watchdog guard{60s};
  constexpr size_t size = 64 << 20;
  int to_kid[2];
  int to_parent[2];
  ASSERT_EQ(::pipe(to_kid), 0);
  ASSERT_EQ(::pipe(to_parent), 0);
  auto kid = fork_child([&] {
    buffer_handle h;
    if (!read_within(to_kid[0], &h, sizeof(h), 10s))
      return 1;
    {
      auto buf = shared_buffer::map(h);
      if (!buf)
        return 2;
      volatile std::byte sink{};
      for (size_t i = 0; i < buf->bytes().size(); i += 4096)
        sink = buf->bytes()[i]; // every page resident here
      (void)sink;
    } // released; the mapping stays in this process's cache
    char c = 'r';
    if (::write(to_parent[1], &c, 1) != 1)
      return 3;
    // Lives on, as a receiver does, until the parent has looked.
    return read_within(to_kid[0], &c, 1, 10s) ? 0 : 4;
  });
  ASSERT_GT(kid, 0);
  std::string name;
  {
    auto sut = shared_buffer::allocate(size);
    ASSERT_TRUE(sut) << describe(sut.error());
    std::memset(sut->bytes().data(), 1, size);
    auto h = sut->handle();
    name = h.name;
    ASSERT_EQ(::write(to_kid[1], &h, sizeof(h)),
              static_cast<ssize_t>(sizeof(h)));
    char c = 0;
    ASSERT_TRUE(read_within(to_parent[0], &c, 1, 10s));
  } // the last holder releases
  auto kb = resident_shmem_kb(kid);
  EXPECT_FALSE(::access(("/dev/shm/" + name).c_str(), F_OK) == 0);
  char c = 'q';
  EXPECT_EQ(::write(to_kid[1], &c, 1), 1);
  EXPECT_EQ(wait_child(kid, 10s), 0);
  for (int fd : {to_kid[0], to_kid[1], to_parent[0], to_parent[1]})
    ::close(fd);
  ASSERT_GE(kb, 0) << "no RssShmem in /proc/" << kid << "/status";
  EXPECT_LT(kb, 1024) << "the receiver still has " << kb / 1024
                      << " MiB of the released 64 MiB buffer resident";
}

TEST_F(shared_buffer_test, a_size_larger_than_the_segment_is_refused_by_map) {
  auto sut = shared_buffer::allocate(64);
  ASSERT_TRUE(sut);
  auto forged = sut->handle();
  // The header: magic 8, generation 8, size 8. A size near 2^64 wraps the
  // end of the data to below the segment's size.
  forged.size = ~uint64_t{0} - 255;
  int fd = ::shm_open((std::string{"/"} + forged.name).c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, &forged.size, sizeof(forged.size), 16),
            static_cast<ssize_t>(sizeof(forged.size)));
  ::close(fd);
  auto mapped = shared_buffer::map(forged);
  ASSERT_FALSE(mapped) << mapped->bytes().size() << " bytes mapped";
  EXPECT_EQ(mapped.error(), errc::incompatible) << describe(mapped.error());
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
