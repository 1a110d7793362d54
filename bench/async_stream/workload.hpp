#pragma once
// W2, the async_stream workload: a parallel map over 1..M with bounded concurrency and ordered
// results, once per framework, in its own file.
//   (a) CPU: f(x) = x*x, M = 1e6, concurrency = cores; the results are summed (mod 2^64).
//   (b) simulated I/O: f sleeps 10 ms, M = 2000, concurrency 100; the ideal is M/100 * 10 ms.
//   (c) coroutines: M = 100,000 tasks each waiting 100 ms, all at once.
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace bench::async_map {

// The sluice variants iterate their stream on the calling thread, or, with `in_stage`, in a
// stage's callback on a System's worker: there a consumer that sleeps lends the runtime a
// stand-in thread (README, async_stream), which these rows measure.

// Sum of x*x for x in 1..m, mod 2^64.
std::uint64_t expected_square_sum(std::int64_t m);

// (a)
std::uint64_t plain_loop(std::int64_t m);
std::uint64_t sluice_cpu(std::int64_t m, std::size_t concurrency, bool in_stage = false);
std::uint64_t tbb_parallel_for(std::int64_t m);
std::uint64_t tbb_pipeline(std::int64_t m, std::size_t tokens);

// (b) and (c): each returns how many tasks completed (all of them, or the run is wrong).
std::int64_t sluice_blocking_sleep(std::int64_t m, std::size_t concurrency, std::chrono::milliseconds sleep);
std::int64_t sluice_coroutine_sleep(std::int64_t m, std::size_t concurrency, std::chrono::milliseconds sleep,
                                    bool in_stage = false);
std::int64_t thread_pool_sleep(std::int64_t m, std::size_t threads, std::chrono::milliseconds sleep);

}  // namespace bench::async_map
