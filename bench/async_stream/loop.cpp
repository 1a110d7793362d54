// W2 (a) as a plain loop on one thread: the cost of the work itself.
#include "workload.hpp"

namespace bench::async_map {

std::uint64_t expected_square_sum(std::int64_t m) {
  const auto k = static_cast<unsigned __int128>(m);
  return static_cast<std::uint64_t>(k * (k + 1) * (2 * k + 1) / 6);
}

std::uint64_t plain_loop(std::int64_t m) {
  std::uint64_t sum = 0;
  for (std::int64_t x = 1; x <= m; ++x) sum += static_cast<std::uint64_t>(x) * static_cast<std::uint64_t>(x);
  return sum;
}

}  // namespace bench::async_map
