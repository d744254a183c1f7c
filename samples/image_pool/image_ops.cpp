#include "image_ops.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <sys/stat.h>

namespace image_pool {

namespace {

constexpr uint64_t fnv_offset = 14695981039346656037ull;
constexpr uint64_t fnv_prime = 1099511628211ull;

// FNV-1a over 8-byte words (then the tail bytes), with a final mix: as
// good at telling buffers apart as byte-wise FNV, eight times faster.
uint64_t fnv(uint64_t h, std::span<const uint8_t> bytes) noexcept {
  size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    uint64_t word = 0;
    std::memcpy(&word, bytes.data() + i, 8);
    h = (h ^ word) * fnv_prime;
    h ^= h >> 29;
  }
  for (; i < bytes.size(); ++i)
    h = (h ^ bytes[i]) * fnv_prime;
  return h ^ (h >> 32);
}

uint8_t clamp_byte(int x) noexcept {
  return static_cast<uint8_t>(std::clamp(x, 0, 255));
}

// Resampling weights of one axis: for every output position, the first
// input position it reads and one fixed-point weight per tap.
struct axis_weights {
  static constexpr int precision = 22; // bits; sums fit in int32
  int taps = 0;
  std::vector<int> first;
  std::vector<int> count;
  std::vector<int32_t> weights; // taps per output position
};

// Bicubic (a = -0.5) widened by the reduction factor when shrinking, so
// that every input pixel contributes (antialiased, as PIL's BICUBIC).
axis_weights bicubic_weights(int in, int out) {
  auto cubic = [](double x) {
    constexpr double a = -0.5;
    x = std::fabs(x);
    if (x < 1)
      return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2)
      return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
  };
  double scale = static_cast<double>(in) / out;
  double filter_scale = std::max(scale, 1.0);
  double support = 2.0 * filter_scale;
  axis_weights w;
  w.taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  w.first.resize(static_cast<size_t>(out));
  w.count.resize(static_cast<size_t>(out));
  w.weights.assign(static_cast<size_t>(out) * w.taps, 0);
  std::vector<double> tmp(static_cast<size_t>(w.taps));
  for (int x = 0; x < out; ++x) {
    double center = (x + 0.5) * scale;
    int lo = std::max(static_cast<int>(center - support + 0.5), 0);
    int hi = std::min(static_cast<int>(center + support + 0.5), in);
    int n = std::min(hi - lo, w.taps);
    double sum = 0;
    for (int k = 0; k < n; ++k) {
      tmp[k] = cubic((k + lo - center + 0.5) / filter_scale);
      sum += tmp[k];
    }
    auto* dst = w.weights.data() + static_cast<size_t>(x) * w.taps;
    for (int k = 0; k < n; ++k) {
      auto v = sum != 0 ? tmp[k] / sum : 0.0;
      dst[k] = static_cast<int32_t>(std::lround(v * (1 << w.precision)));
    }
    w.first[x] = lo;
    w.count[x] = n;
  }
  return w;
}

uint8_t fixed_to_byte(int32_t acc) noexcept {
  return clamp_byte(acc >> axis_weights::precision);
}

// Along rows: width changes.
image resample_rows(const image& in, int width) {
  auto w = bicubic_weights(in.width, width);
  image out{width, in.height, in.channels, {}};
  int c = in.channels;
  out.pixels.resize(out.pixel_count() * static_cast<size_t>(c));
  for (int y = 0; y < in.height; ++y) {
    auto* src = in.pixels.data() + static_cast<size_t>(y) * in.width * c;
    auto* dst = out.pixels.data() + static_cast<size_t>(y) * width * c;
    for (int x = 0; x < width; ++x) {
      auto* k = w.weights.data() + static_cast<size_t>(x) * w.taps;
      auto* s = src + static_cast<size_t>(w.first[x]) * c;
      for (int ch = 0; ch < c; ++ch) {
        int32_t acc = 1 << (axis_weights::precision - 1);
        for (int t = 0; t < w.count[x]; ++t)
          acc += s[t * c + ch] * k[t];
        dst[x * c + ch] = fixed_to_byte(acc);
      }
    }
  }
  return out;
}

// Along columns: height changes; whole rows at a time.
image resample_columns(const image& in, int height) {
  auto w = bicubic_weights(in.height, height);
  image out{in.width, height, in.channels, {}};
  size_t stride = static_cast<size_t>(in.width) * in.channels;
  out.pixels.resize(stride * static_cast<size_t>(height));
  std::vector<int32_t> acc(stride);
  for (int y = 0; y < height; ++y) {
    std::fill(acc.begin(), acc.end(), 1 << (axis_weights::precision - 1));
    auto* k = w.weights.data() + static_cast<size_t>(y) * w.taps;
    for (int t = 0; t < w.count[y]; ++t) {
      auto* src =
          in.pixels.data() + static_cast<size_t>(w.first[y] + t) * stride;
      for (size_t i = 0; i < stride; ++i)
        acc[i] += src[i] * k[t];
    }
    auto* dst = out.pixels.data() + static_cast<size_t>(y) * stride;
    for (size_t i = 0; i < stride; ++i)
      dst[i] = fixed_to_byte(acc[i]);
  }
  return out;
}

image resize(const image& in, int width, int height) {
  if (width == in.width && height == in.height)
    return in;
  image out = width != in.width ? resample_rows(in, width) : in;
  if (height != in.height)
    out = resample_columns(out, height);
  return out;
}

// Fits the image into a box of `size` pixels, keeping its aspect; never
// enlarges (like PIL's Image.thumbnail).
image thumbnail(const image& in, int size) {
  if (in.width <= size && in.height <= size)
    return in;
  auto scale = static_cast<double>(size) / std::max(in.width, in.height);
  auto w = std::max(1, static_cast<int>(std::lround(in.width * scale)));
  auto h = std::max(1, static_cast<int>(std::lround(in.height * scale)));
  return resize(in, std::min(w, size), std::min(h, size));
}

// ITU-R 601-2 luma (PIL's convert("L")); an alpha channel is kept.
image grayscale(const image& in) {
  if (in.channels <= 2)
    return in;
  bool alpha = in.channels == 4;
  image out{in.width, in.height, alpha ? 2 : 1, {}};
  out.pixels.resize(in.pixel_count() * static_cast<size_t>(out.channels));
  auto* src = in.pixels.data();
  auto* dst = out.pixels.data();
  for (size_t i = 0, n = in.pixel_count(); i < n; ++i) {
    uint32_t l = src[0] * 19595u + src[1] * 38470u + src[2] * 7471u + 0x8000u;
    *dst++ = static_cast<uint8_t>(l >> 16);
    if (alpha)
      *dst++ = src[3];
    src += in.channels;
  }
  return out;
}

// One box pass along rows: every value becomes the mean of the 2r+1 values
// around it, edges clamped.
void box_rows(const image& in, image& out, int r) {
  int c = in.channels;
  int w = in.width;
  int window = 2 * r + 1;
  for (int y = 0; y < in.height; ++y) {
    auto* src = in.pixels.data() + static_cast<size_t>(y) * w * c;
    auto* dst = out.pixels.data() + static_cast<size_t>(y) * w * c;
    for (int ch = 0; ch < c; ++ch) {
      auto at = [&](int x) { return src[std::clamp(x, 0, w - 1) * c + ch]; };
      int sum = 0;
      for (int x = -r; x <= r; ++x)
        sum += at(x);
      for (int x = 0; x < w; ++x) {
        dst[x * c + ch] = static_cast<uint8_t>((sum + window / 2) / window);
        sum += at(x + r + 1) - at(x - r);
      }
    }
  }
}

// One box pass along columns, a row at a time with running column sums.
void box_columns(const image& in, image& out, int r) {
  size_t stride = static_cast<size_t>(in.width) * in.channels;
  int h = in.height;
  int window = 2 * r + 1;
  auto row = [&](int y) {
    return in.pixels.data() +
           static_cast<size_t>(std::clamp(y, 0, h - 1)) * stride;
  };
  std::vector<int> sums(stride, 0);
  for (int y = -r; y <= r; ++y) {
    auto* src = row(y);
    for (size_t i = 0; i < stride; ++i)
      sums[i] += src[i];
  }
  for (int y = 0; y < h; ++y) {
    auto* dst = out.pixels.data() + static_cast<size_t>(y) * stride;
    for (size_t i = 0; i < stride; ++i)
      dst[i] = static_cast<uint8_t>((sums[i] + window / 2) / window);
    auto* add = row(y + r + 1);
    auto* sub = row(y - r);
    for (size_t i = 0; i < stride; ++i)
      sums[i] += add[i] - sub[i];
  }
}

// Gaussian blur of standard deviation `sigma`, approximated by three box
// blurs (as PIL's GaussianBlur does).
image blur(image img, double sigma) {
  if (sigma <= 0 || img.pixel_count() == 0)
    return img;
  constexpr int passes = 3;
  auto ideal = std::sqrt(12.0 * sigma * sigma / passes + 1);
  int lower = static_cast<int>(std::floor(ideal));
  if (lower % 2 == 0)
    --lower;
  auto m = std::lround((12.0 * sigma * sigma - passes * lower * lower -
                        4.0 * passes * lower - 3.0 * passes) /
                       (-4.0 * lower - 4));
  image tmp = img;
  for (int i = 0; i < passes; ++i) {
    int size = i < m ? lower : lower + 2;
    int r = (size - 1) / 2;
    box_rows(img, tmp, r);
    box_columns(tmp, img, r);
  }
  return img;
}

// PIL's ImageFilter.SHARPEN: 3x3 kernel, -2 around, 32 in the middle,
// divided by 16; edges clamped.
image sharpen(const image& in) {
  image out = in;
  int c = in.channels;
  int w = in.width;
  int h = in.height;
  size_t stride = static_cast<size_t>(w) * c;
  for (int y = 0; y < h; ++y) {
    auto* up =
        in.pixels.data() + static_cast<size_t>(std::max(y - 1, 0)) * stride;
    auto* mid = in.pixels.data() + static_cast<size_t>(y) * stride;
    auto* down =
        in.pixels.data() + static_cast<size_t>(std::min(y + 1, h - 1)) * stride;
    auto* dst = out.pixels.data() + static_cast<size_t>(y) * stride;
    for (int x = 0; x < w; ++x) {
      int l = std::max(x - 1, 0) * c;
      int m = x * c;
      int r = std::min(x + 1, w - 1) * c;
      for (int ch = 0; ch < c; ++ch) {
        int around = up[l + ch] + up[m + ch] + up[r + ch] + mid[l + ch] +
                     mid[r + ch] + down[l + ch] + down[m + ch] + down[r + ch];
        dst[m + ch] = clamp_byte((32 * mid[m + ch] - 2 * around + 8) / 16);
      }
    }
  }
  return out;
}

struct file_closer {
  void operator()(std::FILE* f) const noexcept {
    std::fclose(f);
  }
};

} // namespace

bool op_chain::add(op x) noexcept {
  if (count == capacity)
    return false;
  ops[count++] = x;
  return true;
}

std::string describe(const op_chain& chain) {
  std::string result;
  for (uint32_t i = 0; i < chain.count; ++i) {
    auto& x = chain.ops[i];
    if (!result.empty())
      result += " | ";
    switch (x.kind) {
    case op_kind::resize:
      result += fmt::format("resize {}x{}", x.a, x.b);
      break;
    case op_kind::thumbnail:
      result += fmt::format("thumbnail {}", x.a);
      break;
    case op_kind::grayscale:
      result += "grayscale";
      break;
    case op_kind::blur:
      result += fmt::format("blur {}", x.a);
      break;
    case op_kind::sharpen:
      result += "sharpen";
      break;
    }
  }
  return result.empty() ? "(none)" : result;
}

std::optional<std::pair<uint32_t, uint32_t>> parse_size(std::string_view text) {
  auto x = text.find('x');
  if (x == std::string_view::npos)
    return std::nullopt;
  auto number = [](std::string_view s) -> std::optional<uint32_t> {
    uint32_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || end != s.data() + s.size() || v == 0 || v > 65535)
      return std::nullopt;
    return v;
  };
  auto w = number(text.substr(0, x));
  auto h = number(text.substr(x + 1));
  if (!w || !h)
    return std::nullopt;
  return std::pair{*w, *h};
}

std::optional<byte_buffer> read_file(const std::string& path,
                                     std::string& error) {
  std::unique_ptr<std::FILE, file_closer> f{std::fopen(path.c_str(), "rb")};
  if (!f) {
    error = fmt::format("cannot open: {}", std::strerror(errno));
    return std::nullopt;
  }
  // One read of the whole file (no regrowth) when its size is known.
  struct stat st = {};
  byte_buffer bytes;
  if (::fstat(::fileno(f.get()), &st) == 0 && S_ISREG(st.st_mode))
    bytes.resize(static_cast<size_t>(st.st_size));
  auto n = std::fread(bytes.data(), 1, bytes.size(), f.get());
  bytes.resize(n);
  uint8_t chunk[65536];
  while ((n = std::fread(chunk, 1, sizeof(chunk), f.get())) > 0)
    bytes.insert(bytes.end(), chunk, chunk + n);
  if (std::ferror(f.get())) {
    error = fmt::format("cannot read: {}", std::strerror(errno));
    return std::nullopt;
  }
  return bytes;
}

bool write_file(const std::string& path, std::span<const uint8_t> bytes,
                std::string& error) {
  std::unique_ptr<std::FILE, file_closer> f{std::fopen(path.c_str(), "wb")};
  if (!f ||
      std::fwrite(bytes.data(), 1, bytes.size(), f.get()) != bytes.size()) {
    error = fmt::format("cannot write {}: {}", path, std::strerror(errno));
    return false;
  }
  if (std::fclose(f.release()) != 0) {
    error = fmt::format("cannot write {}: {}", path, std::strerror(errno));
    return false;
  }
  return true;
}

image apply(const op_chain& chain, image img) {
  for (uint32_t i = 0; i < chain.count && i < op_chain::capacity; ++i) {
    auto& x = chain.ops[i];
    switch (x.kind) {
    case op_kind::resize:
      img = resize(img, static_cast<int>(x.a), static_cast<int>(x.b));
      break;
    case op_kind::thumbnail:
      img = thumbnail(img, static_cast<int>(x.a));
      break;
    case op_kind::grayscale:
      img = grayscale(img);
      break;
    case op_kind::blur:
      img = blur(std::move(img), x.a);
      break;
    case op_kind::sharpen:
      img = sharpen(img);
      break;
    }
  }
  return img;
}

uint64_t checksum(const image& img) noexcept {
  uint32_t header[3] = {static_cast<uint32_t>(img.width),
                        static_cast<uint32_t>(img.height),
                        static_cast<uint32_t>(img.channels)};
  auto h = fnv(fnv_offset,
               {reinterpret_cast<const uint8_t*>(header), sizeof(header)});
  return fnv(h, img.pixels);
}

uint64_t checksum(std::span<const uint8_t> bytes) noexcept {
  return fnv(fnv_offset, bytes);
}

image generate(int width, int height, uint64_t seed) {
  // splitmix64: a small, well-mixed generator; the same seed gives the same
  // picture on every machine.
  auto next = [state = seed]() mutable {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  image img{width, height, 3, {}};
  img.pixels.resize(img.pixel_count() * 3);
  uint8_t base[2][3];
  for (auto& corner : base)
    for (auto& v : corner)
      v = static_cast<uint8_t>(next());
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      auto* px = img.pixels.data() + (static_cast<size_t>(y) * width + x) * 3;
      int t = (x + y) * 256 / (width + height);
      for (int ch = 0; ch < 3; ++ch)
        px[ch] = static_cast<uint8_t>(
            (base[0][ch] * (256 - t) + base[1][ch] * t) >> 8);
    }
  }
  for (int disc = 0; disc < 12; ++disc) {
    int cx = static_cast<int>(next() % static_cast<uint64_t>(width));
    int cy = static_cast<int>(next() % static_cast<uint64_t>(height));
    int r = 1 + static_cast<int>(next() % static_cast<uint64_t>(std::max(
                                              1, std::min(width, height) / 4)));
    uint8_t color[3] = {static_cast<uint8_t>(next()),
                        static_cast<uint8_t>(next()),
                        static_cast<uint8_t>(next())};
    for (int y = std::max(0, cy - r); y < std::min(height, cy + r + 1); ++y)
      for (int x = std::max(0, cx - r); x < std::min(width, cx + r + 1); ++x)
        if ((x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r)
          std::memcpy(img.pixels.data() +
                          (static_cast<size_t>(y) * width + x) * 3,
                      color, 3);
  }
  // Grain, so that encoders meet texture as in a photograph.
  uint64_t grain = next();
  for (auto& v : img.pixels) {
    grain ^= grain << 13;
    grain ^= grain >> 7;
    grain ^= grain << 17;
    v = clamp_byte(v + static_cast<int>(grain & 15) - 8);
  }
  return img;
}

bool generate_set(const std::string& dir, size_t count, int width, int height,
                  uint64_t seed, size_t broken, std::string& error) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    error = fmt::format("cannot create {}: {}", dir, ec.message());
    return false;
  }
  byte_buffer first;
  for (size_t i = 0; i < count; ++i) {
    auto bytes = encode(generate(width, height, seed * 1000003 + i), {});
    auto path = fmt::format("{}/gen-{:04}.png", dir, i);
    if (bytes.empty() || !write_file(path, bytes, error))
      return false;
    if (first.empty())
      first = std::move(bytes);
  }
  for (size_t k = 0; k < broken; ++k) {
    byte_buffer bytes;
    if (k % 2 == 0 && first.size() > 64)
      bytes.assign(first.begin(), first.begin() + static_cast<std::ptrdiff_t>(
                                                      first.size() / 3));
    else
      for (size_t i = 0; i < 4096; ++i)
        bytes.push_back(static_cast<uint8_t>((i * 2654435761u + k) >> 13));
    if (!write_file(fmt::format("{}/broken-{:02}.png", dir, k), bytes, error))
      return false;
  }
  return true;
}

} // namespace image_pool
