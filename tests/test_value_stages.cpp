// The built-in stages of YAML pipelines, where their edge cases are easier to reach from C++
// than from a YAML file.
#include "support.hpp"

#include <sluice/pipeline.hpp>
#include <sluice/stages/value_stages.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <limits>
#include <optional>
#include <string>
#include <vector>

using namespace sluice;

namespace {

// Everything a range emits, taken at `max_demand` events a request.
std::vector<std::int64_t> range(std::int64_t first, std::optional<std::int64_t> last, std::int64_t step, std::size_t max_demand = 1000) {
  System system;
  std::vector<std::int64_t> seen;
  from<stages::RangeSource>(system, first, last, step) |
      each([&seen](std::int64_t value) { seen.push_back(value); }, StepOptions{.max_demand = max_demand});
  system.wait();
  return seen;
}

constexpr std::int64_t max = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t min = std::numeric_limits<std::int64_t>::min();

}  // namespace

TEST_CASE("range: `to` is inclusive, in either direction, whatever the demand") {
  CHECK(range(1, 10, 1) == std::vector<std::int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  CHECK(range(1, 10, 1, 1) == range(1, 10, 1));
  CHECK(range(1, 10, 1, 3) == range(1, 10, 1));
  CHECK(range(10, 1, -3) == std::vector<std::int64_t>{10, 7, 4, 1});
  CHECK(range(-5, 5, 4) == std::vector<std::int64_t>{-5, -1, 3});
  CHECK(range(3, 3, 7) == std::vector<std::int64_t>{3});
}

TEST_CASE("range: an empty range emits nothing and ends") {
  CHECK(range(5, 4, 1).empty());
  CHECK(range(4, 5, -1).empty());
}

TEST_CASE("range: the ends of int64 are reached exactly, never overflowed") {
  CHECK(range(max - 2, std::nullopt, 1) == std::vector<std::int64_t>{max - 2, max - 1, max});
  CHECK(range(min + 1, std::nullopt, -1, 1) == std::vector<std::int64_t>{min + 1, min});
  CHECK(range(0, max, max) == std::vector<std::int64_t>{0, max});
  CHECK(range(max, min, min) == std::vector<std::int64_t>{max, -1});
  CHECK(range(min, std::nullopt, max) == std::vector<std::int64_t>{min, -1, max - 1});
}

TEST_CASE("batch: a batch filled before its timeout cancels its timer, so timers do not pile up on a fast stream") {
  ManualScheduler scheduler;
  System system(scheduler);
  auto batches = from<stages::RangeSource>(system, 1, 10'000, 1) |
                 via<stages::BatchStage<std::int64_t>>(std::size_t{2}, std::chrono::milliseconds(3'600'000), std::string(",")) |
                 into<test::RecordingConsumer<std::string>>();
  system.wait();
  CHECK(batches->received() == 5'000);
  CHECK(batches->events().back() == "9999,10000");
  CHECK(system.timers_held() < 100);  // one an hour long per batch, 5,000 of them, had they stayed
}

TEST_CASE("range: a step of 0 is refused") {
  CHECK_THROWS_AS(stages::RangeSource(1, 2, 0), std::invalid_argument);
}

TEST_CASE("an expression error names a failing event, not always the first: the earlier ones still go by on_error") {
  // The left operand fails at x = 3 before the right one is evaluated, which fails at x = 1.
  for (const auto on_error : {stages::OnError::skip, stages::OnError::dead_letter}) {
    std::vector<Value> dead_letters;
    stages::ExpressionStep step("sum_of_ratios", expr::Expression::compile("10 / (x - 3) + 10 / (x - 1)", expr::Type::integer), on_error,
                                std::make_shared<stages::Failures>(),
                                [&](const std::string&, const Value& event, const std::string&) { dead_letters.push_back(event); });
    const std::vector<std::int64_t> events{1, 2, 3, 4};
    std::vector<std::pair<std::size_t, expr::Values<std::int64_t>>> runs;
    const bool go_on = step.apply(std::span<const std::int64_t>(events),
                                  [&](std::span<const std::int64_t> part) { return step.expression().evaluate<std::int64_t>(part); },
                                  [&](std::size_t first, expr::Values<std::int64_t> values) { runs.emplace_back(first, std::move(values)); });
    CHECK(go_on);
    CHECK(step.skipped() == 2);
    REQUIRE(runs.size() == 2);
    CHECK(runs[0] == std::pair<std::size_t, expr::Values<std::int64_t>>{1, {0}});     // x = 2: -10 + 10
    CHECK(runs[1] == std::pair<std::size_t, expr::Values<std::int64_t>>{3, {13}});    // x = 4: 10 + 3
    if (on_error == stages::OnError::dead_letter) {
      CHECK(dead_letters == std::vector<Value>{std::int64_t{1}, std::int64_t{3}});  // in event order
    } else {
      CHECK(dead_letters.empty());
    }
  }
}

TEST_CASE("on_error stop: the first failing event stops the step, after the events before it") {
  auto failures = std::make_shared<stages::Failures>();
  stages::ExpressionStep step("ratio", expr::Expression::compile("10 / (x - 3) + 10 / (x - 1)", expr::Type::integer), stages::OnError::stop,
                              failures);
  const std::vector<std::int64_t> events{2, 1, 3};
  std::vector<std::int64_t> emitted;
  const bool go_on = step.apply(std::span<const std::int64_t>(events),
                                [&](std::span<const std::int64_t> part) { return step.expression().evaluate<std::int64_t>(part); },
                                [&](std::size_t, expr::Values<std::int64_t> values) { emitted.insert(emitted.end(), values.begin(), values.end()); });
  CHECK_FALSE(go_on);
  CHECK(emitted == std::vector<std::int64_t>{0});
  CHECK(failures->first() == "stage 'ratio' failed on event 1: division by zero");
}

TEST_CASE("filter: what holds goes on in order around the events that fail, integers picked in one pass and strings moved") {
  // 10 / (key - 3) fails where the key is 3, holds below 4 elsewhere: keys 1, 2, 6, 7, 8 pass.
  // Both failures fall in one chunk (max_demand 16: chunks of 8), which each splits, and the
  // runs around them must follow one another in order.
  const std::vector<std::int64_t> keys{1, 2, 3, 4, 5, 6, 3, 7, 8};
  const std::vector<std::int64_t> kept_keys{1, 2, 6, 7, 8};
  auto step_over = [](std::string_view source, expr::Type type) {
    return std::make_shared<stages::ExpressionStep>("keep", expr::Expression::compile(source, type), stages::OnError::skip,
                                                    std::make_shared<stages::Failures>());
  };
  {
    System system;
    auto step = step_over("10 / (x - 3) < 4", expr::Type::integer);
    auto sink = from(system, std::vector<std::int64_t>(keys)) | via<stages::FilterStage<std::int64_t>>(step).with({.max_demand = 16}) |
                into<test::RecordingConsumer<std::int64_t>>();
    system.wait();
    CHECK(sink->events() == kept_keys);
    CHECK(step->skipped() == 2);
  }
  {
    std::vector<std::string> words;
    for (std::int64_t key : keys) words.push_back(std::string(static_cast<std::size_t>(key), 'w') + std::string(20, '-'));
    System system;
    auto step = step_over("10 / (len(x) - 23) < 4", expr::Type::string);
    auto sink = from(system, std::move(words)) | via<stages::FilterStage<std::string>>(step).with({.max_demand = 16}) |
                into<test::RecordingConsumer<std::string>>();
    system.wait();
    std::vector<std::string> expected;
    for (std::int64_t key : kept_keys) expected.push_back(std::string(static_cast<std::size_t>(key), 'w') + std::string(20, '-'));
    CHECK(sink->events() == expected);
    CHECK(step->skipped() == 2);
  }
}

TEST_CASE("a drain leaves a dead-letter source running until its feeders stop: a letter sent meanwhile arrives") {
  ManualScheduler scheduler;
  System system(scheduler);
  auto letters = system.spawn<stages::DeadLetterSource>("dead_letter", std::size_t{1});
  auto feeder = system.spawn<test::QueueProducer<>>("feeder");
  auto sink = system.spawn<test::RecordingConsumer<std::string>>("sink");
  system.subscribe(sink, letters);
  system.monitor(letters.core(), feeder.core());
  scheduler.run_until_idle();
  // The drain completes the feeder; the letter comes after the drain, before the feeder's end.
  system.drain();
  system.send_info(letters, stages::DeadLetterSource::Letter{"feeder: failed: 7"});
  system.wait();
  CHECK(sink->batches == std::vector<std::vector<std::string>>{{"feeder: failed: 7"}});
}
