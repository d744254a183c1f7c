#pragma once

// A CAF deserializer that reads CAF 0.17's binary format but validates every
// length before anything is allocated: a sequence may not claim more
// elements than bytes remain, a string not more bytes than remain, and
// varbyte lengths end within 5 bytes. Primitive reads go to CAF's own
// binary_deserializer over the same bytes.

#include <caf/binary_deserializer.hpp>
#include <caf/deserializer.hpp>
#include <caf/error.hpp>
#include <caf/sec.hpp>

#include <cstdint>
#include <locale>
#include <sstream>
#include <string>

namespace actorbus::ipc::internal {

class checked_deserializer final : public caf::deserializer {
public:
  checked_deserializer(caf::actor_system& sys, const char* data, size_t size)
      : caf::deserializer(sys)
      , inner_(sys, data, size) {
    // nop
  }

  size_t remaining() const noexcept {
    return inner_.remaining();
  }

  caf::error begin_object(uint16_t& typenr, std::string& name) override {
    name.clear();
    if (auto err = inner_.apply(typenr))
      return err;
    if (typenr == 0)
      return apply_impl(name);
    return caf::none;
  }

  caf::error end_object() override {
    return caf::none;
  }

  caf::error begin_sequence(size_t& num) override {
    uint32_t x = 0;
    uint8_t low7 = 0;
    int n = 0;
    do {
      if (n == 5)
        return caf::make_error(caf::sec::invalid_argument,
                               "varbyte length longer than 5 bytes");
      if (auto err = inner_.apply(low7))
        return err;
      x |= static_cast<uint32_t>(low7 & 0x7F) << (7 * n);
      ++n;
    } while ((low7 & 0x80) != 0);
    // Every element takes at least one byte on the wire.
    if (x > inner_.remaining())
      return caf::make_error(caf::sec::end_of_stream,
                             "sequence claims more elements than bytes remain");
    num = x;
    return caf::none;
  }

  caf::error end_sequence() override {
    return caf::none;
  }

  caf::error apply_raw(size_t num_bytes, void* data) override {
    if (num_bytes > inner_.remaining())
      return caf::sec::end_of_stream;
    return inner_.apply_raw(num_bytes, data);
  }

protected:
  caf::error apply_impl(int8_t& x) override {
    return inner_.apply(x);
  }
  caf::error apply_impl(uint8_t& x) override {
    return inner_.apply(x);
  }
  caf::error apply_impl(int16_t& x) override {
    return inner_.apply(x);
  }
  caf::error apply_impl(uint16_t& x) override {
    return inner_.apply(x);
  }
  caf::error apply_impl(int32_t& x) override {
    return inner_.apply(x);
  }
  caf::error apply_impl(uint32_t& x) override {
    return inner_.apply(x);
  }
  caf::error apply_impl(int64_t& x) override {
    return inner_.apply(x);
  }
  caf::error apply_impl(uint64_t& x) override {
    return inner_.apply(x);
  }
  caf::error apply_impl(float& x) override {
    return inner_.apply(x);
  }
  caf::error apply_impl(double& x) override {
    return inner_.apply(x);
  }

  caf::error apply_impl(long double& x) override {
    // CAF writes long double as a decimal string.
    std::string tmp;
    if (auto err = apply_impl(tmp))
      return err;
    std::istringstream iss{tmp};
    iss.imbue(std::locale::classic());
    if (iss >> x)
      return caf::none;
    return caf::sec::invalid_argument;
  }

  caf::error apply_impl(std::string& x) override {
    size_t n = 0;
    if (auto err = begin_sequence(n))
      return err;
    x.resize(n);
    if (n > 0)
      if (auto err = inner_.apply_raw(n, x.data()))
        return err;
    return end_sequence();
  }

  caf::error apply_impl(std::u16string& x) override {
    return apply_wide<uint16_t>(x);
  }

  caf::error apply_impl(std::u32string& x) override {
    return apply_wide<uint32_t>(x);
  }

private:
  template <class Int, class String>
  caf::error apply_wide(String& x) {
    size_t n = 0;
    if (auto err = begin_sequence(n))
      return err;
    if (n > inner_.remaining() / sizeof(Int))
      return caf::sec::end_of_stream;
    x.clear();
    x.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      Int c = 0;
      if (auto err = inner_.apply(c))
        return err;
      x.push_back(static_cast<typename String::value_type>(c));
    }
    return end_sequence();
  }

  caf::binary_deserializer inner_;
};

} // namespace actorbus::ipc::internal
