#pragma once
// GenStage's classic NumberProducer: emits first..last on demand, then completes.
#include <sluice/stage.hpp>

#include <cstdint>
#include <limits>
#include <span>

namespace sluice::stages {

class NumberProducer final : public Producer<std::int64_t> {
 public:
  // `last` defaults to an endless stream (up to the int64 limit).
  explicit NumberProducer(std::int64_t first = 0, std::int64_t last = std::numeric_limits<std::int64_t>::max())
      : next_(first), last_(last), exhausted_(first > last) {}

  void handle_demand(std::size_t demand, Emitter<std::int64_t>& out) override {
    if (!exhausted_) {
      // Unsigned, so that first..last may span the whole int64 range without overflow.
      const std::uint64_t left_after_next = static_cast<std::uint64_t>(last_) - static_cast<std::uint64_t>(next_);
      const bool takes_rest = demand - 1 >= left_after_next;
      const std::size_t count = takes_rest ? static_cast<std::size_t>(left_after_next) + 1 : demand;
      // Offsets from next_, so that no value past last_ is ever computed.
      out.emit_bulk(count, [first = next_](std::span<std::int64_t> slots) {
        fill_from(slots, first);
        return slots.size();
      });
      if (takes_rest) {
        exhausted_ = true;
      } else {
        next_ += static_cast<std::int64_t>(count);
      }
    }
    if (exhausted_) out.done();
  }

  // The loop itself, which the benchmark's peers run too (see NumberProcessor): first,
  // first + 1, ... into `slots`. Unrolled: GCC vectorises it, but by itself pays the loop's
  // increment and test for every two events.
  static void fill_from(std::span<std::int64_t> slots, std::int64_t first) {
#pragma GCC unroll 4
    for (std::size_t i = 0; i < slots.size(); ++i) slots[i] = first + static_cast<std::int64_t>(i);
  }

 private:
  std::int64_t next_;
  std::int64_t last_;
  bool exhausted_;
};

}  // namespace sluice::stages
