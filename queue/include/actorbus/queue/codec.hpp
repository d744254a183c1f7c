#pragma once

// The payload encoding of task arguments and results.
//
// A payload is a compact, self-describing binary string: one byte with the
// number of values, then per value a one-byte tag and its bytes (integers and
// doubles as 8 bytes little-endian, strings and vectors with a 4-byte length).
// Redis strings are binary-safe, so payloads travel unescaped. Decoding checks
// every tag against the expected type and every length against the bytes that
// remain *before* allocating, so a corrupt or hostile payload yields an error,
// never a huge allocation or a crash. Supported types: bool, integers,
// float/double, std::string, and std::vector of supported types.
// Free functions, no state: thread-safe.

#include "actorbus/queue/error.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

namespace actorbus::queue {

namespace detail {

template <class T>
struct is_vector : std::false_type {};

template <class T>
struct is_vector<std::vector<T>> : std::true_type {};

inline void put_u64(std::string& out, uint64_t x) {
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<char>((x >> (8 * i)) & 0xFF));
}

inline void put_u32(std::string& out, uint32_t x) {
  for (int i = 0; i < 4; ++i)
    out.push_back(static_cast<char>((x >> (8 * i)) & 0xFF));
}

template <class T>
void put(std::string& out, const T& x) {
  if constexpr (std::is_same_v<T, bool>) {
    out.push_back('b');
    out.push_back(x ? 1 : 0);
  } else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
    out.push_back('i');
    put_u64(out, static_cast<uint64_t>(static_cast<int64_t>(x)));
  } else if constexpr (std::is_integral_v<T>) {
    out.push_back('u');
    put_u64(out, static_cast<uint64_t>(x));
  } else if constexpr (std::is_floating_point_v<T>) {
    out.push_back('d');
    auto d = static_cast<double>(x);
    uint64_t bits;
    std::memcpy(&bits, &d, sizeof bits);
    put_u64(out, bits);
  } else if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    std::string_view s{x};
    out.push_back('s');
    put_u32(out, static_cast<uint32_t>(s.size()));
    out.append(s);
  } else if constexpr (is_vector<T>::value) {
    out.push_back('v');
    put_u32(out, static_cast<uint32_t>(x.size()));
    for (const auto& y : x)
      put(out, y);
  } else {
    static_assert(is_vector<T>::value, "unsupported payload type");
  }
}

class reader {
public:
  explicit reader(std::string_view in)
      : in_(in) {
    // nop
  }

  size_t remaining() const noexcept {
    return in_.size() - pos_;
  }

  bool u64(uint64_t& x) {
    if (remaining() < 8)
      return false;
    x = 0;
    for (int i = 0; i < 8; ++i)
      x |= static_cast<uint64_t>(static_cast<uint8_t>(in_[pos_ + i]))
           << (8 * i);
    pos_ += 8;
    return true;
  }

  bool u32(uint32_t& x) {
    if (remaining() < 4)
      return false;
    x = 0;
    for (int i = 0; i < 4; ++i)
      x |= static_cast<uint32_t>(static_cast<uint8_t>(in_[pos_ + i]))
           << (8 * i);
    pos_ += 4;
    return true;
  }

  bool tag(char expected) {
    if (remaining() < 1 || in_[pos_] != expected)
      return false;
    ++pos_;
    return true;
  }

  bool bytes(size_t n, std::string& out) {
    if (remaining() < n)
      return false;
    out.assign(in_.data() + pos_, n);
    pos_ += n;
    return true;
  }

  bool byte(uint8_t& x) {
    if (remaining() < 1)
      return false;
    x = static_cast<uint8_t>(in_[pos_++]);
    return true;
  }

private:
  std::string_view in_;
  size_t pos_ = 0;
};

template <class T>
bool get(reader& in, T& x) {
  if constexpr (std::is_same_v<T, bool>) {
    uint8_t b = 0;
    if (!in.tag('b') || !in.byte(b) || b > 1)
      return false;
    x = b == 1;
    return true;
  } else if constexpr (std::is_integral_v<T>) {
    uint64_t raw = 0;
    if constexpr (std::is_signed_v<T>) {
      if (!in.tag('i') || !in.u64(raw))
        return false;
      auto v = static_cast<int64_t>(raw);
      if (v < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
          v > static_cast<int64_t>(std::numeric_limits<T>::max()))
        return false;
      x = static_cast<T>(v);
    } else {
      if (!in.tag('u') || !in.u64(raw) ||
          raw > static_cast<uint64_t>(std::numeric_limits<T>::max()))
        return false;
      x = static_cast<T>(raw);
    }
    return true;
  } else if constexpr (std::is_floating_point_v<T>) {
    uint64_t bits = 0;
    if (!in.tag('d') || !in.u64(bits))
      return false;
    double d;
    std::memcpy(&d, &bits, sizeof d);
    x = static_cast<T>(d);
    return true;
  } else if constexpr (std::is_same_v<T, std::string>) {
    uint32_t n = 0;
    return in.tag('s') && in.u32(n) && in.bytes(n, x);
  } else if constexpr (is_vector<T>::value) {
    uint32_t n = 0;
    // Every element takes at least two bytes: reject counts the input
    // cannot hold before reserving anything.
    if (!in.tag('v') || !in.u32(n) || n > in.remaining() / 2)
      return false;
    x.clear();
    x.reserve(n);
    for (uint32_t i = 0; i < n; ++i) {
      typename T::value_type y{};
      if (!get(in, y))
        return false;
      x.push_back(std::move(y));
    }
    return true;
  } else {
    static_assert(is_vector<T>::value, "unsupported payload type");
    return false;
  }
}

} // namespace detail

/// Encodes `xs...` as a payload.
template <class... Ts>
std::string encode(const Ts&... xs) {
  static_assert(sizeof...(Ts) < 256, "at most 255 values per payload");
  std::string out;
  out.push_back(static_cast<char>(sizeof...(Ts)));
  (detail::put(out, xs), ...);
  return out;
}

/// Decodes a payload made by `encode<Ts...>`. Fails with
/// `errc::malformed_payload` when the payload holds other types, another
/// number of values, trailing bytes, or is truncated.
template <class... Ts>
caf::expected<std::tuple<Ts...>> decode(std::string_view payload) {
  detail::reader in{payload};
  uint8_t count = 0;
  if (!in.byte(count) || count != sizeof...(Ts))
    return make_error(errc::malformed_payload, "wrong number of values");
  std::tuple<Ts...> result;
  bool ok = std::apply(
      [&](auto&... xs) { return (detail::get(in, xs) && ...); }, result);
  if (!ok || in.remaining() != 0)
    return make_error(errc::malformed_payload,
                      "type mismatch or truncated value");
  return result;
}

} // namespace actorbus::queue
