#pragma once
// How a producer shares its events among its consumers.
#include <sluice/detail/batch_pool.hpp>
#include <sluice/subscription.hpp>

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <vector>

namespace sluice::detail {

class ActorCore;

// The typed receiving end of a subscription.
template <class T>
class Inlet {
 public:
  virtual void post_events(SubscriptionId id, Batch<T>&& events, BatchPool<T>* pool) = 0;

 protected:
  ~Inlet() = default;
};

template <class T>
struct ConsumerSlot {
  SubscriptionId id;
  ActorCore* actor;
  Inlet<T>* inlet;
  std::size_t demand = 0;  // events asked for and not yet sent
};

template <class T>
class Dispatcher {
 public:
  virtual ~Dispatcher() = default;
  virtual void subscribe(ConsumerSlot<T> consumer) = 0;
  // Records an ask; returns the demand the producer must now serve (from its buffer, then
  // handle_demand).
  virtual std::size_t ask(SubscriptionId id, std::size_t count) = 0;
  virtual void cancel(SubscriptionId id) = 0;
  // Sends what demand allows from the front of `batch`; what no consumer has demand for stays
  // in `batch`, in order. Returns the number of events sent.
  virtual std::size_t dispatch(Batch<T>& batch, BatchPool<T>& pool) = 0;
  virtual const std::vector<ConsumerSlot<T>>& consumers() const noexcept = 0;
};

// GenStage's DemandDispatcher: each batch goes to the consumer with the largest outstanding
// demand, up to that demand, then to the next; ties keep subscription order.
template <class T>
class DemandDispatcher final : public Dispatcher<T> {
 public:
  void subscribe(ConsumerSlot<T> consumer) override { consumers_.push_back(consumer); }

  std::size_t ask(SubscriptionId id, std::size_t count) override {
    auto slot = find(id);
    if (slot == consumers_.end()) return 0;
    slot->demand += count;
    return count;
  }

  void cancel(SubscriptionId id) override {
    auto slot = find(id);
    if (slot != consumers_.end()) consumers_.erase(slot);
  }

  std::size_t dispatch(Batch<T>& batch, BatchPool<T>& pool) override {
    const std::size_t total = batch.size();
    std::size_t sent = 0;
    while (sent < total) {
      auto best = std::max_element(consumers_.begin(), consumers_.end(),
                                   [](const auto& a, const auto& b) { return a.demand < b.demand; });
      if (best == consumers_.end() || best->demand == 0) break;
      const std::size_t count = std::min(best->demand, total - sent);
      best->demand -= count;
      if (sent == 0 && count == total) {
        // The common case: the whole batch fits one consumer's demand and moves as it is.
        best->inlet->post_events(best->id, std::move(batch), &pool);
        batch = {};
        return total;
      }
      Batch<T> part = pool.acquire();
      auto from = batch.begin() + static_cast<std::ptrdiff_t>(sent);
      part.insert(part.end(), std::make_move_iterator(from),
                  std::make_move_iterator(from + static_cast<std::ptrdiff_t>(count)));
      best->inlet->post_events(best->id, std::move(part), &pool);
      sent += count;
    }
    batch.erase(batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(sent));
    return sent;
  }

  const std::vector<ConsumerSlot<T>>& consumers() const noexcept override { return consumers_; }

 private:
  typename std::vector<ConsumerSlot<T>>::iterator find(SubscriptionId id) {
    return std::find_if(consumers_.begin(), consumers_.end(), [id](const auto& c) { return c.id == id; });
  }

  std::vector<ConsumerSlot<T>> consumers_;
};

}  // namespace sluice::detail
