#include "actorbus/ipc/frame.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/message.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

using namespace actorbus::ipc;

namespace {

struct point_list {
  std::string label;
  std::vector<int32_t> xs;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, point_list& x) {
  return f(caf::meta::type_name("point_list"), x.label, x.xs);
}

struct frame_config : caf::actor_system_config {
  frame_config() {
    add_message_type<point_list>("point_list");
    add_message_type<std::vector<int32_t>>("std::vector<int32_t>");
    set("scheduler.max-threads", size_t{1});
  }
};

std::vector<std::byte> bytes(std::initializer_list<int> xs) {
  std::vector<std::byte> result;
  for (auto x : xs)
    result.push_back(static_cast<std::byte>(x));
  return result;
}

struct frame_test : ::testing::Test {
  frame_config cfg;
  caf::actor_system sys{cfg};
  std::vector<std::byte> sut;
};

} // namespace

TEST_F(frame_test, a_frame_round_trips_kind_id_and_payload) {
  auto payload = bytes({1, 2, 3, 4, 5});
  encode_frame(frame_kind::request, 42, payload, sut);
  ASSERT_EQ(sut.size(), frame_header_size + 5);
  auto view = decode_frame(sut, 1024);
  ASSERT_TRUE(view) << describe(view.error());
  EXPECT_EQ(view->kind, frame_kind::request);
  EXPECT_EQ(view->id, 42u);
  EXPECT_TRUE(std::equal(view->payload.begin(), view->payload.end(),
                         payload.begin(), payload.end()));
}

TEST_F(frame_test, a_frame_whose_size_disagrees_with_its_bytes_is_rejected) {
  encode_frame(frame_kind::message, 1, bytes({1, 2, 3}), sut);
  auto shorter = std::vector<std::byte>(sut.begin(), sut.end() - 1);
  EXPECT_EQ(decode_frame(shorter, 1024).error(), errc::corrupt_frame);
  auto longer = sut;
  longer.push_back(std::byte{0});
  EXPECT_EQ(decode_frame(longer, 1024).error(), errc::corrupt_frame);
  EXPECT_EQ(decode_frame(bytes({1, 2, 3}), 1024).error(), errc::corrupt_frame);
}

TEST_F(frame_test, a_payload_above_the_maximum_is_rejected) {
  encode_frame(frame_kind::raw, 1, std::vector<std::byte>(100), sut);
  auto res = decode_frame(sut, 99);
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), errc::frame_too_large) << describe(res.error());
}

TEST_F(frame_test, bad_magic_or_unknown_kind_is_rejected) {
  encode_frame(frame_kind::raw, 1, {}, sut);
  auto bad_magic = sut;
  bad_magic[0] = std::byte{0};
  EXPECT_EQ(decode_frame(bad_magic, 10).error(), errc::corrupt_frame);
  auto bad_kind = sut;
  bad_kind[3] = std::byte{99};
  EXPECT_EQ(decode_frame(bad_kind, 10).error(), errc::corrupt_frame);
}

TEST_F(frame_test, a_message_of_registered_types_round_trips) {
  auto msg = caf::make_message(point_list{"pts", {1, -2, 3}},
                               std::string{"hello"}, int32_t{7});
  auto encoded = encode_message(sys, msg);
  ASSERT_TRUE(encoded) << describe(encoded.error());
  auto decoded = decode_message(sys, *encoded);
  ASSERT_TRUE(decoded) << describe(decoded.error());
  ASSERT_TRUE((decoded->match_elements<point_list, std::string, int32_t>()));
  auto& pts = decoded->get_as<point_list>(0);
  EXPECT_EQ(pts.label, "pts");
  EXPECT_EQ(pts.xs, (std::vector<int32_t>{1, -2, 3}));
  EXPECT_EQ(decoded->get_as<std::string>(1), "hello");
  EXPECT_EQ(decoded->get_as<int32_t>(2), 7);
}

TEST_F(frame_test, a_string_claiming_gigabytes_is_rejected_before_allocation) {
  auto msg = caf::make_message(std::string{"abcdefgh"});
  auto encoded = encode_message(sys, msg);
  ASSERT_TRUE(encoded);
  // Find the length byte (8) in front of "abcdefgh" and claim ~4 GiB.
  auto& buf = *encoded;
  auto it = std::search(buf.begin(), buf.end(),
                        reinterpret_cast<const std::byte*>("abcdefgh"),
                        reinterpret_cast<const std::byte*>("abcdefgh") + 8);
  ASSERT_NE(it, buf.end());
  auto pos = static_cast<size_t>(it - buf.begin()) - 1;
  ASSERT_EQ(buf[pos], std::byte{8});
  std::vector<std::byte> forged(buf.begin(), buf.begin() + pos);
  for (int b : {0xFF, 0xFF, 0xFF, 0xFF, 0x0F})
    forged.push_back(static_cast<std::byte>(b));
  forged.insert(forged.end(), it, buf.end());
  auto decoded = decode_message(sys, forged);
  ASSERT_FALSE(decoded);
  EXPECT_EQ(decoded.error(), errc::corrupt_frame) << describe(decoded.error());
}

TEST_F(frame_test, a_vector_claiming_more_elements_than_bytes_is_rejected) {
  auto msg = caf::make_message(std::vector<int32_t>{1, 2});
  auto encoded = encode_message(sys, msg);
  ASSERT_TRUE(encoded);
  auto& buf = *encoded;
  // The element count (2) sits 9 bytes before the end: count + 2 x 4 bytes.
  auto pos = buf.size() - 9;
  ASSERT_EQ(buf[pos], std::byte{2});
  buf[pos] = std::byte{0x7F};
  auto decoded = decode_message(sys, buf);
  ASSERT_FALSE(decoded);
  EXPECT_EQ(decoded.error(), errc::corrupt_frame);
}

TEST_F(frame_test, short_garbage_inputs_never_succeed_or_crash) {
  std::vector<std::vector<std::byte>> inputs{
      {},
      bytes({0, 0}),
      bytes({0, 0, 0xFF, 0xFF, 0xFF, 0xFF}),
      bytes({0, 1, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F}),
      bytes({0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}),
  };
  for (auto& in : inputs)
    EXPECT_FALSE(decode_message(sys, in));
}

TEST_F(frame_test, trailing_bytes_after_a_message_are_rejected) {
  auto encoded = encode_message(sys, caf::make_message(int32_t{1}));
  ASSERT_TRUE(encoded);
  encoded->push_back(std::byte{0});
  auto decoded = decode_message(sys, *encoded);
  ASSERT_FALSE(decoded);
  EXPECT_EQ(decoded.error(), errc::corrupt_frame);
}

TEST_F(frame_test, handles_and_nested_messages_may_not_cross_processes) {
  for (auto* forbidden : {"@actor", "@group", "@message", "@config_value"}) {
    std::string names = std::string{"@<>+"} + forbidden;
    std::vector<std::byte> forged{std::byte{0}, std::byte{0},
                                  static_cast<std::byte>(names.size())};
    for (auto c : names)
      forged.push_back(static_cast<std::byte>(c));
    forged.resize(forged.size() + 8);
    auto decoded = decode_message(sys, forged);
    ASSERT_FALSE(decoded) << forbidden;
    EXPECT_NE(describe(decoded.error()).find("may not cross"),
              std::string::npos)
        << describe(decoded.error());
  }
}
