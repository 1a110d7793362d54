#include <sluice/detail/blocking_pool.hpp>

namespace sluice::detail {

BlockingPool::~BlockingPool() {
  std::vector<std::jthread> threads;
  {
    std::lock_guard lock(mutex_);
    threads.swap(threads_);
  }
  for (auto& thread : threads) thread.request_stop();
  // jthread joins on destruction; each thread drains the queue before it leaves.
}

void BlockingPool::submit(std::function<void()> task) {
  std::lock_guard lock(mutex_);
  // Every thread busy: one more, started first, so that a throw leaves the task unqueued (the
  // caller then knows it will not run).
  const bool start_thread = idle_ <= tasks_.size();
  if (start_thread) threads_.emplace_back([this](std::stop_token stop) { work(stop); });
  tasks_.push_back(std::move(task));
  if (!start_thread) ready_.notify_one();
}

std::size_t BlockingPool::threads() const {
  std::lock_guard lock(mutex_);
  return threads_.size();
}

void BlockingPool::work(std::stop_token stop) {
  std::unique_lock lock(mutex_);
  for (;;) {
    ++idle_;
    const bool has_task = ready_.wait(lock, stop, [this] { return !tasks_.empty(); });
    --idle_;
    if (!has_task) return;  // stopping, and nothing left to run
    auto task = std::move(tasks_.front());
    tasks_.pop_front();
    lock.unlock();
    task();
    // Destroyed unlocked: the task may hold the last handle to a stage, whose destructor may
    // start blocking tasks too.
    task = nullptr;
    lock.lock();
  }
}

}  // namespace sluice::detail
