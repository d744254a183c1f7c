// Seed exercise 2, "a process pool for image processing": decodes images,
// runs a chain of operations on them and writes the results, across worker
// processes of an `ipc::process_pool`. See batch.hpp for how work travels
// and why a crashing image cannot take the batch down.
//
// Usage: image_pool [options] <files or folders>... -o <outdir>
// Run without arguments for the options.

#include "actorbus/ipc/error.hpp"

#include "batch.hpp"
#include "image_ops.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <pthread.h>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;
using namespace image_pool;

namespace {

constexpr const char* usage =
    R"(usage: image_pool [options] <files or folders>... -o <outdir>

Decodes PNG/JPEG/BMP/GIF/TGA/PSD/PNM images, applies the operations in the
order given, and writes the results, across worker processes.

operations (in command-line order):
  --resize WxH        scale to exactly WxH
  --thumbnail N       shrink to fit in NxN, keeping the aspect
  --grayscale         ITU-R 601 luma (alpha kept)
  --blur R            Gaussian blur, sigma R pixels
  --sharpen           3x3 sharpen (PIL's SHARPEN kernel)
options:
  -o, --output DIR    where results go (created if missing)
  -j, --workers N     worker processes (default: one per core)
  --format png|jpg    output format (default png)
  --quality Q         JPEG quality 1-100 (default 90)
  --max-pixels N      refuse larger images from their header (default 50000000)
  --timeout S         an image taking longer fails (default 120)
  --verify            re-run every file in this process and compare pixels
                      and output bytes with the pool's
  --max-failed N      exit 0 if at most N files failed (default 0)
  --generate N        first write N synthetic test images (into the first
                      folder given, or <outdir>/input); without -o only that
  --size WxH          size of generated images (default 640x480)
  --seed S            seed of generated images (default 1)
  --broken K          also write K corrupt image files among them
  --crash-on NAME     debug: the worker processing file NAME aborts
exit status: 0 all done, 1 files failed or verify mismatch, 2 usage, 130 interrupted
)";

struct cli {
  std::vector<std::string> inputs;
  std::string output;
  size_t workers = 0;
  batch_settings settings;
  std::chrono::milliseconds timeout{std::chrono::minutes(2)};
  bool verify = false;
  size_t max_failed = 0;
  size_t generate = 0;
  std::pair<uint32_t, uint32_t> size{640, 480};
  uint64_t seed = 1;
  size_t broken = 0;
};

template <class T>
bool parse_number(std::string_view s, T& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size();
}

// Parses argv; on error prints why and returns nullopt.
std::optional<cli> parse(int argc, char** argv) {
  cli c;
  auto fail = [](const std::string& why) {
    fmt::print(stderr, "image_pool: {}\n\n{}", why, usage);
    return std::nullopt;
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> std::optional<std::string_view> {
      if (i + 1 >= argc)
        return std::nullopt;
      return std::string_view{argv[++i]};
    };
    auto number = [&](auto& out) {
      auto v = value();
      return v && parse_number(*v, out);
    };
    auto add = [&](op x) { return c.settings.chain.add(x); };
    if (arg == "-o" || arg == "--output") {
      auto v = value();
      if (!v)
        return fail("-o needs a folder");
      c.output = *v;
    } else if (arg == "-j" || arg == "--workers") {
      if (!number(c.workers) || c.workers == 0 || c.workers > 256)
        return fail("--workers needs a number from 1 to 256");
    } else if (arg == "--resize") {
      auto v = value();
      auto wh = v ? parse_size(*v) : std::nullopt;
      if (!wh || !add({op_kind::resize, wh->first, wh->second}))
        return fail("--resize needs WxH (e.g. 320x240)");
    } else if (arg == "--thumbnail") {
      uint32_t n = 0;
      if (!number(n) || n == 0 || n > 65535 || !add({op_kind::thumbnail, n, 0}))
        return fail("--thumbnail needs a size in pixels");
    } else if (arg == "--grayscale") {
      if (!add({op_kind::grayscale, 0, 0}))
        return fail("too many operations");
    } else if (arg == "--blur") {
      uint32_t r = 0;
      if (!number(r) || r == 0 || r > 100 || !add({op_kind::blur, r, 0}))
        return fail("--blur needs a radius from 1 to 100");
    } else if (arg == "--sharpen") {
      if (!add({op_kind::sharpen, 0, 0}))
        return fail("too many operations");
    } else if (arg == "--format") {
      auto v = value();
      if (v == "png")
        c.settings.encoding.format = file_format::png;
      else if (v == "jpg" || v == "jpeg")
        c.settings.encoding.format = file_format::jpeg;
      else
        return fail("--format is png or jpg");
    } else if (arg == "--quality") {
      auto& q = c.settings.encoding.jpeg_quality;
      if (!number(q) || q < 1 || q > 100)
        return fail("--quality needs 1 to 100");
    } else if (arg == "--max-pixels") {
      if (!number(c.settings.max_pixels) || c.settings.max_pixels == 0)
        return fail("--max-pixels needs a positive number");
    } else if (arg == "--timeout") {
      uint32_t s = 0;
      if (!number(s) || s == 0)
        return fail("--timeout needs seconds");
      c.timeout = std::chrono::seconds(s);
    } else if (arg == "--verify") {
      c.verify = true;
    } else if (arg == "--max-failed") {
      if (!number(c.max_failed))
        return fail("--max-failed needs a number");
    } else if (arg == "--generate") {
      if (!number(c.generate) || c.generate > 100000)
        return fail("--generate needs a count up to 100000");
    } else if (arg == "--size") {
      auto v = value();
      auto wh = v ? parse_size(*v) : std::nullopt;
      if (!wh)
        return fail("--size needs WxH");
      c.size = *wh;
    } else if (arg == "--seed") {
      if (!number(c.seed))
        return fail("--seed needs a number");
    } else if (arg == "--broken") {
      if (!number(c.broken) || c.broken > 1000)
        return fail("--broken needs a count up to 1000");
    } else if (arg == "--crash-on") {
      auto v = value();
      auto& dst = c.settings.crash_on;
      if (!v || v->empty() || v->size() >= sizeof(dst))
        return fail("--crash-on needs a file name");
      std::copy(v->begin(), v->end(), dst);
      dst[v->size()] = '\0';
    } else if (arg == "-h" || arg == "--help") {
      fmt::print("{}", usage);
      std::exit(0);
    } else if (arg.starts_with("-")) {
      return fail(fmt::format("unknown option {}", arg));
    } else {
      c.inputs.emplace_back(arg);
    }
  }
  if (c.output.empty() && c.generate == 0)
    return fail("-o <outdir> is missing");
  if (c.inputs.empty() && c.generate == 0)
    return fail("no input files or folders");
  if (c.inputs.empty() && c.output.empty())
    return fail("--generate without -o needs a folder to write to");
  return c;
}

// Writes the synthetic images (and the corrupt ones) into `dir`.
bool generate_inputs(const cli& c, const fs::path& dir) {
  std::string error;
  if (!generate_set(dir.string(), c.generate, static_cast<int>(c.size.first),
                    static_cast<int>(c.size.second), c.seed, c.broken, error)) {
    fmt::print(stderr, "image_pool: {}\n", error);
    return false;
  }
  fmt::print("generated {} images of {}x{} and {} corrupt files in {}\n",
             c.generate, c.size.first, c.size.second, c.broken, dir.string());
  return true;
}

bool is_image_name(const fs::path& p) {
  static const std::set<std::string> known{".png", ".jpg", ".jpeg", ".bmp",
                                           ".gif", ".tga", ".psd",  ".pgm",
                                           ".ppm", ".pnm", ".pic"};
  auto ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char ch) { return std::tolower(ch); });
  return known.count(ext) > 0;
}

// Expands folders (their image files, not recursive) and names the outputs;
// two inputs with the same stem get distinct output names.
std::optional<std::vector<file_job>> collect(const cli& c) {
  std::vector<fs::path> files;
  auto out_dir = fs::weakly_canonical(c.output);
  for (auto& in : c.inputs) {
    std::error_code ec;
    if (fs::is_directory(in, ec)) {
      if (fs::weakly_canonical(in) == out_dir) {
        fmt::print(stderr, "image_pool: the output folder must not be an "
                           "input folder\n");
        return std::nullopt;
      }
      std::vector<fs::path> found;
      for (auto& e : fs::directory_iterator(in, ec))
        if (e.is_regular_file() && is_image_name(e.path()))
          found.push_back(e.path());
      if (ec) {
        fmt::print(stderr, "image_pool: cannot list {}: {}\n", in,
                   ec.message());
        return std::nullopt;
      }
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else {
      // Kept even if missing: it gets its own clear error, as a file the
      // workers cannot read would.
      files.emplace_back(in);
    }
  }
  auto ext = c.settings.encoding.format == file_format::png ? ".png" : ".jpg";
  std::set<std::string> taken;
  std::vector<file_job> jobs;
  for (auto& f : files) {
    auto stem = f.stem().string();
    auto name = stem + ext;
    for (int n = 2; !taken.insert(name).second; ++n)
      name = fmt::format("{}-{}{}", stem, n, ext);
    jobs.push_back({f.string(), (fs::path{c.output} / name).string()});
  }
  return jobs;
}

// Draws a bar on a terminal, or prints a line per quarter otherwise.
class progress_view {
public:
  progress_view()
      : tty_(::isatty(STDERR_FILENO) == 1) {}

  void operator()(const batch_progress& p) {
    if (tty_) {
      constexpr size_t width = 30;
      auto filled = p.total == 0 ? width : width * p.finished / p.total;
      fmt::print(stderr, "\r[{}{}] {}/{} files, {} failed, {:.1f} MP/s ",
                 std::string(filled, '#'), std::string(width - filled, '.'),
                 p.finished, p.total, p.failed,
                 p.seconds > 0 ? p.pixels / p.seconds / 1e6 : 0.0);
      if (p.finished == p.total)
        fmt::print(stderr, "\n");
      return;
    }
    auto quarter = p.total == 0 ? 4 : 4 * p.finished / p.total;
    if (quarter > last_quarter_) {
      last_quarter_ = quarter;
      fmt::print(stderr, "progress: {}/{} files ({}%), {} failed\n", p.finished,
                 p.total, p.total == 0 ? 100 : 100 * p.finished / p.total,
                 p.failed);
    }
  }

private:
  bool tty_;
  size_t last_quarter_ = 0;
};

// Runs every file again in this process and compares with the pool's
// results. Returns true if everything that can be compared is equal.
bool verify(const std::vector<file_job>& jobs, const batch_settings& settings,
            const batch_report& report, double& seconds) {
  auto t0 = std::chrono::steady_clock::now();
  size_t equal = 0;
  size_t outputs = 0;
  size_t reproduced = 0;
  size_t failures = 0;
  std::vector<std::string> mismatches;
  for (size_t i = 0; i < jobs.size(); ++i) {
    auto& got = report.files[i];
    if (got.state == file_state::crashed || got.state == file_state::cancelled)
      continue; // nothing to compare
    auto ref = process_file(jobs[i], settings, false);
    if (got.state == file_state::ok) {
      ++outputs;
      std::string error;
      auto written = read_file(jobs[i].output, error);
      if (ref.state == file_state::ok &&
          ref.pixel_checksum == got.pixel_checksum &&
          ref.file_checksum == got.file_checksum && written &&
          checksum(*written) == ref.file_checksum)
        ++equal;
      else
        mismatches.push_back(jobs[i].input);
    } else {
      ++failures;
      if (ref.state == got.state)
        ++reproduced;
      else
        mismatches.push_back(jobs[i].input);
    }
  }
  seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
                .count();
  fmt::print("verify: {} of {} outputs equal the single-process reference "
             "(pixels and file bytes); {} of {} failures reproduced\n",
             equal, outputs, reproduced, failures);
  for (auto& m : mismatches)
    fmt::print("verify: MISMATCH {}\n", m);
  return mismatches.empty();
}

} // namespace

int main(int argc, char** argv) {
  auto c = parse(argc, argv);
  if (!c)
    return 2;
  if (c->generate > 0) {
    fs::path dir = c->inputs.empty() ? fs::path{c->output} / "input"
                                     : fs::path{c->inputs.front()};
    if (!generate_inputs(*c, dir))
      return 2;
    if (c->output.empty())
      return 0;
    if (c->inputs.empty())
      c->inputs.push_back(dir.string());
  }
  std::error_code ec;
  fs::create_directories(c->output, ec);
  if (ec) {
    fmt::print(stderr, "image_pool: cannot create {}: {}\n", c->output,
               ec.message());
    return 2;
  }
  auto jobs = collect(*c);
  if (!jobs)
    return 2;
  // Ctrl-C and SIGTERM are blocked in this thread before the pool forks,
  // so every thread and worker process inherits the mask: no blocking call
  // in the pool is cut short by them, and a Ctrl-C sent to the whole
  // process group does not kill the workers. One thread takes them with
  // sigtimedwait and cancels the batch; a second one ends the program.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  batch_options opts;
  opts.workers = c->workers;
  opts.timeout = c->timeout;
  // Each image may cost two restarts (see batch.hpp): never give up on
  // the batch because of a few bad files.
  opts.max_restarts = 2 * jobs->size() + 16;
  batch_runner runner{opts};
  if (runner.start_error()) {
    fmt::print(stderr, "image_pool: cannot start workers: {}\n",
               actorbus::ipc::describe(runner.start_error()));
    return 2;
  }
  fmt::print("image_pool: {} files, chain: {}, {} worker processes\n",
             jobs->size(), describe(c->settings.chain), runner.size());
  std::fflush(stdout);
  std::atomic<bool> batch_done{false};
  std::thread signal_taker{[&] {
    int taken = 0;
    timespec tick{0, 100'000'000};
    while (!batch_done.load()) {
      if (sigtimedwait(&stop_signals, nullptr, &tick) < 0)
        continue;
      if (++taken > 1)
        std::_Exit(130);
      fmt::print(stderr, "\ninterrupted: finishing the images in progress "
                         "(again to stop at once)\n");
      batch_runner::request_cancel();
    }
  }};
  progress_view view;
  auto report = runner.run(*jobs, c->settings, std::ref(view));
  batch_done.store(true);
  signal_taker.join();
  for (size_t i = 0; i < jobs->size(); ++i) {
    auto& f = report.files[i];
    if (f.state == file_state::failed || f.state == file_state::crashed)
      fmt::print("{} {}: {}\n",
                 f.state == file_state::failed ? "FAILED" : "CRASHED",
                 (*jobs)[i].input, f.message);
  }
  auto ok = report.count(file_state::ok);
  auto failed =
      report.count(file_state::failed) + report.count(file_state::crashed);
  auto mp = report.input_pixels() / 1e6;
  fmt::print("summary: {} ok, {} failed ({} crashed a worker), {} cancelled "
             "of {} files in {:.3f} s; {:.1f} files/s, {:.2f} MP/s; {} worker "
             "restarts\n",
             ok, failed, report.count(file_state::crashed),
             report.count(file_state::cancelled), jobs->size(), report.seconds,
             ok / report.seconds, mp / report.seconds, report.restarts);
  if (!report.pool_error.empty())
    fmt::print("pool: {}\n", report.pool_error);
  if (report.cancelled) {
    fmt::print("interrupted: files not started were skipped; every output "
               "written is complete\n");
    return 130;
  }
  bool verified = true;
  if (c->verify) {
    double ref_seconds = 0;
    verified = verify(*jobs, c->settings, report, ref_seconds);
    fmt::print("reference run in 1 process: {:.3f} s; pool speed-up {:.2f}x\n",
               ref_seconds, ref_seconds / report.seconds);
  }
  return verified && failed <= c->max_failed ? 0 : 1;
}
