#pragma once
// Reuse of batch vectors: a consumer hands each emptied batch back to the producer that sent
// it, so a steady stream allocates no batches.
#include <sluice/defaults.hpp>

#include <mutex>
#include <vector>

namespace sluice::detail {

template <class T>
class BatchPool {
 public:
  std::vector<T> acquire() {
    std::lock_guard lock(mutex_);
    if (spares_.empty()) return {};
    std::vector<T> batch = std::move(spares_.back());
    spares_.pop_back();
    return batch;
  }

  void release(std::vector<T>&& batch) {
    if (batch.capacity() == 0) return;
    batch.clear();
    std::lock_guard lock(mutex_);
    if (spares_.size() < defaults::batch_pool_size) spares_.push_back(std::move(batch));
  }

 private:
  std::mutex mutex_;
  std::vector<std::vector<T>> spares_;
};

}  // namespace sluice::detail
