// W1 as a plain single-thread loop: the physical limit of one core.
#include "workload.hpp"

namespace bench::square_filter {

std::uint64_t plain_loop(std::int64_t n, std::int64_t limit) {
  std::uint64_t sum = 0;
  for (std::int64_t x = 1; x <= n; ++x) {
    const std::int64_t s = square(x);
    if (s < limit) sum += static_cast<std::uint64_t>(s);
  }
  return sum;
}

}  // namespace bench::square_filter
