// Seed exercise 2, "a process pool for image processing": decodes images,
// runs a chain of operations on them and writes the results, across worker
// processes of an `ipc::process_pool`. See batch.hpp for how work travels
// and why a crashing image cannot take the batch down.
//
// Usage: image_pool [options] <files or folders>... -o <outdir>
// `image_pool --help` lists the options.

#include "actorbus/ipc/error.hpp"

#include "batch.hpp"
#include "command_line.hpp"
#include "image_ops.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
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

// A WxH size for CLI11: checks the text, stores the pair.
CLI::Option* add_size_option(CLI::App& app, const std::string& name,
                             std::pair<uint32_t, uint32_t>& out,
                             const std::string& what) {
  return app
      .add_option_function<std::string>(
          name,
          [&out, name](const std::string& text) {
            auto wh = parse_size(text);
            if (!wh)
              throw CLI::ValidationError(name, "needs WxH (e.g. 320x240), "
                                               "not '" +
                                                   text + "'");
            out = *wh;
          },
          what)
      ->type_name("WxH");
}

// Parses argv; returns the code main returns now (after --help or an
// error, which is printed), or nothing to go on.
std::optional<int> parse(int argc, char** argv, cli& c) {
  CLI::App app{"Decodes PNG/JPEG/BMP/GIF/TGA/PSD/PNM images, applies the "
               "operations in the\norder given, and writes the results, "
               "across worker processes.",
               "image_pool"};
  app.footer("exit status: 0 all done, 1 files failed or verify mismatch, 2 "
             "usage, 130 interrupted");
  app.add_option("inputs", c.inputs, "image files or folders");
  app.add_option("-o,--output", c.output,
                 "where results go (created if missing)")
      ->type_name("DIR");
  app.add_option("-j,--workers", c.workers,
                 "worker processes (default: one per core)")
      ->check(CLI::Range(1, 256));
  // The operations, applied in command-line order (read from parse_order()
  // below); each may be given more than once.
  const std::string ops = "operations (in command-line order)";
  std::vector<std::string> resize;
  std::vector<uint32_t> thumbnail;
  std::vector<uint32_t> blur;
  auto resize_opt = app.add_option("--resize", resize, "scale to exactly WxH")
                        ->type_name("WxH")
                        ->allow_extra_args(false)
                        ->check(
                            [](const std::string& text) {
                              return parse_size(text) ? std::string{}
                                                      : "needs WxH (e.g. "
                                                        "320x240)";
                            },
                            "")
                        ->group(ops);
  auto thumbnail_opt =
      app.add_option("--thumbnail", thumbnail,
                     "shrink to fit in NxN, keeping the aspect")
          ->type_name("N")
          ->allow_extra_args(false)
          ->check(CLI::Range(1, 65535))
          ->group(ops);
  auto grayscale_opt = app.add_flag("--grayscale")
                           ->description("ITU-R 601 luma (alpha kept)")
                           ->group(ops);
  auto blur_opt =
      app.add_option("--blur", blur, "Gaussian blur, sigma R pixels")
          ->type_name("R")
          ->allow_extra_args(false)
          ->check(CLI::Range(1, 100))
          ->group(ops);
  auto sharpen_opt = app.add_flag("--sharpen")
                         ->description("3x3 sharpen (PIL's SHARPEN kernel)")
                         ->group(ops);
  std::string format = "png";
  app.add_option("--format", format, "output format")
      ->capture_default_str()
      ->check(CLI::IsMember({"png", "jpg", "jpeg"}));
  app.add_option("--quality", c.settings.encoding.jpeg_quality, "JPEG quality")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  app.add_option("--max-pixels", c.settings.max_pixels,
                 "refuse larger images from their header")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  uint32_t timeout_s = 120;
  app.add_option("--timeout", timeout_s, "seconds after which an image fails")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_flag("--verify", c.verify,
               "re-run every file in this process and compare pixels and "
               "output bytes with the pool's");
  app.add_option("--max-failed", c.max_failed,
                 "exit 0 if at most N files failed")
      ->capture_default_str();
  const std::string gen = "test images";
  app.add_option("--generate", c.generate,
                 "first write N synthetic test images (into the first folder "
                 "given, or <outdir>/input); without -o only that")
      ->check(CLI::Range(0, 100'000))
      ->group(gen);
  add_size_option(app, "--size", c.size,
                  "size of generated images (default 640x480)")
      ->group(gen);
  app.add_option("--seed", c.seed, "seed of generated images")
      ->capture_default_str()
      ->group(gen);
  app.add_option("--broken", c.broken,
                 "also write K corrupt image files among them")
      ->check(CLI::Range(0, 1000))
      ->group(gen);
  std::string crash_on;
  app.add_option("--crash-on", crash_on,
                 "debug: the worker processing file NAME aborts")
      ->type_name("NAME")
      ->check(
          [&c](const std::string& name) {
            return !name.empty() && name.size() < sizeof(c.settings.crash_on)
                       ? std::string{}
                       : "needs a file name";
          },
          "");
  if (auto rc = actorbus::samples::parse_command_line(app, argc, argv))
    return rc;
  auto fail = [](const std::string& why) {
    fmt::print(stderr,
               "image_pool: {}\nRun with --help for more "
               "information.\n",
               why);
    return actorbus::samples::bad_usage;
  };
  size_t next_resize = 0;
  size_t next_thumbnail = 0;
  size_t next_blur = 0;
  for (auto* opt : app.parse_order()) {
    op x{};
    if (opt == resize_opt) {
      auto wh = parse_size(resize[next_resize++]);
      x = {op_kind::resize, wh->first, wh->second};
    } else if (opt == thumbnail_opt) {
      x = {op_kind::thumbnail, thumbnail[next_thumbnail++], 0};
    } else if (opt == grayscale_opt) {
      x = {op_kind::grayscale, 0, 0};
    } else if (opt == blur_opt) {
      x = {op_kind::blur, blur[next_blur++], 0};
    } else if (opt == sharpen_opt) {
      x = {op_kind::sharpen, 0, 0};
    } else {
      continue;
    }
    if (!c.settings.chain.add(x))
      return fail("too many operations");
  }
  c.settings.encoding.format =
      format == "png" ? file_format::png : file_format::jpeg;
  c.timeout = std::chrono::seconds(timeout_s);
  std::copy(crash_on.begin(), crash_on.end(), c.settings.crash_on);
  c.settings.crash_on[crash_on.size()] = '\0';
  if (c.output.empty() && c.generate == 0)
    return fail("-o <outdir> is missing");
  if (c.inputs.empty() && c.generate == 0)
    return fail("no input files or folders");
  if (c.inputs.empty() && c.output.empty())
    return fail("--generate without -o needs a folder to write to");
  return std::nullopt;
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
  cli parsed;
  if (auto rc = parse(argc, argv, parsed))
    return *rc;
  auto c = &parsed;
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
