// README.md's examples, run as they are shown.
#include "readme_examples.hpp"

#include <sluice/stages/number_processor.hpp>
#include <sluice/stages/number_producer.hpp>
#include <sluice/stages/sum_consumer.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <ranges>
#include <thread>

using namespace std::chrono_literals;

TEST_CASE("README: the seed workload as three stages wired by hand") {
  sluice::System system;  // one worker per hardware thread
  auto numbers = system.spawn<readme::Numbers>("numbers", 1, 100);
  auto squares = system.spawn<readme::Squares>("squares");
  auto printer = system.spawn<readme::Printer>("printer");
  system.subscribe(squares, numbers, {.max_demand = 1000});
  system.subscribe(printer, squares);
  system.wait();  // throws sluice::StageError if a stage failed
  CHECK(printer->printed.size() == 31);
  CHECK(printer->printed.back() == 961);
}

TEST_CASE("README: the seed workload in the DSL") {
  using namespace sluice::stages;
  sluice::System system;
  auto sum = sluice::from<NumberProducer>(system, 1, 100)  //
             | sluice::via<NumberProcessor>(1000)          //
             | sluice::into<SumConsumer>();
  system.wait();
  CHECK(sum->sum() == 10416);
}

TEST_CASE("README: lambdas, demand options and parallel copies") {
  sluice::System system;
  std::int64_t total = 0;
  sluice::from(system, std::views::iota(1, 1001))                                        //
      | sluice::map([](int x) { return std::int64_t{x} * x; }, {.max_demand = 100, .copies = 2})  //
      | sluice::filter([](std::int64_t x) { return x % 3 == 0; })                              //
      | sluice::each([&](std::int64_t x) { total += x; });
  system.wait();
  std::int64_t expected = 0;
  for (std::int64_t x = 1; x <= 1000; ++x)
    if (x * x % 3 == 0) expected += x * x;
  CHECK(total == expected);
}

TEST_CASE("README: the TTL + LRU cache server under a supervisor, registered by name") {
  // The README's TTL, far beyond the test: no entry expires, so every miss is an eviction.
  sluice::System system;
  auto caches = sluice::start_supervisor(
      system, {.name = "caches"},
      {sluice::child<readme::Cache>(sluice::StageOptions{.name = "cache", .register_name = true}, std::size_t{2}, 30s)});
  system.start();

  const auto cache = system.whereis("cache");
  system.cast(*cache, readme::Cache::Put{"a", "1"});
  system.cast(*cache, readme::Cache::Put{"b", "2"});
  auto get = [&](const char* key) {
    return std::any_cast<std::optional<std::string>>(system.call(*system.whereis("cache"), readme::Cache::Get{key}));
  };
  CHECK(get("a") == "1");                             // a is now the most recently used
  system.cast(*cache, readme::Cache::Put{"c", "3"});  // evicts b, the least recently used
  CHECK(get("b") == std::nullopt);
  CHECK(get("c") == "3");
  CHECK(get("a") == "1");
  CHECK(caches.which_children().front().starts == 1);
  system.stop();
}

TEST_CASE("README: the cache's entries expire after their TTL") {
  sluice::System system;
  auto cache = system.spawn<readme::Cache>("cache", std::size_t{2}, 1ms);
  system.start();
  system.cast(cache, readme::Cache::Put{"a", "1"});
  auto get = [&](const char* key) {
    return std::any_cast<std::optional<std::string>>(system.call(cache, readme::Cache::Get{key}));
  };
  // Wait for the condition, not for a time; the bound is for a failing run. With one entry of
  // two, a miss can only be the expiry.
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while (get("a") && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
  CHECK(get("a") == std::nullopt);
  system.stop();
}

TEST_CASE("README: async_stream fetching URLs, with a timeout that kills the slow task") {
  const auto report = readme::fetch_all({"https://a.example", "https://unreachable.example", "https://b.example"});
  CHECK(report == std::vector<std::string>{"200 https://a.example",
                                           "failed https://unreachable.example: timeout", "200 https://b.example"});
}
