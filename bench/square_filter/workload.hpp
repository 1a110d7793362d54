#pragma once
// W1, the square-and-filter workload: a producer emits int64 1..N, the middle stage squares
// each value and keeps the squares below `limit`, and the consumer sums them (uint64, mod 2^64).
// Each framework implements it once, in its own file, as in Taskflow's benchmarks/.
#include <sluice/subscription.hpp>

#include <cstdint>

namespace bench::square_filter {

// The square as every implementation computes it: unsigned, so wrapping is defined.
inline std::int64_t square(std::int64_t x) {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(x) * static_cast<std::uint64_t>(x));
}

// k(k+1)(2k+1)/6 mod 2^64, with k = min(n, the largest x with x*x < limit).
std::uint64_t expected_sum(std::int64_t n, std::int64_t limit);

std::uint64_t plain_loop(std::int64_t n, std::int64_t limit);
// Two plain threads, one making and summing batches, the other squaring and filtering them.
std::uint64_t two_threads_pipelined(std::int64_t n, std::int64_t limit, std::size_t batch, std::size_t in_flight);
std::uint64_t tbb_pipeline(std::int64_t n, std::int64_t limit, std::size_t batch, std::size_t tokens);
// The same on one thread (an arena of one slot): what oneTBB does with the core sluice's serial
// stages use, next to what it does with both.
std::uint64_t tbb_pipeline_one_thread(std::int64_t n, std::int64_t limit, std::size_t batch, std::size_t tokens);
std::uint64_t tbb_flow_graph(std::int64_t n, std::int64_t limit, std::size_t batch);
// copies: parallel copies of the middle stage, fed by the producer's demand dispatcher.
std::uint64_t sluice_pipeline(std::int64_t n, std::int64_t limit, std::size_t max_demand,
                              sluice::HandOff hand_off = sluice::HandOff::queued, std::size_t copies = 1);
// The same on a ManualScheduler: every slice on the calling thread, without oneTBB or a second
// core, so it measures what the stages and their messages cost by themselves.
std::uint64_t sluice_pipeline_one_thread(std::int64_t n, std::int64_t limit, std::size_t max_demand,
                                         sluice::HandOff hand_off = sluice::HandOff::queued);
// The same as lambdas in the DSL: from(range) | map | filter | each.
std::uint64_t sluice_dsl(std::int64_t n, std::int64_t limit);
// The same with map and filter fused into one stage (sluice::fuse).
std::uint64_t sluice_dsl_fused(std::int64_t n, std::int64_t limit);
// Either of those on a ManualScheduler (one thread, as sluice_pipeline_one_thread).
std::uint64_t sluice_dsl_one_thread(std::int64_t n, std::int64_t limit, bool fused);
// The same through `sluice run` and a YAML file (a process of its own).
std::uint64_t sluice_cli(std::int64_t n, std::int64_t limit);

}  // namespace bench::square_filter
