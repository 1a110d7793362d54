// W2 on sluice::async_stream: ordered results, one task per element.
#include "workload.hpp"

#include <sluice/async_stream.hpp>
#include <sluice/pipeline.hpp>

#include <ranges>
#include <thread>

namespace bench::async_map {

namespace {

// `iterate()` here, or in the callback of a stage that receives one event, on a System's worker.
template <class Iterate>
auto iterated(bool in_stage, Iterate iterate) {
  if (!in_stage) return iterate();
  decltype(iterate()) result{};
  sluice::System system;
  sluice::from(system, std::views::iota(0, 1)) | sluice::each([&](int) { result = iterate(); });
  system.wait();
  return result;
}

}  // namespace

std::uint64_t sluice_cpu(std::int64_t m, std::size_t concurrency, bool in_stage) {
  return iterated(in_stage, [=] {
    std::uint64_t sum = 0;
    auto square = [](std::int64_t x) { return static_cast<std::uint64_t>(x) * static_cast<std::uint64_t>(x); };
    for (auto& result : sluice::async_stream(std::views::iota(std::int64_t{1}, m + 1), square,
                                             {.max_concurrency = concurrency}))
      sum += result.value();
    return sum;
  });
}

std::int64_t sluice_blocking_sleep(std::int64_t m, std::size_t concurrency, std::chrono::milliseconds sleep) {
  std::int64_t done = 0;
  auto task = [sleep](std::int64_t) {
    std::this_thread::sleep_for(sleep);
    return 1;
  };
  for (auto& result : sluice::async_stream(std::views::iota(std::int64_t{1}, m + 1), task,
                                           {.max_concurrency = concurrency, .kind = sluice::TaskKind::blocking}))
    done += result.value();
  return done;
}

std::int64_t sluice_coroutine_sleep(std::int64_t m, std::size_t concurrency, std::chrono::milliseconds sleep,
                                    bool in_stage) {
  return iterated(in_stage, [=] {
    std::int64_t done = 0;
    auto task = [sleep](std::int64_t) -> sluice::Task<int> {
      co_await sluice::sleep_for(sleep);
      co_return 1;
    };
    for (auto& result : sluice::async_stream(std::views::iota(std::int64_t{1}, m + 1), task,
                                             {.max_concurrency = concurrency}))
      done += result.value();
    return done;
  });
}

}  // namespace bench::async_map
