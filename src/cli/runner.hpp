#pragma once
// Runs a checked pipeline configuration on a System.
#include "../yaml/pipeline_config.hpp"

#include <sluice/system.hpp>

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

namespace sluice::cli {

struct RunOptions {
  std::size_t threads = 0;                          // 0: one per hardware thread
  std::chrono::milliseconds drain_timeout{10'000};  // after SIGINT/SIGTERM
  std::FILE* summary = stderr;                      // the per-stage summary, or nullptr
  std::string metrics_path;                         // a JSON line per stage each second and at the end
  bool progress = false;                            // a live line of events/s per stage on stderr
};

struct RunResult {
  int exit_code = 0;                  // 0, 1 (a stage failed) or 130 (interrupted)
  std::optional<std::string> error;  // what failed, naming the stage and the event
};

// `text` as the inside of a JSON string: quotes, backslashes and control characters escaped.
std::string escape_json(const std::string& text);

// Builds the stages, runs them to completion (or until SIGINT/SIGTERM, which drain the
// pipeline), and prints the summary. Data goes to stdout; everything else to stderr.
RunResult run_pipeline(const yaml::PipelineConfig& config, const RunOptions& options);

}  // namespace sluice::cli
