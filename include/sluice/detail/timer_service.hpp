#pragma once
// One thread that runs callbacks at deadlines: behind send_after and task timeouts.
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace sluice::detail {

// `delay` from now, saturated: a delay of nanoseconds::max() (OTP's :infinity) is a deadline
// that never comes, not one that overflowed into the past.
inline std::chrono::steady_clock::time_point deadline_after(std::chrono::nanoseconds delay) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point now = Clock::now();
  return delay >= Clock::time_point::max() - now ? Clock::time_point::max() : now + delay;
}

class TimerService {
 public:
  using Clock = std::chrono::steady_clock;
  using TimerId = std::uint64_t;

  TimerService() = default;
  TimerService(const TimerService&) = delete;
  TimerService& operator=(const TimerService&) = delete;
  // Joins the thread; timers not yet due are dropped without running.
  ~TimerService();

  // Runs `callback` on the timer thread at `deadline`. Callbacks must be short (post a message).
  // The thread starts with the first timer, so that a program without timers has none.
  TimerId schedule(Clock::time_point deadline, std::function<void()> callback);
  TimerId schedule_after(std::chrono::nanoseconds delay, std::function<void()> callback) {
    return schedule(deadline_after(delay), std::move(callback));
  }
  // True when the timer was cancelled before it ran.
  bool cancel(TimerId id);
  // Stops the thread and runs every pending callback now, in deadline order; callbacks
  // scheduled from then on run at once. For timers that resume coroutines, which must run to
  // their end to free what they hold.
  void fire_all_now();
  // Deadlines held, live or cancelled: what the service's memory grows with.
  std::size_t held() {
    std::lock_guard lock(mutex_);
    return deadlines_.size();
  }

 private:
  void run(std::stop_token stop);
  using Deadline = std::pair<Clock::time_point, TimerId>;
  // Pops the earliest deadline.
  Deadline pop_deadline();
  // Drops the deadlines of cancelled timers once they outnumber the live ones: a stage that
  // cancels most of its timers (a task timeout per task) would otherwise keep one entry per
  // timer until its deadline, however long.
  void compact_if_mostly_cancelled();

  std::mutex mutex_;
  std::condition_variable_any wake_;
  // A min-heap of deadlines (std::greater), and the callbacks of the live ones (a cancelled id
  // has none). A vector rather than a priority_queue, so that cancelled entries can be dropped.
  std::vector<Deadline> deadlines_;
  std::map<TimerId, std::function<void()>> callbacks_;
  TimerId next_id_ = 1;
  bool firing_now_ = false;
  std::jthread thread_;  // last: stopped and joined before the rest is destroyed
};

}  // namespace sluice::detail
