#include "actorbus/ipc/channel.hpp"

#include "../../ipc/src/segment_layout.hpp"
#include "ipc_names.hpp"
#include "race_gate.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <random>
#include <set>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <thread>
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

std::span<const std::byte> bytes_of(const std::string& s) {
  return std::as_bytes(std::span{s.data(), s.size()});
}

std::string string_of(const std::vector<std::byte>& v) {
  return std::string{reinterpret_cast<const char*>(v.data()), v.size()};
}

// Entries of /dev/shm this test process could have made (tests run in
// parallel, so other processes' entries come and go).
std::set<std::string> dev_shm_entries() {
  std::set<std::string> result;
  auto mine = "-" + std::to_string(::getpid()) + "-";
  if (auto* dir = ::opendir("/dev/shm")) {
    while (auto* e = ::readdir(dir))
      if (std::string{e->d_name}.find(mine) != std::string::npos)
        result.emplace(e->d_name);
    ::closedir(dir);
  }
  return result;
}

mode_t mode_of(const std::string& name) {
  struct stat st {};
  if (::stat(("/dev/shm/" + name).c_str(), &st) != 0)
    return 0;
  return st.st_mode & 07777;
}

bool exists(const std::string& name) {
  return ::access(("/dev/shm/" + name).c_str(), F_OK) == 0;
}

// Whether thread `tid` of this process is blocked in futex(2).
bool sleeps_on_a_futex(pid_t tid) {
  if (tid == 0)
    return false;
  std::ifstream in{"/proc/self/task/" + std::to_string(tid) + "/syscall"};
  long nr = -1;
  return in >> nr && nr == SYS_futex;
}

// Leaves an 8 KiB segment of garbage under `name`, as a crash might.
bool plant_garbage(const std::string& name) {
  int fd = ::shm_open(("/" + name).c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0)
    return false;
  std::string garbage(8192, '\x5a');
  bool ok = ::write(fd, garbage.data(), garbage.size()) ==
            static_cast<ssize_t>(garbage.size());
  ::close(fd);
  return ok;
}

struct channel_test : ::testing::Test {
  unique_shm_name name;

  channel make_owner(channel_options opts = {}) {
    auto ch = channel::create(name.str(), opts);
    if (!ch)
      throw std::runtime_error(describe(ch.error()));
    return std::move(*ch);
  }

  channel make_peer() {
    auto ch = channel::open(name.str());
    if (!ch)
      throw std::runtime_error(describe(ch.error()));
    return std::move(*ch);
  }
};

} // namespace

TEST_F(channel_test, a_frame_sent_by_the_owner_arrives_at_the_peer_and_back) {
  auto sut = make_owner();
  auto peer = make_peer();
  ASSERT_FALSE(sut.send(bytes_of("ping"), 1s));
  auto got = peer.receive(1s);
  ASSERT_TRUE(got) << describe(got.error());
  EXPECT_EQ(string_of(*got), "ping");
  ASSERT_FALSE(peer.send(bytes_of("pong"), 1s));
  got = sut.receive(1s);
  ASSERT_TRUE(got) << describe(got.error());
  EXPECT_EQ(string_of(*got), "pong");
  EXPECT_TRUE(sut.is_owner());
  EXPECT_FALSE(peer.is_owner());
  EXPECT_EQ(sut.generation(), peer.generation());
}

TEST_F(channel_test, frames_of_every_size_arrive_intact_across_the_wrap) {
  channel_options opts;
  opts.capacity = 4096;
  opts.max_frame = 1000;
  auto sut = make_owner(opts);
  auto peer = make_peer();
  std::vector<std::byte> buf;
  for (size_t round = 0; round < 3; ++round) {
    for (size_t n = 0; n <= 1000; n += 7) {
      std::vector<std::byte> frame(n);
      for (size_t i = 0; i < n; ++i)
        frame[i] = static_cast<std::byte>((i * 31 + n + round) & 0xFF);
      ASSERT_FALSE(sut.send(frame, 1s));
      ASSERT_FALSE(peer.receive(buf, 1s));
      ASSERT_EQ(buf, frame) << "size " << n;
    }
  }
}

TEST_F(channel_test, an_oversize_frame_is_rejected_whole_and_nothing_is_sent) {
  channel_options opts;
  opts.max_frame = 100;
  auto sut = make_owner(opts);
  auto peer = make_peer();
  std::vector<std::byte> big(101, std::byte{1});
  auto err = sut.send(big, 1s);
  EXPECT_EQ(err, errc::frame_too_large);
  EXPECT_NE(describe(err).find("101 bytes exceeds the maximum of 100"),
            std::string::npos)
      << describe(err);
  // The peer enforces the same limit on its side.
  EXPECT_EQ(peer.send(big, 1s), errc::frame_too_large);
  // Nothing was truncated into the ring: the next frame is the first.
  std::vector<std::byte> fits(100, std::byte{2});
  ASSERT_FALSE(sut.send(fits, 1s));
  auto got = peer.receive(1s);
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, fits);
  EXPECT_EQ(peer.receive(10ms).error(), errc::timeout);
}

TEST_F(channel_test, a_corrupt_length_in_the_ring_is_rejected_by_the_receiver) {
  channel_options opts;
  opts.max_frame = 64;
  auto sut = make_owner(opts);
  auto peer = make_peer();
  // Forge a frame claiming 1 MiB by writing the ring directly.
  int fd = ::shm_open(("/" + name.str()).c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  struct stat st {};
  ASSERT_EQ(::fstat(fd, &st), 0);
  void* base = ::mmap(nullptr, static_cast<size_t>(st.st_size),
                      PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  ASSERT_NE(base, MAP_FAILED);
  auto* hdr = static_cast<internal::segment_header*>(base);
  auto* ring0 = static_cast<std::byte*>(base) + sizeof(*hdr);
  uint32_t forged = 1u << 20;
  std::memcpy(ring0, &forged, sizeof(forged));
  hdr->rings[0].head.store(64, std::memory_order_release);
  auto got = peer.receive(1s);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error(), errc::corrupt_frame) << describe(got.error());
  ::munmap(base, static_cast<size_t>(st.st_size));
}

// The other process may write anything into the shared header. Here it
// claims a ring of 1 TiB while both rings are 64 KiB, then a frame crosses
// each ring's end: both must wrap at the real end, not run past the mapping.
TEST_F(channel_test,
       a_capacity_rewritten_in_the_shared_header_changes_no_ring_access) {
  // In a child, so that an access past the mapping fails only the child.
  auto child = fork_child([&] {
    channel_options opts;
    opts.capacity = 1 << 16;
    opts.max_frame = (1 << 16) - 12; // one such frame moves a ring to its end
    auto owner = channel::create(name.str(), opts);
    auto peer = channel::open(name.str());
    if (!owner || !peer)
      return 1;
    const size_t cap = 1 << 16;
    std::vector<std::byte> filler(opts.max_frame);
    std::vector<std::byte> got;
    if (owner->send(filler, 1s) || peer->receive(got, 1s) ||
        peer->send(filler, 1s) || owner->receive(got, 1s))
      return 2; // both rings now start their next frame 8 bytes before the end
    int fd = ::shm_open(("/" + name.str()).c_str(), O_RDWR, 0);
    if (fd < 0)
      return 3;
    struct stat st {};
    ::fstat(fd, &st);
    void* base = ::mmap(nullptr, static_cast<size_t>(st.st_size),
                        PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    if (base == MAP_FAILED)
      return 4;
    auto* hdr = static_cast<internal::segment_header*>(base);
    auto* ring1 = static_cast<std::byte*>(base) + sizeof(*hdr) + cap;
    // A frame of 60000 bytes from the peer: 4 bytes of 0xcd at the ring's
    // end, the rest (0xab) wrapped to its start.
    const uint32_t len = 60000;
    std::memcpy(ring1 + cap - 8, &len, sizeof(len));
    std::memset(ring1 + cap - 4, 0xcd, 4);
    std::memset(ring1, 0xab, len - 4);
    hdr->capacity = uint64_t{1} << 40; // the rewrite
    hdr->rings[1].head.store(cap - 8 + internal::frame_footprint(len));
    std::vector<std::byte> expected(len, std::byte{0xab});
    std::memset(expected.data(), 0xcd, 4);
    if (owner->receive(got, 1s) || got != expected)
      return 5;
    // The same frame the other way round.
    if (owner->send(expected, 1s) || peer->receive(got, 1s) || got != expected)
      return 6;
    ::munmap(base, static_cast<size_t>(st.st_size));
    return 0;
  });
  int status = wait_child(child, 10s);
  EXPECT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "5: receive read past the ring, 6: send wrote past it";
}

TEST_F(channel_test, a_header_whose_sizes_overflow_is_refused_by_open) {
  auto sut = make_owner();
  int fd = ::shm_open(("/" + name.str()).c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  auto* hdr = static_cast<internal::segment_header*>(
      ::mmap(nullptr, sizeof(internal::segment_header), PROT_READ | PROT_WRITE,
             MAP_SHARED, fd, 0));
  ASSERT_NE(static_cast<void*>(hdr), MAP_FAILED);
  // A frame limit whose footprint wraps to 8 bytes.
  auto honest_max_frame = hdr->max_frame;
  hdr->max_frame = ~uint64_t{0};
  auto peer = channel::open(name.str());
  ASSERT_FALSE(peer) << "max_frame " << peer->max_frame() << " accepted";
  EXPECT_EQ(peer.error(), errc::incompatible) << describe(peer.error());
  hdr->max_frame = honest_max_frame;
  // Two rings of 2^63 bytes: their size wraps to 0, so a segment of just a
  // header would match.
  ASSERT_EQ(::ftruncate(fd, sizeof(internal::segment_header)), 0);
  hdr->capacity = uint64_t{1} << 63;
  peer = channel::open(name.str());
  ASSERT_FALSE(peer) << "capacity 2^63 accepted";
  EXPECT_EQ(peer.error(), errc::incompatible) << describe(peer.error());
  ::munmap(hdr, sizeof(internal::segment_header));
  ::close(fd);
}

TEST_F(channel_test,
       every_object_is_created_with_mode_0600_whatever_the_umask) {
  auto old = ::umask(0);
  auto sut = channel::create(name.str());
  ::umask(old);
  ASSERT_TRUE(sut) << describe(sut.error());
  EXPECT_EQ(mode_of(name.str()), 0600u);
}

TEST_F(channel_test, a_segment_with_a_mode_other_than_0600_is_refused) {
  auto sut = make_owner();
  ASSERT_EQ(::chmod(("/dev/shm/" + name.str()).c_str(), 0644), 0);
  auto peer = channel::open(name.str());
  ASSERT_FALSE(peer);
  EXPECT_EQ(peer.error(), errc::permission_denied) << describe(peer.error());
}

TEST_F(channel_test, a_planted_segment_with_a_garbage_header_is_reclaimed) {
  int fd =
      ::shm_open(("/" + name.str()).c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  std::string garbage(8192, '\x5a');
  ASSERT_EQ(::write(fd, garbage.data(), garbage.size()),
            static_cast<ssize_t>(garbage.size()));
  ::close(fd);
  // A peer refuses the garbage...
  auto early = channel::open(name.str());
  ASSERT_FALSE(early);
  EXPECT_EQ(early.error(), errc::incompatible) << describe(early.error());
  // ...and a creator reclaims it.
  auto sut = channel::create(name.str());
  ASSERT_TRUE(sut) << describe(sut.error());
  auto peer = make_peer();
  ASSERT_FALSE(sut->send(bytes_of("fresh"), 1s));
  auto got = peer.receive(1s);
  ASSERT_TRUE(got);
  EXPECT_EQ(string_of(*got), "fresh");
}

TEST_F(channel_test, a_segment_left_by_a_killed_owner_is_reclaimed) {
  auto child = fork_child([&] {
    auto ch = channel::create(name.str());
    if (!ch)
      return 1;
    ::raise(SIGKILL); // crash without closing
    return 2;
  });
  int status = wait_child(child, 10s);
  ASSERT_TRUE(WIFSIGNALED(status));
  ASSERT_TRUE(exists(name.str())) << "the crash should leave the segment";
  auto peer = channel::open(name.str());
  ASSERT_FALSE(peer);
  EXPECT_EQ(peer.error(), errc::peer_dead) << describe(peer.error());
  auto sut = channel::create(name.str());
  ASSERT_TRUE(sut) << describe(sut.error());
  EXPECT_EQ(mode_of(name.str()), 0600u);
}

TEST_F(channel_test, a_segment_of_a_live_owner_is_not_taken_over) {
  auto first = make_owner();
  auto sut = channel::create(name.str());
  ASSERT_FALSE(sut);
  EXPECT_EQ(sut.error(), errc::already_exists) << describe(sut.error());
  auto peer = make_peer();
  ASSERT_FALSE(first.send(bytes_of("still mine"), 1s));
  auto got = peer.receive(1s);
  ASSERT_TRUE(got);
  EXPECT_EQ(string_of(*got), "still mine");
}

TEST_F(channel_test,
       of_two_processes_creating_one_name_at_once_exactly_one_owns_it) {
  watchdog guard{100s};
  constexpr int rounds = 300;
  int both = 0;
  for (int round = 0; round < rounds; ++round) {
    unique_shm_name nm{"race"};
    // Every other round starts from a stale segment both must reclaim.
    bool stale = round % 2 == 1;
    if (stale) {
      ASSERT_TRUE(plant_garbage(nm.str()));
    }
    race_gate gate;
    ASSERT_TRUE(gate.ok());
    auto kids = race(gate, 2, [&](int k) {
      auto ch = channel::create(nm.str());
      gate.result(k) = ch ? 1 : ch.error() == errc::already_exists ? 0 : -1;
      // Keep the channel until the other one has tried too.
      gate.arrive(2);
      return gate.wait_for(2, 2) ? 0 : 2;
    });
    ASSERT_EQ(kids.size(), 2u) << "round " << round;
    for (auto kid : kids)
      ASSERT_EQ(wait_child(kid, 10s), 0) << "round " << round;
    auto owners = gate.result(0) + gate.result(1);
    ASSERT_GE(gate.result(0), 0) << "round " << round;
    ASSERT_GE(gate.result(1), 0) << "round " << round;
    ASSERT_GE(owners, 1) << "round " << round << (stale ? " (stale)" : "");
    if (owners == 2)
      ++both;
    EXPECT_FALSE(exists(nm.str())) << "round " << round;
  }
  EXPECT_EQ(both, 0) << "both creates succeeded in " << both << " of " << rounds
                     << " rounds";
}

TEST_F(channel_test, a_second_live_peer_is_refused_until_the_first_closes) {
  auto sut = make_owner();
  auto first = make_peer();
  auto second = channel::open(name.str());
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error(), errc::busy);
  first.close();
  auto third = channel::open(name.str());
  EXPECT_TRUE(third) << describe(third.error());
}

TEST_F(channel_test,
       a_live_peer_is_not_reported_dead_while_this_process_has_no_free_fd) {
  auto sut = make_owner();
  auto peer = make_peer();
  // Lower the descriptor limit to the lowest free descriptor, so that the
  // next open (of /proc/<pid>/stat) fails with EMFILE; restored on exit.
  struct limit_guard {
    rlimit saved{};
    limit_guard() {
      ::getrlimit(RLIMIT_NOFILE, &saved);
    }
    ~limit_guard() {
      ::setrlimit(RLIMIT_NOFILE, &saved);
    }
  } guard;
  int lowest = ::dup(0);
  ASSERT_GE(lowest, 0);
  ::close(lowest);
  rlimit low = guard.saved;
  low.rlim_cur = static_cast<rlim_t>(lowest);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  ASSERT_LT(::dup(0), 0) << "descriptors left";
  bool alive = sut.other_side_alive();
  std::vector<std::byte> buf;
  auto err = sut.receive(buf, 20ms);
  ::setrlimit(RLIMIT_NOFILE, &guard.saved);
  EXPECT_TRUE(alive);
  EXPECT_EQ(err, errc::timeout) << describe(err);
}

TEST_F(channel_test, bad_names_are_rejected_with_a_clear_error) {
  for (auto bad : {std::string{}, std::string{"a/b"}, std::string(300, 'x')}) {
    auto sut = channel::create(bad);
    ASSERT_FALSE(sut);
    EXPECT_EQ(sut.error(), errc::invalid_argument);
  }
  auto missing = channel::open(name.str());
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error(), errc::not_found);
}

TEST_F(channel_test, receive_times_out_when_nothing_arrives) {
  auto sut = make_owner();
  auto peer = make_peer();
  auto start = std::chrono::steady_clock::now();
  auto got = sut.receive(30ms);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error(), errc::timeout);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);
}

TEST_F(channel_test, a_receive_with_the_longest_timeout_waits_for_the_frame) {
  watchdog guard{60s};
  constexpr int rounds = 20;
  int timed_out = 0;
  for (int round = 0; round < rounds; ++round) {
    // A new channel each round: its first wait asks /proc about the peer.
    unique_shm_name nm{"max"};
    auto sut = channel::create(nm.str());
    ASSERT_TRUE(sut) << describe(sut.error());
    auto peer = channel::open(nm.str());
    ASSERT_TRUE(peer) << describe(peer.error());
    std::atomic<pid_t> tid{0};
    std::atomic<bool> done{false};
    caf::error err;
    std::thread receiver{[&] {
      tid = ::gettid();
      std::vector<std::byte> buf;
      err = sut->receive(buf, channel::timeout_type::max());
      done = true;
    }};
    // The frame goes out once the receiver sleeps on the channel's futex,
    // or after it gave up (which it must not).
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!done && !sleeps_on_a_futex(tid) &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    auto sent = peer->send(bytes_of("x"), 1s);
    if (sent)
      sut->close(); // ends the receive
    receiver.join();
    ASSERT_FALSE(sent) << describe(sent);
    if (err == errc::timeout)
      ++timed_out;
    else
      ASSERT_FALSE(err) << describe(err);
  }
  EXPECT_EQ(timed_out, 0) << timed_out << " of " << rounds
                          << " receives with timeout_type::max() timed out "
                             "before the frame came";
}

TEST_F(channel_test, send_times_out_while_the_ring_stays_full) {
  channel_options opts;
  opts.capacity = 4096;
  opts.max_frame = 1024;
  auto sut = make_owner(opts);
  auto peer = make_peer();
  std::vector<std::byte> frame(1000);
  int sent = 0;
  caf::error err;
  while (!(err = sut.send(frame, 20ms)))
    ++sent;
  EXPECT_EQ(err, errc::timeout);
  EXPECT_EQ(sent, 4); // 4 x 1008 bytes fit in 4096
  // Draining one frame makes room for exactly one more.
  ASSERT_TRUE(peer.receive(1s));
  EXPECT_FALSE(sut.send(frame, 1s));
}

TEST_F(channel_test, closing_the_owner_unlinks_the_segment_and_tells_the_peer) {
  auto sut = make_owner();
  auto peer = make_peer();
  ASSERT_FALSE(sut.send(bytes_of("last words"), 1s));
  sut.close();
  EXPECT_FALSE(exists(name.str()));
  // Frames already sent are still delivered, then the close is reported.
  auto got = peer.receive(1s);
  ASSERT_TRUE(got);
  EXPECT_EQ(string_of(*got), "last words");
  got = peer.receive(1s);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error(), errc::peer_closed);
  EXPECT_EQ(peer.send(bytes_of("x"), 1s), errc::peer_closed);
}

TEST_F(channel_test, a_thousand_create_destroy_cycles_leave_dev_shm_as_it_was) {
  auto before = dev_shm_entries();
  for (int i = 0; i < 1000; ++i) {
    auto sut = channel::create(name.str());
    ASSERT_TRUE(sut) << describe(sut.error());
    auto peer = channel::open(name.str());
    ASSERT_TRUE(peer) << describe(peer.error());
    ASSERT_FALSE(sut->send(bytes_of("x"), 1s));
    ASSERT_TRUE(peer->receive(1s));
  }
  EXPECT_EQ(dev_shm_entries(), before);
}

TEST_F(channel_test,
       a_million_messages_cross_processes_in_order_with_none_lost) {
  watchdog guard{60s};
  constexpr uint64_t count = 1'000'000;
  auto sut = make_owner();
  auto child = fork_child([&] {
    auto peer = channel::open(name.str(), 5s);
    if (!peer)
      return 1;
    for (uint64_t i = 0; i < count; ++i) {
      if (peer->send(std::as_bytes(std::span{&i, 1}), 5s))
        return 2;
    }
    // Wait for the owner's acknowledgement before closing.
    return peer->receive(10s) ? 0 : 3;
  });
  std::vector<std::byte> buf;
  uint64_t expected = 0;
  for (; expected < count; ++expected) {
    auto err = sut.receive(buf, 5s);
    ASSERT_FALSE(err) << describe(err) << " after " << expected;
    ASSERT_EQ(buf.size(), sizeof(uint64_t));
    uint64_t got = 0;
    std::memcpy(&got, buf.data(), sizeof(got));
    ASSERT_EQ(got, expected);
  }
  ASSERT_FALSE(sut.send(bytes_of("ack"), 1s));
  EXPECT_EQ(wait_child(child, 10s), 0);
  EXPECT_EQ(expected, count);
}

TEST_F(channel_test,
       a_peer_killed_in_a_tight_loop_is_noticed_within_500ms_300_times) {
  watchdog guard{100s};
  std::minstd_rand rng{42};
  auto before = dev_shm_entries();
  std::chrono::nanoseconds worst{0};
  for (int round = 0; round < 300; ++round) {
    unique_shm_name nm{"kill"};
    bool parent_owns = round % 2 == 0;
    auto echo_loop = [](channel& ch) {
      std::vector<std::byte> buf;
      for (;;) {
        if (ch.receive(buf, 5s) || ch.send(buf, 5s))
          return 0;
      }
    };
    std::optional<channel> sut;
    pid_t child = 0;
    if (parent_owns) {
      auto ch = channel::create(nm.str());
      ASSERT_TRUE(ch) << describe(ch.error());
      sut.emplace(std::move(*ch));
      child = fork_child([&] {
        auto peer = channel::open(nm.str(), 5s);
        return peer ? echo_loop(*peer) : 1;
      });
    } else {
      child = fork_child([&] {
        auto owner = channel::create(nm.str());
        return owner ? echo_loop(*owner) : 1;
      });
      auto ch = channel::open(nm.str(), 5s);
      ASSERT_TRUE(ch) << describe(ch.error());
      sut.emplace(std::move(*ch));
    }
    // A tight loop of round trips; the kill lands somewhere inside it.
    auto trips = std::uniform_int_distribution<int>{1, 200}(rng);
    std::vector<std::byte> buf;
    uint64_t token = 0;
    std::chrono::steady_clock::time_point killed_at;
    caf::error err;
    for (int i = 0;; ++i) {
      if (i == trips) {
        ::kill(child, SIGKILL);
        killed_at = std::chrono::steady_clock::now();
      }
      ++token;
      if ((err = sut->send(std::as_bytes(std::span{&token, 1}), 2s)))
        break;
      if ((err = sut->receive(buf, 2s)))
        break;
      ASSERT_LE(i, trips + 1) << "the echo survived its kill";
    }
    auto latency = std::chrono::steady_clock::now() - killed_at;
    worst = std::max(worst, latency);
    ASSERT_EQ(err, errc::peer_dead)
        << "round " << round << ": " << describe(err);
    ASSERT_LE(latency, 500ms) << "round " << round;
    sut.reset(); // the survivor cleans up, owner or not
    wait_child(child, 5s);
    ASSERT_FALSE(exists(nm.str())) << "round " << round;
  }
  EXPECT_EQ(dev_shm_entries(), before);
  std::printf("worst detection latency: %.1f ms\n",
              std::chrono::duration<double, std::milli>(worst).count());
}
