#pragma once
// Every tunable default of sluice, in one place (as CAF's defaults.hpp).
#include <chrono>
#include <cstddef>
#include <thread>

namespace sluice::defaults {

// GenStage's subscription defaults: max_demand 1000, min_demand = max_demand / 2.
inline constexpr std::size_t max_demand = 1000;

// The most parallel copies a pipeline step may have (StepOptions::copies): each copy is a stage
// with its own batches, so a count far beyond the cores is a mistake, not a setting.
inline constexpr std::size_t max_copies = 1024;

// GenStage's producer buffer: 10,000 events, keeping the last ones.
inline constexpr std::size_t buffer_size = 10'000;
// A buffer_size of no limit (GenStage's :infinity), the default of producer-consumers as in
// GenStage: one input chunk may make more events than its consumers asked for, and a limit
// would drop them.
inline constexpr std::size_t unlimited_buffer = static_cast<std::size_t>(-1);

// Messages one stage handles before it yields its worker to other stages. A message is a
// whole batch, so this bounds the work per slice without costing a reschedule per event.
inline constexpr std::size_t max_throughput = 32;

// How many consumers deep a stage may run an idle consumer at once, on its own thread, when it
// sends it a batch (instead of queuing the batch and scheduling the consumer): enough for a
// producer, a producer-consumer and a consumer to pass one event down without a trip through
// the scheduler, and a bound on the stack a long chain can take.
inline constexpr std::size_t max_hand_off_depth = 2;

// How long a stage queued on a busy worker waits at least before an idle worker takes it, and
// how soon the idle worker first looks (as Go's scheduler delays stealing a P's runnext); it
// looks less often while the busy worker keeps up, up to every 16 steal delays: a stage woken
// by short slices then runs on the core whose cache holds the batch it was sent, while one
// behind a long slice, or a row of short ones, moves after this wait or a few times it. The
// idle worker had nothing to do, so the wait costs no work.
inline constexpr std::chrono::nanoseconds steal_delay{2000};

// Spare batch vectors a producer keeps for reuse; more than the usual number of batches in
// flight on one edge (max_demand / (max_demand - min_demand) chunks plus one being filled).
inline constexpr std::size_t batch_pool_size = 8;

// GenServer.call's default timeout.
inline constexpr std::chrono::milliseconds call_timeout{5000};

// Task.async_stream's defaults: as many tasks at once as there are hardware threads, and a
// timeout of 5 s per task, measured from the task's start.
inline std::size_t async_max_concurrency() noexcept {
  const unsigned threads = std::thread::hardware_concurrency();
  return threads == 0 ? 1 : threads;
}
inline constexpr std::chrono::milliseconds async_timeout{5000};

// The most threads that stand in, at once, for async_stream consumers asleep on oneTBB workers
// (a stage's callback, a CPU task; README: "A stand-in for a consumer on a worker"), one each:
// as many consumers as this can sleep there at once, streams nested in CPU tasks included,
// before a task may wait for a worker oneTBB does not wake.
inline constexpr std::size_t max_stand_ins = 64;

// async_stream runs CPU tasks shorter than this (on average) on the consuming thread, since
// handing a task to another core and its result back costs about this much.
inline constexpr std::chrono::nanoseconds async_inline_task{1000};

}  // namespace sluice::defaults
