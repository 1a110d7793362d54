// The built-in stages of YAML pipelines, where their edge cases are easier to reach from C++
// than from a YAML file.
#include <sluice/pipeline.hpp>
#include <sluice/stages/value_stages.hpp>

#include <doctest/doctest.h>

#include <limits>
#include <optional>
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

TEST_CASE("range: a step of 0 is refused") {
  CHECK_THROWS_AS(stages::RangeSource(1, 2, 0), std::invalid_argument);
}
