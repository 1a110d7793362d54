// W2 (a) on oneTBB: parallel_for (chunked: not one task per element) and parallel_pipeline
// with one element per token, ordered, as async_stream is.
#include "workload.hpp"

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_pipeline.h>
#include <oneapi/tbb/parallel_reduce.h>

#include <functional>

namespace bench::async_map {

std::uint64_t tbb_parallel_for(std::int64_t m) {
  return oneapi::tbb::parallel_reduce(
      oneapi::tbb::blocked_range<std::int64_t>(1, m + 1), std::uint64_t{0},
      [](const oneapi::tbb::blocked_range<std::int64_t>& range, std::uint64_t sum) {
        for (std::int64_t x = range.begin(); x != range.end(); ++x)
          sum += static_cast<std::uint64_t>(x) * static_cast<std::uint64_t>(x);
        return sum;
      },
      std::plus<>());
}

std::uint64_t tbb_pipeline(std::int64_t m, std::size_t tokens) {
  std::int64_t next = 1;
  std::uint64_t sum = 0;
  oneapi::tbb::parallel_pipeline(
      tokens,
      oneapi::tbb::make_filter<void, std::int64_t>(oneapi::tbb::filter_mode::serial_in_order,
                                                   [&](oneapi::tbb::flow_control& control) -> std::int64_t {
                                                     if (next > m) control.stop();
                                                     return next++;
                                                   }) &
          oneapi::tbb::make_filter<std::int64_t, std::uint64_t>(
              oneapi::tbb::filter_mode::parallel,
              [](std::int64_t x) { return static_cast<std::uint64_t>(x) * static_cast<std::uint64_t>(x); }) &
          oneapi::tbb::make_filter<std::uint64_t, void>(oneapi::tbb::filter_mode::serial_in_order,
                                                        [&](std::uint64_t square) { sum += square; }));
  return sum;
}

}  // namespace bench::async_map
