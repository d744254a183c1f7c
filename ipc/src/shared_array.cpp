#include "actorbus/ipc/shared_array.hpp"

#include "liveness.hpp"
#include "shm.hpp"

#include <atomic>
#include <cstring>
#include <limits>

namespace actorbus::ipc::detail {

using namespace internal;

namespace {

constexpr uint64_t array_magic = 0x31595241'52524f41; // "AORRARY1"
constexpr uint32_t array_version = 1;
constexpr size_t max_dims = 8;

struct array_header {
  std::atomic<uint64_t> magic; // written last
  uint32_t version;
  uint32_t ndim;
  char type[16];
  uint64_t elem_size;
  uint64_t count;
  uint64_t shape[max_dims];
  std::atomic<uint64_t> creator;
  uint64_t generation;
};

constexpr size_t data_offset = 128;
static_assert(sizeof(array_header) <= data_offset);

} // namespace

struct array_segment::impl {
  std::string name;
  shm_mapping seg;
  std::vector<size_t> shape;
  size_t count = 0;
  bool creator = false;
  bool closed = false;

  array_header* hdr() const {
    return static_cast<array_header*>(seg.data());
  }
};

array_segment::array_segment(std::unique_ptr<impl> ptr)
    : impl_(std::move(ptr)) {}

array_segment::array_segment(array_segment&&) noexcept = default;

array_segment& array_segment::operator=(array_segment&& other) noexcept {
  if (this != &other) {
    close();
    impl_ = std::move(other.impl_);
  }
  return *this;
}

array_segment::~array_segment() {
  close();
}

caf::expected<array_segment>
array_segment::create(const std::string& name, std::string_view type,
                      size_t elem_size, const std::vector<size_t>& shape) {
  if (shape.empty() || shape.size() > max_dims)
    return make_error(errc::invalid_argument,
                      "a shared array needs 1 to 8 dimensions");
  size_t count = 1;
  for (auto d : shape) {
    if (d != 0 && count > std::numeric_limits<size_t>::max() / d)
      return make_error(errc::invalid_argument, "shape overflows size_t");
    count *= d;
  }
  if (count > (size_t{1} << 40) / elem_size)
    return make_error(errc::invalid_argument, "shared array over 1 TiB");
  auto bytes = data_offset + std::max<size_t>(count * elem_size, 1);
  auto obj = unnamed_object::create(bytes);
  if (!obj)
    return std::move(obj.error());
  // The header is complete before the array gets its name, so whoever
  // attaches finds it whole.
  auto* hdr = new (obj->mapping.data()) array_header{};
  hdr->version = array_version;
  hdr->ndim = static_cast<uint32_t>(shape.size());
  std::memcpy(hdr->type, type.data(), std::min(type.size(), size_t{15}));
  hdr->elem_size = elem_size;
  hdr->count = count;
  for (size_t i = 0; i < shape.size(); ++i)
    hdr->shape[i] = shape[i];
  hdr->creator.store(self_identity(), std::memory_order_relaxed);
  hdr->generation = obj->mapping.id.ino ^ monotonic_ms();
  hdr->magic.store(array_magic, std::memory_order_release);
  // Reclaims the name if its creator is dead or its header is garbage.
  auto err =
      publish_reclaiming(*obj, name, [&]() -> caf::expected<shm_identity> {
        shm_identity seen;
        auto old = open_checked(name, 1, &seen);
        if (!old) {
          if (old.error() == errc::not_found)
            return shm_identity{};
          if (old.error() == errc::permission_denied || seen == shm_identity{})
            return std::move(old.error());
        } else if (old->size >= sizeof(array_header)) {
          auto* h = static_cast<array_header*>(old->data());
          auto w = h->creator.load(std::memory_order_acquire);
          if (h->magic.load(std::memory_order_acquire) == array_magic &&
              alive(w))
            return make_error(errc::already_exists,
                              "'" + name + "' was created by live process " +
                                  std::to_string(pid_of(w)));
        }
        return seen;
      });
  if (err)
    return err;
  auto ptr = std::make_unique<impl>();
  ptr->name = name;
  ptr->seg = std::move(obj->mapping);
  ptr->shape = shape;
  ptr->count = count;
  ptr->creator = true;
  return array_segment{std::move(ptr)};
}

caf::expected<array_segment> array_segment::attach(const std::string& name,
                                                   std::string_view type,
                                                   size_t elem_size) {
  auto seg = open_checked(name, data_offset);
  if (!seg)
    return std::move(seg.error());
  // The header is shared and writable by other processes: read it once,
  // then check that copy against the mapping's real size, without overflow.
  auto* hdr = static_cast<array_header*>(seg->data());
  auto magic = hdr->magic.load(std::memory_order_acquire);
  auto version = hdr->version;
  auto ndim = hdr->ndim;
  if (magic != array_magic || version != array_version || ndim == 0 ||
      ndim > max_dims)
    return make_error(errc::incompatible,
                      "'" + name + "' is not a shared array of this version");
  char type_field[sizeof(hdr->type)];
  std::memcpy(type_field, hdr->type, sizeof(type_field));
  std::string_view stored{type_field, strnlen(type_field, sizeof(type_field))};
  if (stored != type || hdr->elem_size != elem_size)
    return make_error(errc::incompatible, "'" + name + "' holds " +
                                              std::string{stored} + ", not " +
                                              std::string{type});
  std::vector<size_t> shape(hdr->shape, hdr->shape + ndim);
  auto stored_count = hdr->count;
  auto room = (seg->size - data_offset) / elem_size; // size >= data_offset
  size_t count = 1;
  for (auto d : shape) {
    if (d != 0 && count > room / d)
      return make_error(errc::incompatible,
                        "'" + name + "' is smaller than its shape says");
    count *= d;
  }
  if (count != stored_count)
    return make_error(errc::incompatible,
                      "'" + name +
                          "' has a shape that does not match its "
                          "element count");
  auto ptr = std::make_unique<impl>();
  ptr->name = name;
  ptr->seg = std::move(*seg);
  ptr->shape = std::move(shape);
  ptr->count = count;
  return array_segment{std::move(ptr)};
}

void* array_segment::data() const noexcept {
  return impl_ ? static_cast<std::byte*>(impl_->seg.data()) + data_offset
               : nullptr;
}

size_t array_segment::count() const noexcept {
  return impl_ && !impl_->closed ? impl_->count : 0;
}

const std::vector<size_t>& array_segment::shape() const noexcept {
  static const std::vector<size_t> none;
  return impl_ ? impl_->shape : none;
}

bool array_segment::is_creator() const noexcept {
  return impl_ && impl_->creator;
}

const std::string& array_segment::name() const noexcept {
  static const std::string none;
  return impl_ ? impl_->name : none;
}

void array_segment::close() noexcept {
  if (!impl_ || impl_->closed)
    return;
  impl_->closed = true;
  if (impl_->creator)
    remove_if_same(impl_->name, impl_->seg.id); // not a successor's array
  impl_->seg = shm_mapping{};
}

} // namespace actorbus::ipc::detail
