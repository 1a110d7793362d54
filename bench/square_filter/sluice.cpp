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
                         sluice::HandOff hand_off = sluice::HandOff::queued) {
  using namespace sluice::stages;
  const sluice::StepOptions demand{.max_demand = max_demand, .hand_off = hand_off};
  auto sum = sluice::from<NumberProducer>(system, std::int64_t{1}, n)  //
             | sluice::via<NumberProcessor>(limit).with(demand)        //
             | sluice::into<SumConsumer>().with(demand);
  system.wait();
  return sum->sum();
}

}  // namespace

std::uint64_t sluice_pipeline(std::int64_t n, std::int64_t limit, std::size_t max_demand, sluice::HandOff hand_off) {
  sluice::System system;
  return run_stages(system, n, limit, max_demand, hand_off);
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
  std::uint64_t sum = 0;
  sluice::from(system, std::views::iota(std::int64_t{1}, n + 1))                      //
      | sluice::map([](std::int64_t x) { return square(x); })                       //
      | sluice::filter([limit](std::int64_t squared) { return squared < limit; })  //
      | sluice::each([&sum](std::int64_t kept) { sum += static_cast<std::uint64_t>(kept); });
  system.wait();
  return sum;
}

std::uint64_t sluice_dsl_fused(std::int64_t n, std::int64_t limit) {
  sluice::System system;
  std::uint64_t sum = 0;
  sluice::from(system, std::views::iota(std::int64_t{1}, n + 1))                                   //
      | sluice::fuse(sluice::map([](std::int64_t x) { return square(x); }),                         //
                     sluice::filter([limit](std::int64_t squared) { return squared < limit; }))  //
      | sluice::each([&sum](std::int64_t kept) { sum += static_cast<std::uint64_t>(kept); });
  system.wait();
  return sum;
}

}  // namespace bench::square_filter
