#pragma once
// Stages that record what the protocol did, for exact assertions.
#include <sluice/sluice.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <span>
#include <stop_token>
#include <string>
#include <vector>

namespace sluice::test {

using Batch = std::vector<std::int64_t>;

// A consumer that records every batch handle_events received, and its subscriptions.
template <class T = std::int64_t>
class RecordingConsumer final : public Consumer<T> {
 public:
  explicit RecordingConsumer(DemandMode mode = DemandMode::automatic) : mode_(mode) {}

  void handle_events(std::span<T> events) override { batches.emplace_back(events.begin(), events.end()); }
  DemandMode handle_subscribe(const SubscriptionInfo& info) override {
    subscriptions.push_back(info.id);
    return mode_;
  }
  void handle_cancel(const SubscriptionInfo&, const ExitReason& reason) override { cancels.push_back(reason); }
  // Manual demand: send_info(consumer, std::size_t{n}) asks for n on the first subscription.
  void handle_info(std::any& message) override {
    this->context().ask(subscriptions.front(), std::any_cast<std::size_t>(message));
  }

  std::size_t received() const {
    std::size_t n = 0;
    for (const auto& batch : batches) n += batch.size();
    return n;
  }
  // Every event received, in order, whatever the batches.
  std::vector<T> events() const {
    std::vector<T> all;
    for (const auto& batch : batches) all.insert(all.end(), batch.begin(), batch.end());
    return all;
  }

  std::vector<std::vector<T>> batches;
  std::vector<SubscriptionId> subscriptions;
  std::vector<ExitReason> cancels;

 private:
  DemandMode mode_;
};

// A producer that records each handle_demand and emits whatever handle_info is sent
// (a std::vector<T>), the way GenStage tests queue events into a producer by a call.
template <class T = std::int64_t>
class QueueProducer final : public Producer<T> {
 public:
  void handle_demand(std::size_t demand, Emitter<T>&) override { demands.push_back(demand); }
  void handle_info(std::any& message, Emitter<T>& out) override {
    out.emit_all(std::any_cast<std::vector<T>&>(message));
  }
  void handle_cancel(const SubscriptionInfo&, const ExitReason& reason) override { cancels.push_back(reason); }

  std::vector<std::size_t> demands;
  std::vector<ExitReason> cancels;
};

// Emits consecutive integers on demand and records each demand; a call returns the demands.
class CountingProducer final : public Producer<std::int64_t> {
 public:
  void handle_demand(std::size_t demand, Emitter<std::int64_t>& out) override {
    demands.push_back(demand);
    for (std::size_t i = 0; i < demand; ++i) out.emit(next++);
  }
  std::any handle_call(std::any&, Emitter<std::int64_t>&) override { return demands; }

  std::vector<std::size_t> demands;
  std::int64_t next = 0;
};

// Passes events through unchanged, counting them.
class Identity final : public ProducerConsumer<std::int64_t, std::int64_t> {
 public:
  void handle_events(std::span<std::int64_t> events, Emitter<std::int64_t>& out) override {
    handled += events.size();
    out.emit_all(events);
  }
  std::size_t handled = 0;
};

// A flag one thread raises and others wait for.
class Flag {
 public:
  void raise() {
    std::lock_guard lock(mutex_);
    raised_ = true;
    changed_.notify_all();
  }
  void wait() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return raised_; });
  }
  // Waits until raised or the stop token fires; true if raised.
  bool wait(std::stop_token stop) {
    std::unique_lock lock(mutex_);
    return changed_.wait(lock, stop, [this] { return raised_; });
  }
  // Waits until raised, or at most `bound` (for a failing run, which would otherwise hang);
  // true if raised.
  bool wait_for(std::chrono::nanoseconds bound) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, bound, [this] { return raised_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable_any changed_;
  bool raised_ = false;
};

inline Batch iota_batch(std::int64_t first, std::int64_t last) {
  Batch batch;
  for (std::int64_t i = first; i <= last; ++i) batch.push_back(i);
  return batch;
}

}  // namespace sluice::test
