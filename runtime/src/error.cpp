#include "actorbus/runtime/error.hpp"

#include <caf/message.hpp>
#include <caf/sec.hpp>

#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <utility>

namespace actorbus::runtime {

namespace {

struct category_entry {
  std::string module;
  error_code_namer namer = nullptr;
};

struct category_table {
  std::shared_mutex mtx;
  std::unordered_map<std::uint64_t, category_entry> entries;
};

// A function-local static: modules register from static initialisers in
// other translation units, whose order relative to ours is unspecified.
category_table& table() {
  static category_table instance;
  return instance;
}

std::string with_context(std::string head, const caf::message& ctx) {
  if (ctx.empty())
    return head;
  head += ": ";
  if (ctx.match_elements<std::string>())
    head += ctx.get_as<std::string>(0);
  else
    head += caf::to_string(ctx);
  return head;
}

// Looks `category` up; returns false when it is not registered.
bool render_registered(std::uint8_t code, caf::atom_value category,
                       const caf::message& ctx, std::string& out) {
  auto& t = table();
  std::shared_lock guard{t.mtx};
  auto i = t.entries.find(static_cast<std::uint64_t>(category));
  if (i == t.entries.end())
    return false;
  out = with_context(i->second.module + "." + i->second.namer(code), ctx);
  return true;
}

const bool runtime_registered = register_error_category(
    error_category, "runtime", [](std::uint8_t code) noexcept {
      return to_string(static_cast<errc>(code));
    });

} // namespace

bool register_error_category(caf::atom_value category, const char* module,
                             error_code_namer namer) {
  auto& t = table();
  std::unique_lock guard{t.mtx};
  t.entries[static_cast<std::uint64_t>(category)] =
      category_entry{module, namer};
  return true;
}

std::string describe(const caf::error& err) {
  if (!err)
    return "none";
  std::string out;
  if (render_registered(err.code(), err.category(), err.context(), out))
    return out;
  if (err.category() == caf::atom("system"))
    return with_context("caf." +
                            caf::to_string(static_cast<caf::sec>(err.code())),
                        err.context());
  return caf::to_string(err);
}

void add_error_renderers(caf::actor_system_config& cfg) {
  (void)runtime_registered;
  auto& t = table();
  std::shared_lock guard{t.mtx};
  for (auto& [key, entry] : t.entries) {
    auto category = static_cast<caf::atom_value>(key);
    cfg.add_error_category(category, [](std::uint8_t code, caf::atom_value cat,
                                        const caf::message& ctx) {
      std::string out;
      if (!render_registered(code, cat, ctx, out))
        out = "error(" + std::to_string(code) + ")";
      return out;
    });
  }
}

const char* to_string(errc x) noexcept {
  switch (x) {
  case errc::timeout:
    return "timeout";
  case errc::shutting_down:
    return "shutting_down";
  case errc::invalid_config:
    return "invalid_config";
  case errc::process_failed:
    return "process_failed";
  }
  return "unknown";
}

caf::error make_error(errc x) {
  return caf::error{static_cast<std::uint8_t>(x), error_category};
}

caf::error make_error(errc x, std::string context) {
  return caf::error{static_cast<std::uint8_t>(x), error_category,
                    caf::make_message(std::move(context))};
}

} // namespace actorbus::runtime
