// W2 side by side. Run interleaved (see RESULTS.md): only ratios within one run count.
#include "workload.hpp"

#include <benchmark/benchmark.h>

#include <functional>
#include <string>
#include <thread>

namespace {

using namespace bench::async_map;
using namespace std::chrono_literals;

const std::size_t cores = std::thread::hardware_concurrency();

void cpu(benchmark::State& state, const std::function<std::uint64_t(std::int64_t)>& variant) {
  constexpr std::int64_t m = 1'000'000;
  for (auto _ : state) {
    const std::uint64_t sum = variant(m);
    if (sum != expected_square_sum(m)) {
      state.SkipWithError("wrong sum");
      break;
    }
  }
  state.counters["tasks/s"] = benchmark::Counter(static_cast<double>(m), benchmark::Counter::kIsIterationInvariantRate);
}

void sleeping(benchmark::State& state, std::int64_t m, std::chrono::milliseconds ideal,
              const std::function<std::int64_t()>& variant) {
  for (auto _ : state) {
    if (variant() != m) {
      state.SkipWithError("tasks lost");
      break;
    }
  }
  state.counters["ideal_ms"] = static_cast<double>(ideal.count());
}

const bool registered = [] {
  auto add_cpu = [](const std::string& name, std::function<std::uint64_t(std::int64_t)> variant) {
    benchmark::RegisterBenchmark(("W2a/" + name).c_str(), [variant](benchmark::State& s) { cpu(s, variant); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond)
        ->MinTime(0.5);
  };
  add_cpu("loop", plain_loop);
  add_cpu("sluice/async_stream", [](std::int64_t m) { return sluice_cpu(m, cores); });
  add_cpu("sluice/async_stream/in_stage", [](std::int64_t m) { return sluice_cpu(m, cores, true); });
  add_cpu("tbb_parallel_for", tbb_parallel_for);
  add_cpu("tbb_pipeline/tokens_cores", [](std::int64_t m) { return tbb_pipeline(m, cores); });

  auto add_sleep = [](const std::string& name, std::int64_t m, std::chrono::milliseconds ideal,
                      std::function<std::int64_t()> variant) {
    benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& s) { sleeping(s, m, ideal, variant); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(3);
  };
  // (b) M = 2000 sleeps of 10 ms, 100 at a time: ideal 200 ms.
  add_sleep("W2b/sluice/blocking", 2000, 200ms, [] { return sluice_blocking_sleep(2000, 100, 10ms); });
  add_sleep("W2b/sluice/coroutine", 2000, 200ms, [] { return sluice_coroutine_sleep(2000, 100, 10ms); });
  add_sleep("W2b/sluice/coroutine/in_stage", 2000, 200ms, [] { return sluice_coroutine_sleep(2000, 100, 10ms, true); });
  add_sleep("W2b/std_thread_pool_100", 2000, 200ms, [] { return thread_pool_sleep(2000, 100, 10ms); });
  // (c) 100,000 coroutines waiting 100 ms, all at once: ideal 100 ms. Peak RSS: sluice_rss.
  add_sleep("W2c/sluice/coroutine_100k", 100'000, 100ms, [] { return sluice_coroutine_sleep(100'000, 100'000, 100ms); });
  return true;
}();

}  // namespace
