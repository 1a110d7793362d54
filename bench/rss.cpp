// Peak resident memory of one W1 variant, in a process of its own (peak RSS is per process):
//   sluice_rss VARIANT N [T]   prints "VARIANT N peak_rss_kib" and exits 1 if the sum is wrong.
// VARIANT: loop, sluice, tbb_pipeline, tbb_flow_graph (W1's batched ones), or
// sluice_one_thread[_max_demand_1][_at_once] (W1 on a ManualScheduler, at max_demand
// 1000 or 1, queued or handed off at once: one thread, so that `valgrind --tool=callgrind`
// counts the same instructions on every run, a measure this noisy machine cannot blur), or
// dsl_one_thread[_fused] (W1 in the DSL, on a ManualScheduler too), or
// async_coroutines (W2 (c): N coroutines each waiting 100 ms, all at once; also prints the
// wall time in ms), or cli (`sluice run` on W1 with T = 1000, in a child process). The W1
// variants but cli run at T = 2^62 unless T is given.
#include "async_stream/workload.hpp"
#include "square_filter/workload.hpp"

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
  using namespace bench::square_filter;
  if (argc != 3 && argc != 4) {
    std::fprintf(stderr,
                 "usage: %s loop|sluice|sluice_one_thread[_max_demand_1][_at_once]|dsl_one_thread[_fused]|"
                 "tbb_pipeline|tbb_flow_graph|async_coroutines|cli N [T]\n",
                 argv[0]);
    return 2;
  }
  const std::string variant = argv[1];
  const std::int64_t n = std::atoll(argv[2]);
  // W1's threshold, for the variants that run W1 at a threshold of their choosing: 2^62 unless
  // given. A positive number, or the sum would check nothing.
  std::int64_t limit = std::int64_t{1} << 62;
  if (argc == 4) {
    if (variant == "cli" || variant == "async_coroutines") {
      std::fprintf(stderr, "%s takes no T\n", variant.c_str());
      return 2;
    }
    char* end = nullptr;
    limit = std::strtoll(argv[3], &end, 10);
    if (*end != '\0' || limit <= 0) {
      std::fprintf(stderr, "T must be a positive integer, not '%s'\n", argv[3]);
      return 2;
    }
  }
  std::uint64_t sum = 0;
  if (variant == "async_coroutines") {
    const auto start = std::chrono::steady_clock::now();
    const std::int64_t done = bench::async_map::sluice_coroutine_sleep(n, static_cast<std::size_t>(n),
                                                                       std::chrono::milliseconds(100));
    const auto wall = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    std::printf("%s %lld %ld wall_ms %.1f\n", variant.c_str(), static_cast<long long>(n), usage.ru_maxrss, wall);
    return done == n ? 0 : 1;
  }
  if (variant == "cli") {
#ifdef SLUICE_CLI_PATH
    // `sluice run` in a child process, T = 1000 (its YAML sum is checked int64): the child's peak.
    const std::uint64_t cli_sum = sluice_cli(n, 1000);
    rusage usage{};
    getrusage(RUSAGE_CHILDREN, &usage);
    std::printf("%s %lld %ld\n", variant.c_str(), static_cast<long long>(n), usage.ru_maxrss);
    return cli_sum == expected_sum(n, 1000) ? 0 : 1;
#else
    std::fprintf(stderr, "cli: this build has no sluice CLI (configured with -DSLUICE_BUILD_CLI=OFF)\n");
    return 2;
#endif
  }
  if (variant == "loop") {
    sum = plain_loop(n, limit);
  } else if (variant == "sluice") {
    sum = sluice_pipeline(n, limit, 1000);
  } else if (variant.starts_with("sluice_one_thread")) {
    const std::string options = variant.substr(std::string("sluice_one_thread").size());
    const bool at_once = options.ends_with("_at_once");
    const std::string demand = options.substr(0, options.size() - (at_once ? std::string("_at_once").size() : 0));
    if (demand != "" && demand != "_max_demand_1") {
      std::fprintf(stderr, "unknown variant %s\n", variant.c_str());
      return 2;
    }
    sum = sluice_pipeline_one_thread(n, limit, demand.empty() ? 1000 : 1,
                                     at_once ? sluice::HandOff::at_once : sluice::HandOff::queued);
  } else if (variant == "dsl_one_thread" || variant == "dsl_one_thread_fused") {
    sum = sluice_dsl_one_thread(n, limit, variant.ends_with("_fused"));
  } else if (variant == "tbb_pipeline") {
    sum = tbb_pipeline(n, limit, 1000, 8);
  } else if (variant == "tbb_flow_graph") {
    sum = tbb_flow_graph(n, limit, 1000);
  } else {
    std::fprintf(stderr, "unknown variant %s\n", variant.c_str());
    return 2;
  }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf("%s %lld %ld\n", variant.c_str(), static_cast<long long>(n), usage.ru_maxrss);
  return sum == expected_sum(n, limit) ? 0 : 1;
}
