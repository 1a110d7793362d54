#pragma once
// Per-stage counters, readable while the pipeline runs.
#include <atomic>
#include <cstdint>

namespace sluice {

struct StageStatsSnapshot {
  std::uint64_t events_in = 0;   // events received from producers
  std::uint64_t events_out = 0;  // events delivered to consumers
  std::uint64_t discarded = 0;   // events dropped from a full buffer
  std::uint64_t buffered = 0;    // events waiting in the buffer now
  std::uint64_t demand_owed = 0;   // demand its consumers made that it has not met yet
  std::uint64_t demand_asked = 0;  // events it asked its producers for and has not received yet
  std::uint64_t busy_ns = 0;       // time spent handling messages, if the System measures it
};

// Updated once per batch or message with relaxed atomics: cheap, and consistent enough for monitoring.
// Only the thread running the stage writes them, so a counter grows by a relaxed load and store
// rather than a read-modify-write: no locked instruction on the event path.
class StageStats {
 public:
  // Inlined: GCC left these out of line on the event path.
  [[gnu::always_inline]] void add_in(std::uint64_t n) noexcept { add(events_in_, n); }
  [[gnu::always_inline]] void add_out(std::uint64_t n) noexcept { add(events_out_, n); }
  void add_discarded(std::uint64_t n) noexcept { add(discarded_, n); }
  void set_buffered(std::uint64_t n) noexcept { buffered_.store(n, std::memory_order_relaxed); }
  void set_demand(std::uint64_t owed, std::uint64_t asked) noexcept {
    demand_owed_.store(owed, std::memory_order_relaxed);
    demand_asked_.store(asked, std::memory_order_relaxed);
  }
  void add_busy(std::uint64_t ns) noexcept { add(busy_ns_, ns); }

  StageStatsSnapshot snapshot() const noexcept {
    return {events_in_.load(std::memory_order_relaxed), events_out_.load(std::memory_order_relaxed),
            discarded_.load(std::memory_order_relaxed), buffered_.load(std::memory_order_relaxed),
            demand_owed_.load(std::memory_order_relaxed), demand_asked_.load(std::memory_order_relaxed),
            busy_ns_.load(std::memory_order_relaxed)};
  }

 private:
  [[gnu::always_inline]] static void add(std::atomic<std::uint64_t>& counter, std::uint64_t n) noexcept {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  std::atomic<std::uint64_t> events_in_{0};
  std::atomic<std::uint64_t> events_out_{0};
  std::atomic<std::uint64_t> discarded_{0};
  std::atomic<std::uint64_t> buffered_{0};
  std::atomic<std::uint64_t> demand_owed_{0};
  std::atomic<std::uint64_t> demand_asked_{0};
  std::atomic<std::uint64_t> busy_ns_{0};
};

}  // namespace sluice
