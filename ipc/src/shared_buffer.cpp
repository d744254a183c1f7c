#include "actorbus/ipc/shared_buffer.hpp"

#include "liveness.hpp"
#include "shm.hpp"

#include <atomic>
#include <csignal>
#include <cstring>
#include <dirent.h>
#include <list>
#include <mutex>
#include <random>
#include <sys/mman.h>
#include <unistd.h>

namespace actorbus::ipc {

using namespace internal;

namespace {

constexpr uint64_t buffer_magic = 0x31464642'52524f41; // "AORRBFF1"
constexpr const char* name_prefix = "actorbus-buf-";
constexpr size_t data_offset = 512;

struct buffer_header {
  std::atomic<uint64_t> magic;
  uint64_t generation;
  uint64_t size;
  std::atomic<uint64_t> holders[shared_buffer::max_holders];
};

static_assert(sizeof(buffer_header) <= data_offset);

bool claim_slot(buffer_header* hdr, uint64_t me) {
  // A free slot first (no system call), then one left by a dead process.
  for (auto& slot : hdr->holders) {
    uint64_t cur = 0;
    if (slot.load(std::memory_order_relaxed) == 0 &&
        slot.compare_exchange_strong(cur, me, std::memory_order_seq_cst))
      return true;
  }
  for (auto& slot : hdr->holders) {
    auto cur = slot.load(std::memory_order_acquire);
    if (cur != 0 && !alive(cur) &&
        slot.compare_exchange_strong(cur, me, std::memory_order_seq_cst))
      return true;
  }
  return false;
}

// Cheap liveness for the release path: kill(pid, 0) says "gone" for sure;
// zombies and reused pids count as alive here and are left to sweep().
bool probably_alive(uint64_t w) {
  return ::kill(pid_of(w), 0) == 0 || errno != ESRCH;
}

// Frees the pages of a buffer nobody holds any more, in every process at
// once: the mapping caches of other processes (below) may still map it, and
// would otherwise keep its memory allocated until they unmap it or exit.
// A process that maps it later anyway sees zeros, never a fault.
void free_pages(const shm_mapping& seg) noexcept {
  ::madvise(seg.data(), seg.size, MADV_REMOVE);
}

// Mappings stay cached per process, so handing the same buffer over again
// costs no mmap, munmap or page fault. Bounded; the least recently used
// entry is unmapped first. A cached mapping of a buffer whose last holder
// released it keeps no memory (see free_pages), only address space.
struct cached_mapping {
  std::string name;
  uint64_t generation = 0;
  std::shared_ptr<shm_mapping> seg;
};

class mapping_cache {
public:
  static constexpr size_t capacity = 64;

  std::shared_ptr<shm_mapping> find(const std::string& name, uint64_t gen) {
    std::lock_guard guard{mx_};
    for (auto i = entries_.begin(); i != entries_.end(); ++i)
      if (i->name == name && i->generation == gen) {
        entries_.splice(entries_.begin(), entries_, i);
        return i->seg;
      }
    return nullptr;
  }

  void put(const std::string& name, uint64_t gen,
           std::shared_ptr<shm_mapping> seg) {
    std::lock_guard guard{mx_};
    entries_.push_front(cached_mapping{name, gen, std::move(seg)});
    if (entries_.size() > capacity)
      entries_.pop_back();
  }

  void drop(const std::string& name, uint64_t gen) {
    std::lock_guard guard{mx_};
    entries_.remove_if([&](const cached_mapping& x) {
      return x.name == name && x.generation == gen;
    });
  }

private:
  std::mutex mx_;
  std::list<cached_mapping> entries_;
};

mapping_cache& cache() {
  static auto* instance = new mapping_cache; // outlives static destructors
  return *instance;
}

size_t live_holders(const buffer_header* hdr) {
  size_t n = 0;
  for (auto& slot : hdr->holders) {
    auto w = slot.load(std::memory_order_seq_cst);
    if (w != 0 && alive(w))
      ++n;
  }
  return n;
}

} // namespace

caf::expected<buffer_handle>
buffer_handle::from_bytes(std::span<const std::byte> bytes) {
  buffer_handle result;
  if (bytes.size() != sizeof(result))
    return make_error(errc::corrupt_frame,
                      "a buffer handle has " + std::to_string(sizeof(result)) +
                          " bytes, got " + std::to_string(bytes.size()));
  std::memcpy(&result, bytes.data(), sizeof(result));
  if (strnlen(result.name, sizeof(result.name)) == sizeof(result.name))
    return make_error(errc::corrupt_frame, "buffer name not terminated");
  return result;
}

struct shared_buffer::impl {
  std::string name;
  std::shared_ptr<shm_mapping> seg;
  uint64_t generation = 0;
  size_t size = 0;
  uint64_t me = 0;
  bool released = false;

  buffer_header* hdr() const {
    return static_cast<buffer_header*>(seg->data());
  }
};

shared_buffer::shared_buffer(std::unique_ptr<impl> ptr)
    : impl_(std::move(ptr)) {}

shared_buffer::shared_buffer(shared_buffer&&) noexcept = default;

shared_buffer& shared_buffer::operator=(shared_buffer&& other) noexcept {
  if (this != &other) {
    release();
    impl_ = std::move(other.impl_);
  }
  return *this;
}

shared_buffer::~shared_buffer() {
  release();
}

caf::expected<shared_buffer> shared_buffer::allocate(size_t size) {
  static std::atomic<uint64_t> counter{0};
  if (size > (size_t{1} << 40))
    return make_error(errc::invalid_argument, "shared buffer over 1 TiB");
  auto obj = unnamed_object::create(data_offset + std::max<size_t>(size, 1));
  if (!obj)
    return std::move(obj.error());
  auto ptr = std::make_unique<impl>();
  ptr->me = self_identity();
  // Header and holder slot are set before the buffer gets its name, so that
  // sweep() in another process never finds it without a live holder.
  auto* hdr = new (obj->mapping.data()) buffer_header{};
  hdr->size = size;
  hdr->holders[0].store(ptr->me, std::memory_order_seq_cst);
  hdr->magic.store(buffer_magic, std::memory_order_release);
  std::random_device rd;
  for (int attempt = 0;; ++attempt) {
    auto n = ++counter;
    uint64_t generation = (uint64_t{rd()} << 32) ^ rd() ^ n;
    hdr->generation = generation;
    auto name = std::string{name_prefix} + std::to_string(::getpid()) + "-" +
                std::to_string(n) + "-" + std::to_string(generation & 0xFFFFFF);
    auto err = obj->publish(name);
    if (!err) {
      ptr->name = std::move(name);
      ptr->generation = generation;
      break;
    }
    // A name left by a dead process with our pid is taken: try another.
    if (err != errc::already_exists || attempt == 3)
      return err;
  }
  ptr->seg = std::make_shared<shm_mapping>(std::move(obj->mapping));
  ptr->size = size;
  return shared_buffer{std::move(ptr)};
}

caf::expected<shared_buffer> shared_buffer::map(const buffer_handle& handle) {
  std::string name{handle.name, strnlen(handle.name, sizeof(handle.name))};
  if (name.rfind(name_prefix, 0) != 0)
    return make_error(errc::invalid_argument,
                      "'" + name + "' does not name a shared buffer");
  auto seg = cache().find(name, handle.generation);
  if (seg && ::access(("/dev/shm/" + name).c_str(), F_OK) != 0) {
    // Unlinked since we cached it: its holders are gone.
    cache().drop(name, handle.generation);
    seg = nullptr;
  }
  bool fresh = false;
  if (!seg) {
    auto opened = open_checked(name, data_offset);
    if (!opened)
      return std::move(opened.error());
    seg = std::make_shared<shm_mapping>(std::move(*opened));
    fresh = true;
  }
  auto* hdr = static_cast<buffer_header*>(seg->data());
  // handle.size comes from another process: checked against the real size
  // of the mapping (at least data_offset bytes), without overflow.
  if (hdr->magic.load(std::memory_order_acquire) != buffer_magic ||
      hdr->generation != handle.generation || hdr->size != handle.size ||
      handle.size > seg->size - data_offset)
    return make_error(errc::incompatible,
                      "'" + name + "' is not the buffer the handle names");
  auto ptr = std::make_unique<impl>();
  ptr->me = self_identity();
  if (!claim_slot(hdr, ptr->me))
    return make_error(errc::busy, "all holder slots of '" + name +
                                      "' are taken by live processes");
  if (fresh)
    cache().put(name, handle.generation, seg);
  ptr->name = std::move(name);
  ptr->seg = std::move(seg);
  ptr->generation = handle.generation;
  ptr->size = handle.size;
  return shared_buffer{std::move(ptr)};
}

size_t shared_buffer::sweep() {
  size_t removed = 0;
  auto* dir = ::opendir("/dev/shm");
  if (dir == nullptr)
    return 0;
  while (auto* e = ::readdir(dir)) {
    std::string name{e->d_name};
    if (name.rfind(name_prefix, 0) != 0)
      continue;
    auto seg = open_checked(name, data_offset);
    if (!seg)
      continue;
    // Buffers are published complete (see allocate), so a bad magic is
    // garbage, not a buffer still being set up.
    auto* hdr = static_cast<buffer_header*>(seg->data());
    if ((hdr->magic.load(std::memory_order_acquire) != buffer_magic ||
         live_holders(hdr) == 0) &&
        remove_if_same(name, seg->id)) {
      free_pages(*seg);
      ++removed;
    }
  }
  ::closedir(dir);
  return removed;
}

buffer_handle shared_buffer::handle() const noexcept {
  buffer_handle result;
  if (!impl_ || impl_->released)
    return result;
  std::memcpy(result.name, impl_->name.data(),
              std::min(impl_->name.size(), sizeof(result.name) - 1));
  result.generation = impl_->generation;
  result.size = impl_->size;
  return result;
}

std::span<std::byte> shared_buffer::bytes() const noexcept {
  if (!impl_ || impl_->released)
    return {};
  return {static_cast<std::byte*>(impl_->seg->data()) + data_offset,
          impl_->size};
}

size_t shared_buffer::holders() const {
  if (!impl_ || impl_->released)
    return 0;
  return live_holders(impl_->hdr());
}

void shared_buffer::release() noexcept {
  if (!impl_ || impl_->released)
    return;
  impl_->released = true;
  auto* hdr = impl_->hdr();
  for (auto& slot : hdr->holders) {
    auto expected = impl_->me;
    if (slot.compare_exchange_strong(expected, 0, std::memory_order_seq_cst))
      break;
  }
  // Whoever sees no live holder after clearing its own slot unlinks.
  bool last = true;
  for (auto& slot : hdr->holders) {
    auto w = slot.load(std::memory_order_seq_cst);
    if (w != 0 && probably_alive(w)) {
      last = false;
      break;
    }
  }
  if (last) {
    remove_if_same(impl_->name, impl_->seg->id);
    free_pages(*impl_->seg);
    cache().drop(impl_->name, impl_->generation);
  }
  impl_->seg.reset();
}

} // namespace actorbus::ipc
