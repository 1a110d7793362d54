#pragma once
// Threads for work that may block (sleeps, file or socket I/O, waiting on others), kept off
// the oneTBB workers so that it cannot starve the stages. A thread is started whenever every
// thread is busy, and idle threads are reused; callers bound how much they submit at once
// (ConsumerSupervisor by its max_demand). Hand-written: oneTBB's arenas are for CPU work, and
// the pools Debian's libraries offer (asio's thread_pool) have a fixed size.
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sluice::detail {

class BlockingPool {
 public:
  BlockingPool() = default;
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;
  // Runs what was submitted, then joins every thread. Tasks must finish (cooperatively).
  ~BlockingPool();

  void submit(std::function<void()> task);
  std::size_t threads() const;

 private:
  void work(std::stop_token stop);

  mutable std::mutex mutex_;
  std::condition_variable_any ready_;
  std::deque<std::function<void()>> tasks_;
  std::size_t idle_ = 0;
  std::vector<std::jthread> threads_;
};

}  // namespace sluice::detail
