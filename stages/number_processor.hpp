#pragma once
// GenStage's classic NumberProcessor: squares each event and keeps the squares below a limit.
#include <sluice/stage.hpp>

#include <cstdint>
#include <span>

namespace sluice::stages {

class NumberProcessor final : public ProducerConsumer<std::int64_t, std::int64_t> {
 public:
  explicit NumberProcessor(std::int64_t limit = 1000) : limit_(limit) {}

  void handle_events(std::span<std::int64_t> events, Emitter<std::int64_t>& out) override {
    // A local copy: stores into the batch could alias the member, forcing a reload per event.
    const std::int64_t limit = limit_;
    out.emit_bulk(events.size(), [&](std::span<std::int64_t> slots) {
      // Branch-free filter: every square is written, and only the kept ones advance the cursor.
      std::size_t kept = 0;
      for (std::int64_t x : events) {
        // Unsigned square: wraps instead of overflowing for |x| >= 2^32, as the benchmark's peers do.
        const auto square = static_cast<std::int64_t>(static_cast<std::uint64_t>(x) * static_cast<std::uint64_t>(x));
        slots[kept] = square;
        kept += square < limit ? 1 : 0;
      }
      return kept;
    });
  }

 private:
  std::int64_t limit_;
};

}  // namespace sluice::stages
