#pragma once
// GenStage's classic NumberProcessor: squares each event and keeps the squares below a limit.
#include <sluice/stage.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

namespace sluice::stages {

class NumberProcessor final : public ProducerConsumer<std::int64_t, std::int64_t> {
 public:
  explicit NumberProcessor(std::int64_t limit = 1000) : limit_(limit) {}

  void handle_events(std::span<std::int64_t> events, Emitter<std::int64_t>& out) override {
    out.emit_bulk(events.size(), [&](std::span<std::int64_t> slots) { return keep_squares_below(events, slots.data(), limit_); });
  }

  // The loop itself, which the benchmark's peers (bench/square_filter/) run too, so that their
  // ratios measure the frameworks rather than their loops. Writes the square of each event to
  // `out` and moves on only past those below `limit`: no branch per event. So `out` needs room
  // for every event, and may be `events.data()` (squaring in place), whose slots are read before
  // they are written. Returns how many squares it kept. Out of line: inlined into
  // handle_events, GCC addressed each slot as the batch's start plus its old size plus the
  // index, an extra instruction an event (bench/instructions.sh: 14.1 to 13.1 at default
  // demand), and the peers then ran a different loop from the stage's.
  [[gnu::noinline]] static std::size_t keep_squares_below(std::span<const std::int64_t> events, std::int64_t* out, std::int64_t limit) {
    // The signed test `square < limit`, made unsigned by flipping the sign bits: GCC then adds the
    // comparison's carry (cmp, adc) instead of setting, widening and adding a flag. Unrolled, the
    // loop's own increment and test are paid once per four events.
    constexpr std::uint64_t sign = std::uint64_t{1} << 63;
    const std::uint64_t biased_limit = static_cast<std::uint64_t>(limit) ^ sign;
    std::size_t kept_count = 0;
#pragma GCC unroll 4
    for (std::int64_t x : events) {
      // Unsigned square: wraps instead of overflowing for |x| >= 2^32.
      const std::uint64_t square = static_cast<std::uint64_t>(x) * static_cast<std::uint64_t>(x);
      out[kept_count] = static_cast<std::int64_t>(square);
      kept_count += (square ^ sign) < biased_limit ? 1 : 0;
    }
    return kept_count;
  }

 private:
  std::int64_t limit_;
};

}  // namespace sluice::stages
