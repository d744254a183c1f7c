#pragma once

// The shared_array sample's worker processes, shared by the sample and
// bench_ipc_shared_array, which measures them: each attaches to the array
// by name and fills its rows with each element's index.

#include "actorbus/ipc/shared_array.hpp"

#include <cstddef>
#include <string>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace actorbus::samples::shared_array {

// Worker `w` of `workers`: attaches by name and writes rows w, w + workers,
// ... of the rows x cols array; not the creator, so closing leaves the
// name. Answers its exit code.
inline int fill(const std::string& name, size_t rows, size_t cols, size_t w,
                size_t workers) {
  auto mine = ipc::shared_array<double>::attach(name);
  if (!mine)
    return 1;
  for (size_t r = w; r < rows; r += workers)
    for (size_t c = 0; c < cols; ++c)
      (*mine)[r * cols + c] = static_cast<double>(r * cols + c);
  mine->close(); // not the creator: the name stays
  return 0;
}

// Forks `workers` processes that fill the array `name` between them, waits
// for them all and answers how many failed.
inline int run_workers(const std::string& name, size_t rows, size_t cols,
                       size_t workers) {
  std::vector<pid_t> children;
  for (size_t w = 0; w < workers; ++w) {
    auto pid = ::fork();
    if (pid == 0)
      ::_exit(fill(name, rows, cols, w, workers));
    children.push_back(pid);
  }
  int failed = 0;
  for (auto pid : children) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  return failed;
}

} // namespace actorbus::samples::shared_array
