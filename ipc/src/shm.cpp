#include "shm.hpp"

#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/shared_memory_object.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace bip = boost::interprocess;

namespace actorbus::ipc::internal {

namespace {

// Where glibc's shm_open keeps its objects; O_TMPFILE and linkat need the
// directory itself.
constexpr const char* shm_dir = "/dev/shm";

std::string path_of(const std::string& name) {
  return std::string{shm_dir} + "/" + name;
}

shm_identity identity_of(const struct stat& st) {
  return {st.st_dev, st.st_ino};
}

int fd_of(const bip::shared_memory_object& obj) {
  return obj.get_mapping_handle().handle;
}

// Lets Boost map a descriptor it did not open.
struct descriptor {
  int fd;

  bip::mapping_handle_t get_mapping_handle() const {
    return bip::ipcdetail::mapping_handle_from_file_handle(fd);
  }
};

caf::error from_errno(const char* what, const std::string& name, int err) {
  return make_error(errc::system_error, std::string{what} + " '" + name +
                                            "': " + std::strerror(err));
}

caf::error from_boost(const bip::interprocess_exception& ex,
                      const std::string& name) {
  switch (ex.get_error_code()) {
  case bip::already_exists_error:
    return make_error(errc::already_exists, "'" + name + "' exists");
  case bip::not_found_error:
    return make_error(errc::not_found, "no object named '" + name + "'");
  case bip::security_error:
    return make_error(errc::permission_denied, "'" + name + "': " + ex.what());
  default:
    return make_error(errc::system_error, "'" + name + "': " + ex.what());
  }
}

} // namespace

unnamed_object::unnamed_object(unnamed_object&& other) noexcept
    : mapping(std::move(other.mapping))
    , fd_(other.fd_) {
  other.fd_ = -1;
}

unnamed_object::~unnamed_object() {
  if (fd_ >= 0)
    ::close(fd_);
}

caf::expected<unnamed_object> unnamed_object::create(size_t size) {
  int fd = ::open(shm_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0)
    return from_errno("O_TMPFILE in", shm_dir, errno);
  unnamed_object result{fd};
  // Whatever the umask did, the object is 0600 from here on.
  struct stat st {};
  if (::fchmod(fd, 0600) != 0 ||
      ::ftruncate(fd, static_cast<off_t>(size)) != 0 || ::fstat(fd, &st) != 0)
    return from_errno("setting up a new object in", shm_dir, errno);
  try {
    result.mapping.region =
        bip::mapped_region{descriptor{fd}, bip::read_write, 0, size};
  } catch (const bip::interprocess_exception& ex) {
    return make_error(errc::system_error,
                      std::string{"mapping a new object: "} + ex.what());
  }
  result.mapping.size = size;
  result.mapping.id = identity_of(st);
  return result;
}

caf::error unnamed_object::publish(const std::string& name) {
  if (auto err = check_name(name))
    return err;
  char self[64];
  std::snprintf(self, sizeof(self), "/proc/self/fd/%d", fd_);
  if (::linkat(AT_FDCWD, self, AT_FDCWD, path_of(name).c_str(),
               AT_SYMLINK_FOLLOW) == 0)
    return caf::none;
  if (errno == EEXIST)
    return make_error(errc::already_exists, "'" + name + "' exists");
  return from_errno("linkat", name, errno);
}

caf::error
publish_reclaiming(unnamed_object& obj, const std::string& name,
                   const std::function<caf::expected<shm_identity>()>& judge) {
  for (int attempt = 0;; ++attempt) {
    auto err = obj.publish(name);
    if (!err || err != errc::already_exists || attempt == 3)
      return err;
    auto stale = judge();
    if (!stale)
      return std::move(stale.error());
    // If another creator reclaimed it first, this removes nothing and the
    // next round looks at what that creator published.
    if (*stale != shm_identity{})
      remove_if_same(name, *stale);
  }
}

caf::error check_name(const std::string& name) {
  if (name.empty() || name.size() > 200 || name == "." || name == ".." ||
      name.find_first_of(std::string{"/\0", 2}) != std::string::npos)
    return make_error(errc::invalid_argument,
                      "shared-memory names need 1-200 characters without "
                      "'/': '" +
                          name + "'");
  return caf::none;
}

caf::expected<shm_mapping> open_checked(const std::string& name,
                                        size_t min_size, shm_identity* seen) {
  if (auto err = check_name(name))
    return err;
  try {
    bip::shared_memory_object obj{bip::open_only, name.c_str(),
                                  bip::read_write};
    struct stat st {};
    if (::fstat(fd_of(obj), &st) != 0)
      return from_errno("fstat", name, errno);
    if (seen != nullptr)
      *seen = identity_of(st);
    if (st.st_uid != ::geteuid())
      return make_error(errc::permission_denied, "'" + name +
                                                     "' belongs to uid " +
                                                     std::to_string(st.st_uid));
    if ((st.st_mode & 07777) != 0600)
      return make_error(errc::permission_denied,
                        "'" + name + "' has mode " +
                            std::to_string(st.st_mode & 07777) +
                            " (decimal), expected 0600");
    auto size = static_cast<size_t>(st.st_size);
    if (size < min_size || size == 0)
      return make_error(errc::incompatible, "'" + name + "' is " +
                                                std::to_string(size) +
                                                " bytes, too small");
    shm_mapping result;
    result.region = bip::mapped_region{obj, bip::read_write, 0, size};
    result.size = size;
    result.id = identity_of(st);
    return result;
  } catch (const bip::interprocess_exception& ex) {
    return from_boost(ex, name);
  }
}

bool remove_if_same(const std::string& name, const shm_identity& id) noexcept {
  if (check_name(name))
    return false;
  auto path = path_of(name);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return false;
  struct stat st {};
  bool same = ::fstat(fd, &st) == 0 && identity_of(st) == id;
  if (same) {
    // Held for one stat and one unlink; released by close, also if this
    // process dies here.
    int rc = 0;
    while ((rc = ::flock(fd, LOCK_EX)) != 0 && errno == EINTR) {
    }
    same = rc == 0 && ::stat(path.c_str(), &st) == 0 && identity_of(st) == id &&
           ::unlink(path.c_str()) == 0;
  }
  ::close(fd);
  return same;
}

} // namespace actorbus::ipc::internal
