#pragma once

// Named POSIX shared-memory objects through Boost.Interprocess, always mode
// 0600 (set with fchmod, whatever the umask) and checked on open: same owner
// uid, mode exactly 0600, the size the caller expects.

#include "actorbus/ipc/error.hpp"

#include <caf/expected.hpp>

#include <boost/interprocess/mapped_region.hpp>

#include <cstddef>
#include <string>

namespace actorbus::ipc::internal {

/// A mapped shared-memory object (read-write).
struct shm_mapping {
  boost::interprocess::mapped_region region;
  size_t size = 0;

  void* data() const noexcept {
    return region.get_address();
  }
};

/// Checks a user-supplied object name (1-200 chars, no '/', no NUL).
caf::error check_name(const std::string& name);

/// Creates `name` exclusively with `size` zeroed bytes and mode 0600.
/// `errc::already_exists` if the name is taken.
caf::expected<shm_mapping> create_exclusive(const std::string& name,
                                            size_t size);

/// Opens and maps `name`, refusing objects of another uid, with a mode
/// other than 0600, or smaller than `min_size`. The whole object is mapped.
caf::expected<shm_mapping> open_checked(const std::string& name,
                                        size_t min_size);

/// Unlinks `name`; true if it existed.
bool remove(const std::string& name) noexcept;

} // namespace actorbus::ipc::internal
