#pragma once

// Image decoding, the operation chain and encoding for the image_pool
// sample. Everything here runs inside one process and is deterministic: the
// same input bytes and chain give the same pixels and the same encoded
// bytes, which is what `--verify` relies on.
//
// PNG and JPEG are coded with libpng and libjpeg-turbo (as in PIL), other
// formats decoded with stb_image (all Debian packages); the filters are
// written here, in fixed point (stb_image_resize's float resampler was 3x
// slower than PIL's).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace image_pool {

/// Leaves new elements uninitialised, so that `resize` costs no memset:
/// every buffer here is written in full before it is read.
template <class T>
struct uninitialized_allocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = uninitialized_allocator<U>;
  };

  uninitialized_allocator() = default;

  template <class U>
  uninitialized_allocator(const uninitialized_allocator<U>&) noexcept {}

  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    if constexpr (sizeof...(Args) == 0)
      ::new (static_cast<void*>(p)) U;
    else
      ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

/// Pixels or encoded bytes.
using byte_buffer = std::vector<uint8_t, uninitialized_allocator<uint8_t>>;

/// 8-bit pixels, interleaved, rows without padding; 1 to 4 channels.
struct image {
  int width = 0;
  int height = 0;
  int channels = 0;
  byte_buffer pixels;

  size_t pixel_count() const noexcept {
    return static_cast<size_t>(width) * static_cast<size_t>(height);
  }
};

enum class op_kind : uint8_t { resize, thumbnail, grayscale, blur, sharpen };

/// One step of a chain; `a`/`b` are its numbers (resize: width, height;
/// thumbnail: box size; blur: radius).
struct op {
  op_kind kind = op_kind::grayscale;
  uint32_t a = 0;
  uint32_t b = 0;
};

/// The operations to apply, in order. Trivially copyable: it travels to
/// the worker processes inside shared memory.
struct op_chain {
  static constexpr size_t capacity = 16;
  uint32_t count = 0;
  op ops[capacity] = {};

  /// Appends `x`; false when the chain is full.
  bool add(op x) noexcept;
};

/// "resize 320x240 | grayscale | blur 2", or "(none)".
std::string describe(const op_chain& chain);

/// Parses "WxH" with both numbers in [1, 65535].
std::optional<std::pair<uint32_t, uint32_t>> parse_size(std::string_view text);

enum class file_format : uint8_t { png, jpeg };

/// Encoder settings and limits, shared by every image of a run.
struct encode_settings {
  file_format format = file_format::png;
  int jpeg_quality = 90;
};

/// Reads and decodes `path`. Images with more than `max_pixels` pixels are
/// refused from their header, before any pixel memory is allocated.
/// On failure returns nullopt and says why in `error`.
std::optional<image> decode_file(const std::string& path, uint64_t max_pixels,
                                 std::string& error);

/// Applies every operation of `chain` in order.
image apply(const op_chain& chain, image img);

/// Encodes `img`; empty on failure.
byte_buffer encode(const image& img, const encode_settings& settings);

/// 64-bit FNV-style hash over the size, channel count and pixels.
uint64_t checksum(const image& img) noexcept;

/// 64-bit FNV-style hash over bytes.
uint64_t checksum(std::span<const uint8_t> bytes) noexcept;

/// Makes a deterministic RGB test picture (gradients, discs and grain)
/// from `seed`.
image generate(int width, int height, uint64_t seed);

/// Writes `count` test pictures `gen-NNNN.png` of `width`x`height` made
/// from `seed` into `dir` (created if missing), then `broken` corrupt files
/// `broken-NN.png` (even ones: a real PNG cut short; odd ones: no image at
/// all). On failure says why in `error`.
bool generate_set(const std::string& dir, size_t count, int width, int height,
                  uint64_t seed, size_t broken, std::string& error);

/// Writes `bytes` to `path`; on failure says why in `error`.
bool write_file(const std::string& path, std::span<const uint8_t> bytes,
                std::string& error);

/// Reads the whole file; on failure returns nullopt and says why.
std::optional<byte_buffer> read_file(const std::string& path,
                                     std::string& error);

} // namespace image_pool
