// Images per second of the image_pool sample's batch runner (one worker
// process per core) on 32 generated 800x600 PNGs, for two operation chains.
// The peer, bench/peers/image_pool_pil.py, runs the same chains with PIL in
// a multiprocessing.Pool of as many processes on the same images (made by
// the same generator, same seed); both write every output file.

#include "batch.hpp"
#include "image_ops.hpp"

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace image_pool;
namespace fs = std::filesystem;

// Keep in sync with bench/peers/image_pool_pil.py.
constexpr size_t count = 32;
constexpr int width = 800;
constexpr int height = 600;
constexpr uint64_t seed = 7;
constexpr int rounds = 3;

// The generated inputs, made once, removed at exit.
struct input_set {
  fs::path dir;
  std::vector<std::string> files;

  input_set() {
    char tmpl[] = "/tmp/image-pool-bench-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr)
      std::abort();
    dir = tmpl;
    std::string error;
    if (!generate_set((dir / "input").string(), count, width, height, seed, 0,
                      error)) {
      std::fprintf(stderr, "bench_image_pool: %s\n", error.c_str());
      std::abort();
    }
    for (size_t i = 0; i < count; ++i) {
      char name[32];
      std::snprintf(name, sizeof(name), "gen-%04zu.png", i);
      files.push_back((dir / "input" / name).string());
    }
  }

  ~input_set() {
    std::error_code ignored;
    fs::remove_all(dir, ignored);
  }

  std::vector<file_job> jobs(const std::string& group, const char* ext) const {
    auto out = dir / group;
    fs::create_directories(out);
    std::vector<file_job> result;
    for (auto& f : files)
      result.push_back(
          {f, (out / fs::path{f}.stem()).string() + std::string{ext}});
    return result;
  }
};

void run_chain(benchmark::State& state, const input_set& inputs,
               batch_runner& pool, const std::string& group,
               const batch_settings& settings) {
  auto ext = settings.encoding.format == file_format::png ? ".png" : ".jpg";
  auto jobs = inputs.jobs(group, ext);
  if (pool.start_error()) {
    state.SkipWithError("the worker processes did not start");
    return;
  }
  (void)pool.run(jobs, settings); // warm up: page cache, worker heaps
  for (auto _ : state) {
    auto report = pool.run(jobs, settings);
    if (report.count(file_state::ok) != jobs.size()) {
      state.SkipWithError("a file failed");
      return;
    }
  }
  auto images = static_cast<double>(state.iterations() * count);
  state.counters["items_per_second"] =
      benchmark::Counter(images, benchmark::Counter::kIsRate);
  state.counters["megapixels_per_second"] = benchmark::Counter(
      images * width * height / 1e6, benchmark::Counter::kIsRate);
}

} // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  // Made here, not as statics, so that the workers stop and the inputs go
  // before main returns.
  input_set inputs;
  batch_runner pool{batch_options{}}; // one worker per core
  // Thumbnail to fit 256x256 (bicubic), sharpen, write PNG.
  batch_settings thumbnail;
  thumbnail.chain.add({op_kind::thumbnail, 256, 0});
  thumbnail.chain.add({op_kind::sharpen, 0, 0});
  // Full-size grayscale, Gaussian blur of radius 2, write JPEG quality 90.
  batch_settings filters;
  filters.chain.add({op_kind::grayscale, 0, 0});
  filters.chain.add({op_kind::blur, 2, 0});
  filters.encoding.format = file_format::jpeg;
  for (auto& [group, settings] :
       {std::pair{"image_pool_thumbnail_png", thumbnail},
        std::pair{"image_pool_filters_jpg", filters}}) {
    benchmark::RegisterBenchmark(
        (std::string{group} + "/actorbus_process_pool").c_str(),
        [&, group = std::string{group},
         settings = settings](benchmark::State& state) {
          run_chain(state, inputs, pool, group, settings);
        })
        ->Iterations(rounds)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
