#pragma once
// A deterministic scheduler for tests: nothing runs until the test steps it, on the test's
// thread, one stage slice at a time in FIFO order (with the consumers that slice hands batches
// to at once, HandOff::at_once). Demand accounting can then be checked exactly after each step,
// with no threads and no sleeps.
#include <sluice/scheduler.hpp>

#include <oneapi/tbb/spin_mutex.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>

namespace sluice {

class ManualScheduler final : public Scheduler {
 public:
  // By default a step is one message (and what a consumer handed it at once does within it), so
  // a test can observe the state after every message.
  // A throughput of 0 would run nothing; it counts as 1.
  explicit ManualScheduler(std::size_t throughput = 1) : throughput_(std::max<std::size_t>(throughput, 1)) {}

  // Other threads may schedule too (the timer thread, a thread of the test's own): the queue
  // is locked, while the slices themselves run only on the test's thread.
  void schedule(detail::ActorCore& actor) noexcept override { enqueue({&actor, {}}); }
  // Tasks queue with the stages, and run one per step in the same FIFO order.
  void run_task(std::function<void()> task) override { enqueue({nullptr, std::move(task)}); }
  void run_blocking(std::function<void()> task) override { run_task(std::move(task)); }

  // Runs one slice of the stage at the head of the queue; false when nothing is ready.
  bool run_once();
  // Runs slices until no stage has work, or until `limit` slices ran; returns how many ran.
  std::size_t run_until_idle(std::size_t limit = static_cast<std::size_t>(-1));
  // As run_until_idle, but leaves stages for which `hold` is true unrun (they stay queued):
  // a test can stand for a consumer that is busy or blocked. A consumer subscribed with
  // HandOff::at_once may still run inside its producer's slice: hold only queued ones.
  std::size_t run_until_idle_except(const std::function<bool(const detail::ActorCore&)>& hold);

  // True once a slice or task has run: stages are running from then on.
  bool has_run() const noexcept { return has_run_.load(std::memory_order_relaxed); }

  std::size_t ready() const {
    std::lock_guard lock(mutex_);
    return ready_.size();
  }
  std::size_t throughput() const noexcept override { return throughput_; }

 private:
  std::size_t throughput_;
  struct Ready {
    detail::ActorCore* actor;    // a stage's slice to run, or
    std::function<void()> task;  // a task, when actor is null
  };
  void enqueue(Ready ready) {
    std::lock_guard lock(mutex_);
    ready_.push_back(std::move(ready));
  }
  // The front of the queue, if any.
  std::optional<Ready> take();
  // Runs one slice or task; a stage with work left goes to the back of the queue.
  void run(Ready& next);

  // A spin lock, as the mailboxes use: it guards a push or a pop, and is almost never contended,
  // so the single-thread benchmark variants pay little for it.
  mutable oneapi::tbb::spin_mutex mutex_;
  std::deque<Ready> ready_;  // guarded by mutex_
  std::atomic<bool> has_run_{false};
};

}  // namespace sluice
