#pragma once
// Sums the events it receives (uint64, wrapping modulo 2^64).
#include <sluice/stage.hpp>

#include <cstdint>
#include <span>

namespace sluice::stages {

class SumConsumer final : public Consumer<std::int64_t> {
 public:
  void handle_events(std::span<std::int64_t> events) override {
    sum_ = add_all(sum_, events);
    count_ += events.size();
  }

  // The loop itself, which the benchmark's peers run too (see NumberProcessor): `sum` plus every
  // event, modulo 2^64. Unrolled, as NumberProducer::fill_from is.
  static std::uint64_t add_all(std::uint64_t sum, std::span<const std::int64_t> events) {
#pragma GCC unroll 4
    for (std::int64_t x : events) sum += static_cast<std::uint64_t>(x);
    return sum;
  }

  std::uint64_t sum() const noexcept { return sum_; }
  std::uint64_t count() const noexcept { return count_; }

 private:
  std::uint64_t sum_ = 0;
  std::uint64_t count_ = 0;
};

}  // namespace sluice::stages
