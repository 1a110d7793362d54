#include <sluice/detail/timer_service.hpp>

#include <algorithm>

namespace sluice::detail {

TimerService::~TimerService() {
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
}

TimerService::TimerId TimerService::schedule(Clock::time_point deadline, std::function<void()> callback) {
  std::unique_lock lock(mutex_);
  if (firing_now_) {
    lock.unlock();
    callback();
    return 0;
  }
  const TimerId id = next_id_++;
  callbacks_.emplace(id, std::move(callback));
  deadlines_.emplace_back(deadline, id);
  std::push_heap(deadlines_.begin(), deadlines_.end(), std::greater<>());
  if (!thread_.joinable()) thread_ = std::jthread([this](std::stop_token stop) { run(stop); });
  wake_.notify_one();
  return id;
}

void TimerService::fire_all_now() {
  {
    std::lock_guard lock(mutex_);
    firing_now_ = true;
  }
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
  for (;;) {
    std::function<void()> callback;
    {
      std::lock_guard lock(mutex_);
      if (deadlines_.empty()) return;
      auto found = callbacks_.extract(pop_deadline().second);
      if (found.empty()) continue;
      callback = std::move(found.mapped());
    }
    callback();
  }
}

bool TimerService::cancel(TimerId id) {
  decltype(callbacks_)::node_type cancelled;
  {
    std::lock_guard lock(mutex_);
    cancelled = callbacks_.extract(id);
    if (!cancelled.empty()) compact_if_mostly_cancelled();
  }
  // Destroyed unlocked: the callback may hold the last handle to a stage, whose destructor may
  // use timers too.
  return !cancelled.empty();
}

void TimerService::run(std::stop_token stop) {
  std::unique_lock lock(mutex_);
  while (!stop.stop_requested()) {
    if (deadlines_.empty()) {
      wake_.wait(lock, stop, [this] { return !deadlines_.empty(); });
      continue;
    }
    const auto [deadline, id] = deadlines_.front();
    if (Clock::now() < deadline) {
      // Woken early by a nearer timer or by stop: look again. Compaction may empty the heap.
      wake_.wait_until(lock, stop, deadline,
                       [this, deadline = deadline] { return deadlines_.empty() || deadlines_.front().first < deadline; });
      continue;
    }
    pop_deadline();
    auto callback = callbacks_.extract(id);
    if (callback.empty()) continue;  // cancelled
    lock.unlock();
    callback.mapped()();
    callback = {};  // unlocked, as in cancel()
    lock.lock();
  }
}

TimerService::Deadline TimerService::pop_deadline() {
  std::pop_heap(deadlines_.begin(), deadlines_.end(), std::greater<>());
  const Deadline earliest = deadlines_.back();
  deadlines_.pop_back();
  return earliest;
}

void TimerService::compact_if_mostly_cancelled() {
  // Amortized: a pass over n entries comes after at least n / 2 cancels.
  if (deadlines_.size() < 64 || deadlines_.size() <= 2 * callbacks_.size()) return;
  std::erase_if(deadlines_, [this](const Deadline& entry) { return !callbacks_.contains(entry.second); });
  std::make_heap(deadlines_.begin(), deadlines_.end(), std::greater<>());
}

}  // namespace sluice::detail
