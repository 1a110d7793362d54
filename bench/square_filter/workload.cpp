#include "workload.hpp"

#include <cmath>

namespace bench::square_filter {

std::uint64_t expected_sum(std::int64_t n, std::int64_t limit) {
  auto k = static_cast<std::int64_t>(std::sqrt(static_cast<long double>(limit)));
  while (k > 0 && (k * k >= limit)) --k;
  while ((k + 1) * (k + 1) < limit) ++k;
  if (n < k) k = n;
  const unsigned __int128 wide = static_cast<unsigned __int128>(k) * (k + 1) * (2 * k + 1) / 6;
  return static_cast<std::uint64_t>(wide);
}

}  // namespace bench::square_filter
