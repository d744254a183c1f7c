#pragma once

// The showcase is assembled from parts, one per capability: each
// <capability>_part.cpp registers a function that runs its part on the shared
// runtime and prints what it shows. Parts run in ascending `order`.

#include "actorbus/runtime/runtime.hpp"

#include <vector>

namespace showcase {

struct part {
  int order;
  const char* name;
  /// Returns 0 on success; anything else fails the showcase.
  int (*run)(actorbus::runtime::runtime& rt);
};

inline std::vector<part>& parts() {
  static std::vector<part> all;
  return all;
}

/// Use as `static const bool registered = showcase::add({...});`.
inline bool add(part p) {
  parts().push_back(p);
  return true;
}

} // namespace showcase
