#include "shm.hpp"

#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/permissions.hpp>
#include <boost/interprocess/shared_memory_object.hpp>

#include <cerrno>
#include <cstring>
#include <sys/stat.h>
#include <unistd.h>

namespace bip = boost::interprocess;

namespace actorbus::ipc::internal {

namespace {

int fd_of(const bip::shared_memory_object& obj) {
  return obj.get_mapping_handle().handle;
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

caf::error check_name(const std::string& name) {
  if (name.empty() || name.size() > 200 ||
      name.find_first_of(std::string{"/\0", 2}) != std::string::npos)
    return make_error(errc::invalid_argument,
                      "shared-memory names need 1-200 characters without "
                      "'/': '" +
                          name + "'");
  return caf::none;
}

caf::expected<shm_mapping> create_exclusive(const std::string& name,
                                            size_t size) {
  if (auto err = check_name(name))
    return err;
  try {
    bip::permissions perms{0600};
    bip::shared_memory_object obj{bip::create_only, name.c_str(),
                                  bip::read_write, perms};
    // Whatever the umask did, the object is 0600 from here on.
    if (::fchmod(fd_of(obj), 0600) != 0) {
      auto err = errno;
      bip::shared_memory_object::remove(name.c_str());
      return make_error(errc::system_error,
                        "fchmod '" + name + "': " + std::strerror(err));
    }
    obj.truncate(static_cast<bip::offset_t>(size));
    shm_mapping result;
    result.region = bip::mapped_region{obj, bip::read_write, 0, size};
    result.size = size;
    return result;
  } catch (const bip::interprocess_exception& ex) {
    auto err = from_boost(ex, name);
    if (ex.get_error_code() != bip::already_exists_error)
      bip::shared_memory_object::remove(name.c_str());
    return err;
  }
}

caf::expected<shm_mapping> open_checked(const std::string& name,
                                        size_t min_size) {
  if (auto err = check_name(name))
    return err;
  try {
    bip::shared_memory_object obj{bip::open_only, name.c_str(),
                                  bip::read_write};
    struct stat st {};
    if (::fstat(fd_of(obj), &st) != 0)
      return make_error(errc::system_error,
                        "fstat '" + name + "': " + std::strerror(errno));
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
    return result;
  } catch (const bip::interprocess_exception& ex) {
    return from_boost(ex, name);
  }
}

bool remove(const std::string& name) noexcept {
  return bip::shared_memory_object::remove(name.c_str());
}

} // namespace actorbus::ipc::internal
