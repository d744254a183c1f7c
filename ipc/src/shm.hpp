#pragma once

// Named POSIX shared-memory objects, always mode 0600 (set with fchmod,
// whatever the umask) and checked on open: same owner uid, mode exactly
// 0600, the size the caller expects.
//
// A new object is made without a name (O_TMPFILE in /dev/shm), filled in,
// and only then given its name with linkat(2), which fails if the name is
// taken: whoever opens a name finds a complete object, never one another
// process is still setting up, and a creator that dies before publishing
// leaves nothing behind. Objects are unlinked only through
// `remove_if_same`, which removes the object the caller inspected and never
// one that took its name since.

#include "actorbus/ipc/error.hpp"

#include <caf/expected.hpp>

#include <boost/interprocess/mapped_region.hpp>

#include <cstddef>
#include <functional>
#include <string>
#include <sys/types.h>

namespace actorbus::ipc::internal {

/// Which object a name referred to: device and inode. While a mapping of
/// the object exists the inode cannot be reused, so equal identities mean
/// the same object.
struct shm_identity {
  dev_t dev = 0;
  ino_t ino = 0;

  friend bool operator==(const shm_identity&, const shm_identity&) = default;
};

/// A mapped shared-memory object (read-write).
struct shm_mapping {
  boost::interprocess::mapped_region region;
  size_t size = 0;
  shm_identity id;

  void* data() const noexcept {
    return region.get_address();
  }
};

/// A new object that no name refers to yet. Movable, not copyable; closes
/// its descriptor when destroyed (the object then lives on in `mapping`
/// and, once published, under its name).
class unnamed_object {
public:
  unnamed_object(unnamed_object&& other) noexcept;
  unnamed_object& operator=(unnamed_object&&) = delete;
  ~unnamed_object();

  /// Creates a zeroed object of `size` bytes, mode 0600, and maps it.
  static caf::expected<unnamed_object> create(size_t size);

  /// Gives the object the name `name` in one step, only if the name is free:
  /// `errc::already_exists` if it is taken (the object stays unnamed and
  /// may be published again).
  caf::error publish(const std::string& name);

  shm_mapping mapping;

private:
  explicit unnamed_object(int fd)
      : fd_(fd) {}

  int fd_ = -1;
};

/// Publishes `obj` under `name`. While the name is taken, `judge` looks at
/// what holds it and returns the identity of a stale object to reclaim
/// (removed if the name still refers to it, then publishing is tried
/// again), an empty identity when the name vanished meanwhile, or the error
/// to give up with (e.g. a live owner). At most four attempts.
caf::error
publish_reclaiming(unnamed_object& obj, const std::string& name,
                   const std::function<caf::expected<shm_identity>()>& judge);

/// Checks a user-supplied object name (1-200 chars, no '/', no NUL, not "."
/// or "..").
caf::error check_name(const std::string& name);

/// Opens and maps `name`, refusing objects of another uid, with a mode
/// other than 0600, or smaller than `min_size`. The whole object is mapped.
/// `seen`, if given, receives the identity of what the name referred to
/// whenever it could be examined, also when it is refused for its size.
caf::expected<shm_mapping> open_checked(const std::string& name,
                                        size_t min_size,
                                        shm_identity* seen = nullptr);

/// Unlinks `name` if it still refers to the object `id`; true if it did.
/// Every unlink in this module goes through here: it holds an exclusive
/// flock on the object while it checks and unlinks, so of two processes
/// removing the same object only one removes it, and the other leaves alone
/// the object published under the name in between.
bool remove_if_same(const std::string& name, const shm_identity& id) noexcept;

} // namespace actorbus::ipc::internal
