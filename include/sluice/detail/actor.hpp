#pragma once
// The type-erased actor core: a name, a mailbox, and a slice the scheduler runs.
#include <sluice/detail/messages.hpp>
#include <sluice/exit_reason.hpp>
#include <sluice/scheduler.hpp>
#include <sluice/stage_stats.hpp>

#include <atomic>
#include <cstddef>
#include <oneapi/tbb/spin_mutex.h>

#include <string>
#include <utility>
#include <vector>

namespace sluice::detail {

class ActorCore;
class TimerService;

// Told when a stage stops, once, from the stage's own slice; and the owner of shared services.
class StageHost {
 public:
  virtual void stage_stopped(ActorCore& stage, const ExitReason& reason) = 0;
  virtual TimerService& timers() = 0;
  // Whether stages time their slices (StageStats::busy_ns).
  bool measures_busy_time() const noexcept { return measure_busy_time_.load(std::memory_order_relaxed); }

 protected:
  ~StageHost() = default;
  std::atomic<bool> measure_busy_time_{false};
};

class ActorCore {
 public:
  ActorCore(Scheduler& scheduler, StageHost& host, std::string name)
      : scheduler_(scheduler), host_(host), name_(std::move(name)) {}
  ActorCore(const ActorCore&) = delete;
  ActorCore& operator=(const ActorCore&) = delete;
  virtual ~ActorCore() = default;

  // Handles up to defaults::max_throughput messages; true when messages remain, in which case
  // the actor stays scheduled and the scheduler must run it again.
  virtual bool run_slice() = 0;
  // Any stage can send control messages to any other, whatever its event types.
  virtual void post(Control&& message) = 0;

  const std::string& name() const noexcept { return name_; }
  const StageStats& stats() const noexcept { return stats_; }

  // The supervisor told when this stage stops (none: the stage is linked to its System). Set
  // before the System adopts the stage, and never changed after.
  ActorCore* supervisor() const noexcept { return supervisor_; }
  void set_supervisor(ActorCore* supervisor) noexcept { supervisor_ = supervisor; }

 protected:
  ActorCore* supervisor_ = nullptr;
  Scheduler& scheduler_;
  StageHost& host_;
  std::string name_;
  StageStats stats_;
};

// A multi-producer, single-consumer mailbox. Senders append under a lock; the running slice
// swaps the whole backlog out with one lock and works through it without any. Both vectors
// keep their capacity, so a steady stream of messages allocates nothing. The lock is oneTBB's
// spin_mutex: it guards a push_back or a swap, far shorter than a futex round trip.
template <class Message>
class Mailbox {
 public:
  // Returns true when the actor was idle: the caller must then schedule it.
  bool push(Message&& message) {
    oneapi::tbb::spin_mutex::scoped_lock lock(mutex_);
    incoming_.push_back(std::move(message));
    if (scheduled_) return false;
    scheduled_ = true;
    return true;
  }

  // The next message for the running slice. nullptr means there is none, and then the actor
  // has gone idle in the same step: the next push schedules it again.
  Message* next() {
    if (next_ == draining_.size()) {
      draining_.clear();
      next_ = 0;
      oneapi::tbb::spin_mutex::scoped_lock lock(mutex_);
      std::swap(incoming_, draining_);
      if (draining_.empty()) {
        scheduled_ = false;
        return nullptr;
      }
    }
    return &draining_[next_++];
  }

  // Ends a slice cut short by its budget: true when messages remain (the actor stays
  // scheduled), false when it went idle.
  bool finish_slice() {
    if (next_ < draining_.size()) return true;
    draining_.clear();
    next_ = 0;
    oneapi::tbb::spin_mutex::scoped_lock lock(mutex_);
    if (!incoming_.empty()) return true;
    scheduled_ = false;
    return false;
  }

 private:
  oneapi::tbb::spin_mutex mutex_;
  std::vector<Message> incoming_;  // guarded by mutex_
  bool scheduled_ = false;         // guarded by mutex_
  std::vector<Message> draining_;  // the running slice's alone
  std::size_t next_ = 0;
};

}  // namespace sluice::detail
