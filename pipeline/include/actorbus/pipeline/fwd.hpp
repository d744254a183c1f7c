#pragma once

// Forward declarations of the pipeline module's types.

#include <cstdint>

namespace actorbus::pipeline {

class pipeline_plan;
class pipeline_handle;
struct pipeline_report;
struct run_options;
struct stage_options;
struct stage_stats;
struct error_policy;
struct item_error;
struct failed_item;
enum class error_action;
enum class errc : std::uint8_t;

template <class T>
class flow;

template <class T>
class collector;

template <class T>
struct topic_source_options;

namespace detail {

struct run_state;
struct plan_spec;

} // namespace detail

} // namespace actorbus::pipeline
