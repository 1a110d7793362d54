// W1 side by side, registered for T = 1000 and T = 2^62. Run interleaved (see RESULTS.md):
// this machine kind switches between two speed modes, so only ratios within one run count.
#include "workload.hpp"

#include <sluice/stages/number_processor.hpp>
#include <sluice/stages/number_producer.hpp>
#include <sluice/stages/sum_consumer.hpp>

#include <benchmark/benchmark.h>

#include <functional>
#include <string>
#include <vector>

namespace {

using namespace bench::square_filter;

using Variant = std::function<std::uint64_t(std::int64_t n, std::int64_t limit)>;

// Reports events/s, from the events each iteration handles.
void count_events(benchmark::State& state, double events_per_iteration) {
  state.counters["events/s"] = benchmark::Counter(events_per_iteration, benchmark::Counter::kIsIterationInvariantRate);
}

void run(benchmark::State& state, const Variant& variant, std::int64_t n, std::int64_t limit) {
  const std::uint64_t expected = expected_sum(n, limit);
  for (auto _ : state) {
    const std::uint64_t sum = variant(n, limit);
    if (sum != expected) {
      state.SkipWithError(("wrong sum " + std::to_string(sum) + ", expected " + std::to_string(expected)).c_str());
      break;
    }
    benchmark::DoNotOptimize(sum);
  }
  count_events(state, static_cast<double>(n));
}

struct Registration {
  const char* name;
  std::int64_t n;  // per iteration: large for batched variants, smaller for per-item ones
  Variant variant;
};

const bool registered = [] {
  const Registration variants[] = {
      {"loop", 100'000'000, plain_loop},
      // Batches of 500, as default demand (1000 / 500) makes, with four in flight on each hop
      // (default demand allows two).
      {"two_threads_pipelined/batch_500", 100'000'000, [](auto n, auto t) { return two_threads_pipelined(n, t, 500, 4); }},
      {"sluice/default_demand", 100'000'000, [](auto n, auto t) { return sluice_pipeline(n, t, 1000); }},
      {"sluice/max_demand_1", 2'000'000, [](auto n, auto t) { return sluice_pipeline(n, t, 1); }},
      {"sluice/default_demand/one_thread", 100'000'000,
       [](auto n, auto t) { return sluice_pipeline_one_thread(n, t, 1000); }},
      {"sluice/max_demand_1/one_thread", 2'000'000, [](auto n, auto t) { return sluice_pipeline_one_thread(n, t, 1); }},
      {"sluice/max_demand_1/hand_off_at_once", 2'000'000,
       [](auto n, auto t) { return sluice_pipeline(n, t, 1, sluice::HandOff::at_once); }},
      {"sluice/default_demand/hand_off_at_once", 100'000'000,
       [](auto n, auto t) { return sluice_pipeline(n, t, 1000, sluice::HandOff::at_once); }},
      {"sluice/default_demand/copies_2", 100'000'000,
       [](auto n, auto t) { return sluice_pipeline(n, t, 1000, sluice::HandOff::queued, 2); }},
      {"sluice/default_demand/copies_2/hand_off_at_once", 100'000'000,
       [](auto n, auto t) { return sluice_pipeline(n, t, 1000, sluice::HandOff::at_once, 2); }},
      {"sluice/dsl_lambdas", 100'000'000, sluice_dsl},
      {"sluice/dsl_fused", 100'000'000, sluice_dsl_fused},
      {"tbb_pipeline/batch_1000_tokens_8", 100'000'000, [](auto n, auto t) { return tbb_pipeline(n, t, 1000, 8); }},
      {"tbb_pipeline/batch_1_tokens_8", 2'000'000, [](auto n, auto t) { return tbb_pipeline(n, t, 1, 8); }},
      {"tbb_pipeline/batch_1000_tokens_8/one_thread", 100'000'000,
       [](auto n, auto t) { return tbb_pipeline_one_thread(n, t, 1000, 8); }},
      {"tbb_pipeline/batch_1_tokens_8/one_thread", 2'000'000, [](auto n, auto t) { return tbb_pipeline_one_thread(n, t, 1, 8); }},
      {"tbb_flow_graph/batch_1000", 100'000'000, [](auto n, auto t) { return tbb_flow_graph(n, t, 1000); }},
      {"tbb_flow_graph/per_item", 1'000'000, [](auto n, auto t) { return tbb_flow_graph(n, t, 1); }},
  };
  const std::pair<const char*, std::int64_t> limits[] = {{"T=1000", 1000}, {"T=2^62", std::int64_t{1} << 62}};
  for (const auto& [limit_name, limit] : limits) {
    for (const auto& v : variants) {
      benchmark::RegisterBenchmark(("W1/" + std::string(limit_name) + "/" + v.name).c_str(),
                                   [variant = v.variant, n = v.n, limit = limit](benchmark::State& state) {
                                     run(state, variant, n, limit);
                                   })
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond)
          ->MinTime(0.5);
    }
  }
  // `sluice run` against the DSL, on the example pipeline (T = 1000; the YAML sum is checked
  // int64, so T = 2^62 would overflow it by design).
#ifdef SLUICE_CLI_PATH
  benchmark::RegisterBenchmark("W1/T=1000/sluice_cli/run_yaml", [](benchmark::State& state) {
    run(state, sluice_cli, 100'000'000, 1000);
  })->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(0.5);
#endif
  // W1's three loops by themselves, on one 500-event batch (a chunk at default demand) that
  // stays in the cache: the most one core can do with them, with no framework at all.
  constexpr std::size_t chunk = 500;
  benchmark::RegisterBenchmark("W1/loops_on_500/fill_from", [](benchmark::State& state) {
    std::vector<std::int64_t> batch(chunk);
    std::int64_t first = 1;
    for (auto _ : state) {
      sluice::stages::NumberProducer::fill_from(batch, first);
      first += static_cast<std::int64_t>(chunk);
      benchmark::ClobberMemory();
    }
    count_events(state, chunk);
  });
  for (const auto& [limit_name, limit] : limits) {
    benchmark::RegisterBenchmark(("W1/loops_on_500/keep_squares_below/" + std::string(limit_name)).c_str(),
                                 [limit = limit](benchmark::State& state) {
                                   std::vector<std::int64_t> batch(chunk);
                                   std::vector<std::int64_t> kept(chunk);
                                   sluice::stages::NumberProducer::fill_from(batch, 1);
                                   for (auto _ : state) {
                                     benchmark::DoNotOptimize(sluice::stages::NumberProcessor::keep_squares_below(batch, kept.data(), limit));
                                     benchmark::ClobberMemory();
                                   }
                                   count_events(state, chunk);
                                 });
  }
  benchmark::RegisterBenchmark("W1/loops_on_500/add_all", [](benchmark::State& state) {
    std::vector<std::int64_t> batch(chunk);
    sluice::stages::NumberProducer::fill_from(batch, 1);
    std::uint64_t sum = 0;
    for (auto _ : state) {
      sum = sluice::stages::SumConsumer::add_all(sum, batch);
      benchmark::DoNotOptimize(sum);
    }
    count_events(state, chunk);
  });
  return true;
}();

}  // namespace
