#include "actorbus/queue/codec.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

using namespace actorbus::queue;

namespace {

class codec_test : public ::testing::Test {};

TEST_F(codec_test, values_survive_a_round_trip) {
  std::vector<std::string> words{"a", "", "three"};
  auto payload = encode(int64_t{-5}, uint16_t{7}, 2.5, true,
                        std::string{"bin\0ary", 7}, words);
  auto back = decode<int64_t, uint16_t, double, bool, std::string,
                     std::vector<std::string>>(payload);
  ASSERT_TRUE(back);
  EXPECT_EQ(std::get<0>(*back), -5);
  EXPECT_EQ(std::get<1>(*back), 7);
  EXPECT_EQ(std::get<2>(*back), 2.5);
  EXPECT_TRUE(std::get<3>(*back));
  EXPECT_EQ(std::get<4>(*back), std::string("bin\0ary", 7));
  EXPECT_EQ(std::get<5>(*back), words);
}

TEST_F(codec_test, other_types_or_counts_are_rejected) {
  auto payload = encode(std::string{"x"});
  ASSERT_FALSE(decode<int>(payload));
  EXPECT_EQ(decode<int>(payload).error(), errc::malformed_payload);
  EXPECT_FALSE((decode<std::string, int>(payload)));
  EXPECT_FALSE(decode<>(payload));
  EXPECT_FALSE(decode<uint8_t>(encode(int64_t{300})));
  EXPECT_FALSE(decode<int8_t>(encode(int64_t{-300})));
}

TEST_F(codec_test, truncated_payloads_and_trailing_bytes_are_rejected) {
  auto payload = encode(int64_t{1}, std::string{"hello"});
  for (size_t n = 0; n < payload.size(); ++n)
    EXPECT_FALSE((decode<int64_t, std::string>(payload.substr(0, n)))) << n;
  EXPECT_FALSE((decode<int64_t, std::string>(payload + "x")));
}

TEST_F(codec_test,
       a_length_larger_than_the_payload_is_rejected_before_allocating) {
  // One vector claiming 2^32-1 elements, and one string claiming 4 GiB.
  std::string vec{"\x01v\xff\xff\xff\xff", 6};
  EXPECT_FALSE(decode<std::vector<int64_t>>(vec));
  std::string str{"\x01s\xff\xff\xff\xff", 6};
  EXPECT_FALSE(decode<std::string>(str));
}

} // namespace
