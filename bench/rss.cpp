// Peak resident memory of one W1 variant, in a process of its own (peak RSS is per process):
//   sluice_rss VARIANT N   prints "VARIANT N peak_rss_kib" and exits 1 if the sum is wrong.
// VARIANT: loop, sluice, tbb_pipeline, tbb_flow_graph (batched ones), at T = 2^62.
#include "square_filter/workload.hpp"

#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
  using namespace bench::square_filter;
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s loop|sluice|tbb_pipeline|tbb_flow_graph N\n", argv[0]);
    return 2;
  }
  const std::string variant = argv[1];
  const std::int64_t n = std::atoll(argv[2]);
  const std::int64_t limit = std::int64_t{1} << 62;
  std::uint64_t sum = 0;
  if (variant == "loop") {
    sum = plain_loop(n, limit);
  } else if (variant == "sluice") {
    sum = sluice_pipeline(n, limit, 1000);
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
