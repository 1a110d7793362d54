// W1 on sluice: NumberProducer -> NumberProcessor -> SumConsumer, three stages on the System's
// workers, at a given max_demand (min_demand at its default, max_demand / 2), with batches
// queued or handed off at once.
#include "workload.hpp"

#include <sluice/defaults.hpp>
#include <sluice/manual_scheduler.hpp>
#include <sluice/pipeline.hpp>
#include <sluice/stages/number_processor.hpp>
#include <sluice/stages/number_producer.hpp>
#include <sluice/stages/sum_consumer.hpp>

#include <ranges>

namespace bench::square_filter {

namespace {

std::uint64_t run_stages(sluice::System& system, std::int64_t n, std::int64_t limit, std::size_t max_demand,
                         sluice::HandOff hand_off = sluice::HandOff::queued, std::size_t copies = 1) {
  using namespace sluice::stages;
  const sluice::StepOptions demand{.max_demand = max_demand, .hand_off = hand_off};
  sluice::StepOptions middle = demand;
  middle.copies = copies;
  auto sum = sluice::from<NumberProducer>(system, std::int64_t{1}, n)  //
             | sluice::via<NumberProcessor>(limit).with(middle)        //
             | sluice::into<SumConsumer>().with(demand);
  system.wait();
  return sum->sum();
}

// from(range) | map | filter | each, with map and filter fused into one stage or not.
std::uint64_t run_dsl(sluice::System& system, std::int64_t n, std::int64_t limit, bool fused) {
  std::uint64_t sum = 0;
  const auto numbers = sluice::from(system, std::views::iota(std::int64_t{1}, n + 1));
  const auto squares = sluice::map([](std::int64_t x) { return square(x); });
  const auto below = sluice::filter([limit](std::int64_t squared) { return squared < limit; });
  const auto add = sluice::each([&sum](std::int64_t kept) { sum += static_cast<std::uint64_t>(kept); });
  if (fused) {
    numbers | sluice::fuse(squares, below) | add;
  } else {
    numbers | squares | below | add;
  }
  system.wait();
  return sum;
}

}  // namespace

std::uint64_t sluice_pipeline(std::int64_t n, std::int64_t limit, std::size_t max_demand, sluice::HandOff hand_off,
                              std::size_t copies) {
  sluice::System system;
  return run_stages(system, n, limit, max_demand, hand_off, copies);
}

std::uint64_t sluice_pipeline_one_thread(std::int64_t n, std::int64_t limit, std::size_t max_demand,
                                         sluice::HandOff hand_off) {
  // Slices as the scheduler's workers run them, but all on this thread, in FIFO order.
  sluice::ManualScheduler scheduler(sluice::defaults::max_throughput);
  sluice::System system(scheduler);
  return run_stages(system, n, limit, max_demand, hand_off);
}

std::uint64_t sluice_dsl(std::int64_t n, std::int64_t limit) {
  sluice::System system;
  return run_dsl(system, n, limit, false);
}

std::uint64_t sluice_dsl_fused(std::int64_t n, std::int64_t limit) {
  sluice::System system;
  return run_dsl(system, n, limit, true);
}

std::uint64_t sluice_dsl_one_thread(std::int64_t n, std::int64_t limit, bool fused) {
  sluice::ManualScheduler scheduler(sluice::defaults::max_throughput);
  sluice::System system(scheduler);
  return run_dsl(system, n, limit, fused);
}

}  // namespace bench::square_filter
