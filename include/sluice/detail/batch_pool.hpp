#pragma once
// Reuse of batch vectors: a consumer hands each emptied batch back to the producer that sent
// it, so a steady stream allocates no batches. (A batch handed off at once never leaves the
// producer's vector: see HandedOff.)
#include <sluice/defaults.hpp>
#include <sluice/detail/batch.hpp>

#include <oneapi/tbb/spin_mutex.h>

#include <vector>

namespace sluice::detail {

template <class T>
class BatchPool {
 public:
  Batch<T> acquire() {
    oneapi::tbb::spin_mutex::scoped_lock lock(mutex_);
    if (spares_.empty()) return {};
    Batch<T> batch = std::move(spares_.back());
    spares_.pop_back();
    return batch;
  }

  void release(Batch<T>&& batch) {
    if (batch.capacity() == 0) return;
    batch.clear();
    oneapi::tbb::spin_mutex::scoped_lock lock(mutex_);
    if (spares_.size() < defaults::batch_pool_size) spares_.push_back(std::move(batch));
  }

 private:
  oneapi::tbb::spin_mutex mutex_;  // guards a push_back or pop_back
  std::vector<Batch<T>> spares_;
};

}  // namespace sluice::detail
