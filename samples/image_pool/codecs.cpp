// Decoding and encoding. PNG goes through libpng (zlib) and JPEG through
// libjpeg-turbo, the libraries PIL itself uses: stb's own inflate and
// baseline JPEG coder are several times slower on photographs (measured:
// PNG decode 2.8x, JPEG encode 7x). Every other format (BMP, GIF, TGA, PSD,
// PNM, HDR-as-8-bit, CMYK JPEG) is decoded by stb_image.

#include "image_ops.hpp"

#include <fmt/core.h>

#include <png.h>
// Debian ships stb precompiled (libstb.so; its README.Debian says to link
// against it), so the header is included for declarations only: no
// STB_IMAGE_IMPLEMENTATION anywhere.
#include <stb_image.h>

// jpeglib.h needs FILE and size_t declared first.
#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <jpeglib.h>

namespace image_pool {

namespace {

// libjpeg reports errors through a callback that must not return.
struct jpeg_error {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

extern "C" void on_jpeg_error(j_common_ptr info) {
  auto* err = reinterpret_cast<jpeg_error*>(info->err);
  err->mgr.format_message(info, err->message);
  std::longjmp(err->jump, 1);
}

extern "C" void on_jpeg_warning(j_common_ptr, int) {
  // Warnings (e.g. premature end of data) still give an image, as in PIL.
}

// What a JPEG header says; only plain C objects live across setjmp.
struct jpeg_header {
  int width = 0;
  int height = 0;
  int channels = 0;
  bool cmyk = false;
};

// Decodes a JPEG into `out` (allocated with malloc, freed by the caller);
// with `out` null, reads the header only. Returns 0, or 1 with `err` set.
int jpeg_decode(const uint8_t* data, size_t size, uint64_t max_pixels,
                jpeg_header* header, uint8_t** out, jpeg_error* err) {
  jpeg_decompress_struct info;
  info.err = jpeg_std_error(&err->mgr);
  err->mgr.error_exit = on_jpeg_error;
  err->mgr.emit_message = on_jpeg_warning;
  if (setjmp(err->jump)) {
    jpeg_destroy_decompress(&info);
    return 1;
  }
  jpeg_create_decompress(&info);
  jpeg_mem_src(&info, data, static_cast<unsigned long>(size));
  jpeg_read_header(&info, TRUE);
  header->width = static_cast<int>(info.image_width);
  header->height = static_cast<int>(info.image_height);
  header->cmyk = info.num_components == 4;
  bool gray = info.jpeg_color_space == JCS_GRAYSCALE;
  header->channels = gray ? 1 : 3;
  auto pixels = uint64_t{info.image_width} * info.image_height;
  if (out == nullptr || header->cmyk || pixels > max_pixels) {
    jpeg_destroy_decompress(&info);
    return 0;
  }
  info.out_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&info);
  auto stride = static_cast<size_t>(info.output_width) * header->channels;
  *out = static_cast<uint8_t*>(std::malloc(stride * info.output_height));
  if (*out == nullptr) {
    std::snprintf(err->message, sizeof(err->message), "out of memory");
    jpeg_destroy_decompress(&info);
    return 1;
  }
  while (info.output_scanline < info.output_height) {
    JSAMPROW row = *out + stride * info.output_scanline;
    jpeg_read_scanlines(&info, &row, 1);
  }
  jpeg_finish_decompress(&info);
  jpeg_destroy_decompress(&info);
  return 0;
}

int jpeg_encode(const image* img, int quality, uint8_t** out,
                unsigned long* out_size, jpeg_error* err) {
  jpeg_compress_struct info;
  info.err = jpeg_std_error(&err->mgr);
  err->mgr.error_exit = on_jpeg_error;
  if (setjmp(err->jump)) {
    jpeg_destroy_compress(&info);
    return 1;
  }
  jpeg_create_compress(&info);
  jpeg_mem_dest(&info, out, out_size);
  info.image_width = static_cast<JDIMENSION>(img->width);
  info.image_height = static_cast<JDIMENSION>(img->height);
  info.input_components = img->channels;
  info.in_color_space = img->channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&info);
  jpeg_set_quality(&info, quality, TRUE);
  jpeg_start_compress(&info, TRUE);
  auto stride = static_cast<size_t>(img->width) * img->channels;
  while (info.next_scanline < info.image_height) {
    auto* row =
        const_cast<JSAMPROW>(img->pixels.data() + stride * info.next_scanline);
    jpeg_write_scanlines(&info, &row, 1);
  }
  jpeg_finish_compress(&info);
  jpeg_destroy_compress(&info);
  return 0;
}

// JPEG has no alpha: drop it (gray+alpha -> gray, RGBA -> RGB).
image without_alpha(const image& img) {
  if (img.channels == 1 || img.channels == 3)
    return img;
  image out{img.width, img.height, img.channels - 1, {}};
  out.pixels.resize(img.pixel_count() * static_cast<size_t>(out.channels));
  auto* src = img.pixels.data();
  auto* dst = out.pixels.data();
  for (size_t i = 0, n = img.pixel_count(); i < n; ++i) {
    std::memcpy(dst, src, static_cast<size_t>(out.channels));
    dst += out.channels;
    src += img.channels;
  }
  return out;
}

bool too_large(int w, int h, uint64_t max_pixels, std::string& error) {
  auto pixels = static_cast<uint64_t>(w) * static_cast<uint64_t>(h);
  if (pixels <= max_pixels)
    return false;
  error = fmt::format("{}x{} is {} pixels, over the limit of {}", w, h, pixels,
                      max_pixels);
  return true;
}

std::optional<image> decode_png(const byte_buffer& bytes, uint64_t max_pixels,
                                std::string& error) {
  png_image png;
  std::memset(&png, 0, sizeof(png));
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&png, bytes.data(), bytes.size())) {
    error = fmt::format("not a readable PNG ({})", png.message);
    return std::nullopt;
  }
  if (too_large(static_cast<int>(png.width), static_cast<int>(png.height),
                max_pixels, error)) {
    png_image_free(&png);
    return std::nullopt;
  }
  // 8 bits per channel; palettes expanded; gray and alpha kept.
  png.format &= PNG_FORMAT_FLAG_ALPHA | PNG_FORMAT_FLAG_COLOR;
  image img{static_cast<int>(png.width),
            static_cast<int>(png.height),
            static_cast<int>(PNG_IMAGE_PIXEL_CHANNELS(png.format)),
            {}};
  img.pixels.resize(PNG_IMAGE_SIZE(png));
  if (!png_image_finish_read(&png, nullptr, img.pixels.data(), 0, nullptr)) {
    error = fmt::format("corrupt PNG ({})", png.message);
    png_image_free(&png);
    return std::nullopt;
  }
  return img;
}

std::optional<image> decode_jpeg(const byte_buffer& bytes, uint64_t max_pixels,
                                 std::string& error) {
  jpeg_error err{};
  jpeg_header header;
  uint8_t* data = nullptr;
  if (jpeg_decode(bytes.data(), bytes.size(), max_pixels, &header, &data,
                  &err) != 0) {
    std::free(data);
    error = fmt::format("corrupt JPEG ({})", err.message);
    return std::nullopt;
  }
  if (too_large(header.width, header.height, max_pixels, error))
    return std::nullopt;
  if (data == nullptr) // CMYK: stb_image converts it
    return std::nullopt;
  image img{header.width, header.height, header.channels, {}};
  img.pixels.assign(data, data + img.pixel_count() *
                                     static_cast<size_t>(img.channels));
  std::free(data);
  return img;
}

std::optional<image> decode_stb(const byte_buffer& bytes, uint64_t max_pixels,
                                std::string& error) {
  if (bytes.size() > static_cast<size_t>(INT32_MAX)) {
    error = "file too large for the decoder";
    return std::nullopt;
  }
  auto len = static_cast<int>(bytes.size());
  int w = 0;
  int h = 0;
  int c = 0;
  if (!stbi_info_from_memory(bytes.data(), len, &w, &h, &c)) {
    error = fmt::format("not a readable image ({})", stbi_failure_reason());
    return std::nullopt;
  }
  if (too_large(w, h, max_pixels, error))
    return std::nullopt;
  auto* data = stbi_load_from_memory(bytes.data(), len, &w, &h, &c, 0);
  if (!data) {
    error = fmt::format("corrupt image ({})", stbi_failure_reason());
    return std::nullopt;
  }
  image img{w, h, c, {}};
  img.pixels.assign(data, data + img.pixel_count() * static_cast<size_t>(c));
  stbi_image_free(data);
  return img;
}

bool starts_with(const byte_buffer& bytes,
                 std::initializer_list<uint8_t> magic) {
  return bytes.size() >= magic.size() &&
         std::equal(magic.begin(), magic.end(), bytes.begin());
}

} // namespace

std::optional<image> decode_file(const std::string& path, uint64_t max_pixels,
                                 std::string& error) {
  auto bytes = read_file(path, error);
  if (!bytes)
    return std::nullopt;
  if (starts_with(*bytes, {0x89, 'P', 'N', 'G'}))
    return decode_png(*bytes, max_pixels, error);
  if (starts_with(*bytes, {0xff, 0xd8, 0xff})) {
    auto img = decode_jpeg(*bytes, max_pixels, error);
    if (img || !error.empty())
      return img;
  }
  return decode_stb(*bytes, max_pixels, error);
}

byte_buffer encode(const image& img, const encode_settings& settings) {
  byte_buffer out;
  if (img.pixel_count() == 0)
    return out;
  if (settings.format == file_format::jpeg) {
    auto opaque = without_alpha(img);
    jpeg_error err{};
    uint8_t* data = nullptr;
    unsigned long size = 0;
    if (jpeg_encode(&opaque, settings.jpeg_quality, &data, &size, &err) == 0)
      out.assign(data, data + size);
    std::free(data);
    return out;
  }
  png_image png;
  std::memset(&png, 0, sizeof(png));
  png.version = PNG_IMAGE_VERSION;
  png.width = static_cast<png_uint_32>(img.width);
  png.height = static_cast<png_uint_32>(img.height);
  png.format = (img.channels >= 3 ? PNG_FORMAT_FLAG_COLOR : 0u) |
               (img.channels % 2 == 0 ? PNG_FORMAT_FLAG_ALPHA : 0u);
  png_alloc_size_t size = PNG_IMAGE_PNG_SIZE_MAX(png);
  out.resize(size);
  if (!png_image_write_to_memory(&png, out.data(), &size, 0, img.pixels.data(),
                                 0, nullptr) ||
      size > out.size()) {
    out.clear();
    return out;
  }
  out.resize(size);
  return out;
}

} // namespace image_pool
