// W1 through the sluice binary: `sluice run square_filter.yaml` with a sum sink, timed as a
// whole process (start-up included, a few ms against seconds of events).
#include "workload.hpp"

#include <cstdio>
#include <stdexcept>
#include <string>

namespace bench::square_filter {

std::uint64_t sluice_cli(std::int64_t n, std::int64_t limit) {
  const std::string command = "N=" + std::to_string(n) + " T=" + std::to_string(limit) + " '" SLUICE_CLI_PATH "' run '" +
                              SLUICE_BENCH_DIR "/square_filter/square_filter.yaml' --quiet --no-progress";
  std::FILE* output = popen(command.c_str(), "r");
  if (output == nullptr) throw std::runtime_error("cannot run " + command);
  char line[64] = {};
  const bool read = std::fgets(line, sizeof line, output) != nullptr;
  if (pclose(output) != 0 || !read) throw std::runtime_error("failed: " + command);
  return std::stoull(line);
}

}  // namespace bench::square_filter
