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
    out.reserve(events.size());
    for (std::int64_t x : events) {
      // Unsigned square: wraps instead of overflowing for |x| >= 2^32, as the benchmark's peers do.
      const auto square = static_cast<std::int64_t>(static_cast<std::uint64_t>(x) * static_cast<std::uint64_t>(x));
      if (square < limit_) out.emit(square);
    }
  }

 private:
  std::int64_t limit_;
};

}  // namespace sluice::stages
