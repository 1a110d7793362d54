#pragma once
// The dispatchers behind the policies of <sluice/dispatcher.hpp>. Each mirrors the state
// machine of its GenStage namesake, so that demand accounting matches GenStage's exactly.
#include <sluice/detail/actor.hpp>
#include <sluice/detail/batch.hpp>
#include <sluice/detail/batch_pool.hpp>
#include <sluice/defaults.hpp>
#include <sluice/dispatcher.hpp>
#include <sluice/subscription.hpp>

#include <algorithm>
#include <any>
#include <cstddef>
#include <deque>
#include <iterator>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace sluice::detail {

// The typed receiving end of a subscription.
template <class T>
class Inlet {
 public:
  // Takes all of `events`, leaving it empty. With `at_once` (HandOff::at_once, the producer's
  // only consumer) the consumer may handle them here and now, in place, and then `events`
  // usually keeps its capacity, for the producer's next batch. Events the consumer queues, or
  // keeps for later, are moved out, capacity and all.
  virtual void post_events(SubscriptionId id, Batch<T>& events, BatchPool<T>* pool, bool at_once) = 0;

 protected:
  ~Inlet() = default;
};

template <class T>
struct ConsumerSlot {
  SubscriptionId id;
  ActorRef actor;
  Inlet<T>* inlet;
};

template <class T>
class Dispatcher {
 public:
  virtual ~Dispatcher() = default;
  // Returns an error message when the subscription is refused, else an empty string.
  virtual std::string subscribe(const ConsumerSlot<T>& consumer, const SubscribeOptions& options) = 0;
  // Records an ask; returns the demand the producer must now serve (from its buffer, then
  // handle_demand).
  virtual std::size_t ask(SubscriptionId id, std::size_t count) = 0;
  // Forgets a consumer; returns demand the producer must now serve on the others' behalf.
  virtual std::size_t cancel(SubscriptionId id) = 0;
  // Sends what demand allows from the front of `batch`; what no consumer has demand for stays
  // in `batch`, in order. Returns the number of events that met demand: those a partition hash
  // drops leave `batch` too, but met none.
  virtual std::size_t dispatch(Batch<T>& batch, BatchPool<T>& pool) = 0;
  // Demand a dispatch gave back (broadcast selectors' rejects): the producer asks itself. Kept
  // here rather than behind a virtual call, which the producer would pay on every batch.
  bool has_credits() const noexcept { return !credits_.empty(); }
  std::vector<std::pair<SubscriptionId, std::size_t>> take_credits() { return std::exchange(credits_, {}); }
  // What the dispatcher did with events beyond dispatch()'s count, for the producer's stats:
  // events it dropped, which count as discarded as its own buffer's do, and events that met
  // demand but wait in a partition's queue, delivered (with others that met none) only on a
  // later ask. Behind a flag rather than a virtual call, which the producer would pay on every
  // batch and every ask.
  struct Tally {
    std::size_t discarded = 0;
    std::size_t held = 0;       // met demand in dispatch(), not delivered yet
    std::size_t delivered = 0;  // delivered from a queue, outside dispatch()
  };
  bool has_tally() const noexcept { return tallied_; }
  Tally take_tally() noexcept {
    tallied_ = false;
    return std::exchange(tally_, {});
  }
  virtual std::vector<ConsumerSlot<T>> consumers() const = 0;
  virtual bool has_consumers() const noexcept = 0;
  // Events the dispatcher itself still holds for a consumer (a partition's queue): a done
  // producer waits for them to be delivered before it completes.
  virtual bool holds_events() const noexcept { return false; }
  // A done producer completes: events held for no consumer go with it, counted in the tally.
  virtual void drop_unclaimed() {}

 protected:
  void tally_discarded(std::size_t count) noexcept { tally_.discarded += count, tallied_ = true; }
  void tally_held(std::size_t count) noexcept { tally_.held += count, tallied_ = true; }
  void tally_delivered(std::size_t count) noexcept { tally_.delivered += count, tallied_ = true; }

  std::vector<std::pair<SubscriptionId, std::size_t>> credits_;

 private:
  Tally tally_;
  bool tallied_ = false;
};

// Moves events [first, first + count) of `batch` into a batch from `pool` and sends it.
template <class T>
void send_slice(const ConsumerSlot<T>& consumer, Batch<T>& batch, std::size_t first, std::size_t count,
                BatchPool<T>& pool) {
  Batch<T> part = pool.acquire();
  auto from = batch.begin() + static_cast<std::ptrdiff_t>(first);
  part.insert(part.end(), std::make_move_iterator(from), std::make_move_iterator(from + static_cast<std::ptrdiff_t>(count)));
  consumer.inlet->post_events(consumer.id, part, &pool, false);
}

// --- demand ----------------------------------------------------------------------------------

template <class T>
class DemandDispatcher final : public Dispatcher<T> {
 public:
  explicit DemandDispatcher(dispatch::Demand policy) : shuffle_(policy.shuffle_demands_on_first_dispatch) {}

  std::string subscribe(const ConsumerSlot<T>& consumer, const SubscribeOptions& options) override {
    demands_.push_back({consumer, 0, options.hand_off == HandOff::at_once});
    return {};
  }

  std::size_t ask(SubscriptionId id, std::size_t count) override {
    // One consumer, the usual case, has nothing to reorder: its path stays short, with the
    // reordering out of line.
    if (demands_.size() == 1 && demands_.front().consumer.id == id) {
      demands_.front().demand += count;
    } else if (!reorder_for_ask(id, count)) {
      return 0;
    }
    // Demand that cancelled consumers had already asked for was forwarded once: not again.
    const std::size_t already_sent = std::min(pending_, count);
    pending_ -= already_sent;
    return count - already_sent;
  }

  std::size_t cancel(SubscriptionId id) override {
    auto entry = find(id);
    if (entry == demands_.end()) return 0;
    pending_ += entry->demand;
    demands_.erase(entry);
    return 0;
  }

  std::size_t dispatch(Batch<T>& batch, BatchPool<T>& pool) override {
    const std::size_t total = batch.size();
    if (demands_.size() == 1 && demands_.front().demand >= total) {
      // One consumer with room for the whole batch: it takes it as it is. A shuffle of one
      // consumer changes nothing, but it counts as the first dispatch.
      shuffle_ = false;
      Entry& only = demands_.front();
      only.demand -= total;
      only.consumer.inlet->post_events(only.consumer.id, batch, &pool, only.at_once);
      return total;
    }
    return dispatch_among(batch, pool);
  }

  std::vector<ConsumerSlot<T>> consumers() const override {
    std::vector<ConsumerSlot<T>> all;
    for (const auto& entry : demands_) all.push_back(entry.consumer);
    return all;
  }
  bool has_consumers() const noexcept override { return !demands_.empty(); }

 private:
  struct Entry {
    ConsumerSlot<T> consumer;
    std::size_t demand;
    bool at_once;  // HandOff::at_once, honoured while it is the only consumer
  };

  // Any other case: consumers served in list order, each as far as its demand goes.
  [[gnu::noinline]] std::size_t dispatch_among(Batch<T>& batch, BatchPool<T>& pool) {
    if (shuffle_) {
      std::shuffle(demands_.begin(), demands_.end(), std::mt19937(std::random_device{}()));
      shuffle_ = false;
    }
    const std::size_t total = batch.size();
    std::size_t sent = 0;
    while (sent < total && !demands_.empty() && demands_.front().demand > 0) {
      Entry head = std::move(demands_.front());
      demands_.erase(demands_.begin());
      const std::size_t count = std::min(head.demand, total - sent);
      head.demand -= count;
      if (sent == 0 && count == total) {
        // The head's demand covers the whole batch: it moves as it is.
        head.consumer.inlet->post_events(head.consumer.id, batch, &pool, false);
        add_demand(std::move(head));
        return total;
      }
      send_slice(head.consumer, batch, sent, count, pool);
      sent += count;
      add_demand(std::move(head));
    }
    batch.erase(batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(sent));
    return sent;
  }

  // Adds to a consumer's demand and moves it to its place in the list; false for an unknown id.
  [[gnu::noinline]] bool reorder_for_ask(SubscriptionId id, std::size_t count) {
    auto entry = find(id);
    if (entry == demands_.end()) return false;
    Entry updated = std::move(*entry);
    demands_.erase(entry);
    updated.demand += count;
    add_demand(std::move(updated));
    return true;
  }

  // GenStage's list order: largest demand first; an entry goes after those with equal demand.
  // Entries move, so that no consumer handle is copied (an atomic increment) per batch.
  void add_demand(Entry&& entry) {
    auto at = std::find_if(demands_.begin(), demands_.end(), [&](const Entry& e) { return entry.demand > e.demand; });
    demands_.insert(at, std::move(entry));
  }

  // A plain loop: the list is short, for which std::find_if's unrolled loop costs more than the
  // search.
  typename std::vector<Entry>::iterator find(SubscriptionId id) {
    auto entry = demands_.begin();
    while (entry != demands_.end() && entry->consumer.id != id) ++entry;
    return entry;
  }

  std::vector<Entry> demands_;
  std::size_t pending_ = 0;
  bool shuffle_;
};

// --- broadcast -------------------------------------------------------------------------------

template <class T>
class BroadcastDispatcher final : public Dispatcher<T> {
 public:
  using Selector = std::function<bool(const T&)>;

  std::string subscribe(const ConsumerSlot<T>& consumer, const SubscribeOptions& options) override {
    Selector selector;
    if (options.selector.has_value()) {
      const auto* typed = std::any_cast<Selector>(&options.selector);
      if (typed == nullptr) return "the selector's type does not match the producer's events";
      selector = *typed;
    }
    // As GenStage's :already_subscribed: twice subscribed, a consumer would get every event
    // twice. The inlet is the consumer stage itself, so it tells one consumer from another.
    const bool subscribed =
        std::any_of(entries_.begin(), entries_.end(), [&](const Entry& entry) { return entry.consumer.inlet == consumer.inlet; });
    if (subscribed) return "'" + consumer.actor->name() + "' is already subscribed";
    // A late subscriber owes the demand already forwarded for the others (it starts at -waiting).
    entries_.insert(entries_.begin(), Entry{consumer, -static_cast<long long>(waiting_), std::move(selector)});
    return {};
  }

  std::size_t ask(SubscriptionId id, std::size_t count) override {
    auto entry = find(id);
    if (entry == entries_.end()) return 0;
    entry->demand += static_cast<long long>(count);
    return forward_minimum();
  }

  std::size_t cancel(SubscriptionId id) override {
    auto entry = find(id);
    if (entry == entries_.end()) return 0;
    entries_.erase(entry);
    return forward_minimum();
  }

  std::size_t dispatch(Batch<T>& batch, BatchPool<T>& pool) override {
    // With no consumer the events stay with the producer, in its buffer, for the next one
    // (GenStage's dispatch_events buffers them without calling the dispatcher).
    const std::size_t count = entries_.empty() ? 0 : std::min(waiting_, batch.size());
    if (count == 0) return 0;
    for (auto& entry : entries_) {
      Batch<T> selected = pool.acquire();
      for (std::size_t i = 0; i < count; ++i)
        if (!entry.selector || entry.selector(batch[i])) selected.push_back(batch[i]);
      const std::size_t rejected = count - selected.size();
      if (rejected > 0) this->credits_.emplace_back(entry.consumer.id, rejected);
      if (selected.empty()) {
        pool.release(std::move(selected));
      } else {
        entry.consumer.inlet->post_events(entry.consumer.id, selected, &pool, false);
      }
    }
    waiting_ -= count;
    batch.erase(batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(count));
    return count;
  }

  std::vector<ConsumerSlot<T>> consumers() const override {
    std::vector<ConsumerSlot<T>> all;
    for (const auto& entry : entries_) all.push_back(entry.consumer);
    return all;
  }
  bool has_consumers() const noexcept override { return !entries_.empty(); }

 private:
  struct Entry {
    ConsumerSlot<T> consumer;
    long long demand;  // beyond what was forwarded upstream; negative for a late subscriber
    Selector selector;
  };

  // Forwards the smallest demand upstream and keeps the others relative to it.
  std::size_t forward_minimum() {
    if (entries_.empty()) return 0;
    long long minimum = entries_.front().demand;
    for (const auto& entry : entries_) minimum = std::min(minimum, entry.demand);
    if (minimum <= 0) return 0;
    for (auto& entry : entries_) entry.demand -= minimum;
    waiting_ += static_cast<std::size_t>(minimum);
    return static_cast<std::size_t>(minimum);
  }

  typename std::vector<Entry>::iterator find(SubscriptionId id) {
    return std::find_if(entries_.begin(), entries_.end(), [id](const Entry& e) { return e.consumer.id == id; });
  }

  std::vector<Entry> entries_;
  std::size_t waiting_ = 0;  // forwarded upstream, not yet dispatched
};

// --- partition -------------------------------------------------------------------------------

template <class T>
class PartitionDispatcher final : public Dispatcher<T> {
 public:
  explicit PartitionDispatcher(dispatch::Partition<T> policy)
      : hash_(std::move(policy.hash)), hash_batch_(std::move(policy.hash_batch)) {
    if (policy.partitions.empty()) throw std::invalid_argument("a partition dispatcher needs at least one partition");
    if (!hash_ && !hash_batch_) throw std::invalid_argument("a partition dispatcher needs a hash function");
    // Made in place: a Partition holds a std::deque of events, whose move may throw, so growing
    // the vector would copy them, which move-only events cannot be.
    partitions_ = std::vector<Partition>(policy.partitions.size());
    for (std::size_t i = 0; i < partitions_.size(); ++i) partitions_[i].key = std::move(policy.partitions[i]);
  }

  std::string subscribe(const ConsumerSlot<T>& consumer, const SubscribeOptions& options) override {
    if (!options.partition) {
      return "subscribing to a producer with a partition dispatcher needs a partition (one of " + names() + ")";
    }
    auto partition = find(*options.partition);
    if (partition == partitions_.end()) {
      return "partition " + to_string(*options.partition) + " does not exist: it must be one of " + names();
    }
    if (partition->consumer) {
      return "partition " + to_string(partition->key) + " is already taken by '" + name_of(*partition->consumer) + "'";
    }
    partition->consumer = consumer;
    return {};
  }

  std::size_t ask(SubscriptionId id, std::size_t count) override {
    auto partition = find(id);
    if (partition == partitions_.end()) return 0;
    // Events waiting for this partition go first.
    const std::size_t from_queue = std::min(count, partition->queue.size());
    if (from_queue > 0) {
      Batch<T> batch;
      for (std::size_t i = 0; i < from_queue; ++i) {
        batch.push_back(std::move(partition->queue.front()));
        partition->queue.pop_front();
      }
      partition->consumer->inlet->post_events(partition->consumer->id, batch, nullptr, false);
      this->tally_delivered(from_queue);
    }
    partition->demand += count - from_queue;
    // Events that waited for a consumer met no demand when they came: they meet this one's now,
    // so the producer is asked for that much less.
    const std::size_t unbacked = std::min(from_queue, partition->unbacked);
    partition->unbacked -= unbacked;
    const std::size_t needed = count - unbacked;
    const std::size_t already_sent = std::min(pending_, needed);
    pending_ -= already_sent;
    waiting_ += needed - already_sent;
    return needed - already_sent;
  }

  std::size_t cancel(SubscriptionId id) override {
    auto partition = find(id);
    if (partition == partitions_.end()) return 0;
    partition->consumer.reset();
    pending_ += partition->demand;
    partition->demand = 0;
    // Events queued for the departed consumer are lost with it (as in GenStage), and counted
    // as discarded; the demand they stood for goes back to the producer, so that the other
    // partitions go on.
    const std::size_t lost = partition->queue.size() - partition->unbacked;
    this->tally_discarded(partition->queue.size());
    partition->queue.clear();
    partition->unbacked = 0;
    waiting_ += lost;
    return lost;
  }

  std::size_t dispatch(Batch<T>& batch, BatchPool<T>& pool) override {
    // With no consumer at all the events stay with the producer, in its buffer, for the next
    // one (GenStage's dispatch_events buffers them without calling the dispatcher): queued
    // here, they would meet no demand, and the producer would be asked again and again.
    if (!has_consumers()) return 0;
    for (auto& partition : partitions_) partition.outgoing = Batch<T>();
    keys_.clear();
    std::size_t taken = 0;
    std::size_t met_none = 0;  // dropped by the hash, or waiting for a consumer
    std::size_t held = 0;      // met demand, waiting for their consumer to ask
    for (; taken < batch.size() && waiting_ > 0; ++taken) {
      // Keys only for the events the demand can take now (more if the hash drops some): the
      // rest stay in the batch and are keyed when they go out.
      if (hash_batch_ && taken == keys_.size()) {
        const std::size_t count = std::min(batch.size() - taken, waiting_);
        hash_batch_(std::span<const T>(batch).subspan(taken, count), keys_);
        if (keys_.size() != taken + count) throw std::logic_error("the partition's hash_batch must give one key per event");
      }
      auto key = hash_batch_ ? std::move(keys_[taken]) : hash_(batch[taken]);
      if (!key) {
        ++met_none;  // dropped by the hash: it costs no demand
        continue;
      }
      auto partition = find(*key);
      if (partition == partitions_.end()) {
        throw std::runtime_error("the partition hash returned unknown partition " + to_string(*key) +
                                 " (the partitions are " + names() + ")");
      }
      if (!partition->consumer) {
        // It waits for a consumer to subscribe, and meets no demand meanwhile: GenStage counts
        // it against the demand of the partitions that have consumers, which then starve. The
        // wait keeps the last defaults::buffer_size events, as a producer's buffer does, so that
        // a partition nobody consumes does not hold the whole stream.
        if (partition->unbacked == defaults::buffer_size) {
          partition->queue.pop_front();
          --partition->unbacked;
          this->tally_discarded(1);
        }
        partition->queue.push_back(std::move(batch[taken]));
        ++partition->unbacked;
        ++met_none;
        continue;
      }
      --waiting_;
      if (partition->demand > 0) {
        if (partition->outgoing.empty()) partition->outgoing = pool.acquire();
        partition->outgoing.push_back(std::move(batch[taken]));
        --partition->demand;
      } else {
        partition->queue.push_back(std::move(batch[taken]));
        ++held;
      }
    }
    if (held > 0) this->tally_held(held);
    for (auto& partition : partitions_) {
      if (!partition.outgoing.empty()) {
        partition.consumer->inlet->post_events(partition.consumer->id, partition.outgoing, &pool, false);
      }
    }
    batch.erase(batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(taken));
    return taken - met_none;
  }

  std::vector<ConsumerSlot<T>> consumers() const override {
    std::vector<ConsumerSlot<T>> all;
    for (const auto& partition : partitions_)
      if (partition.consumer) all.push_back(*partition.consumer);
    return all;
  }
  bool has_consumers() const noexcept override {
    return std::any_of(partitions_.begin(), partitions_.end(), [](const Partition& p) { return p.consumer.has_value(); });
  }
  // Only a partition with a consumer can still deliver what waits for it: a producer that is
  // done does not wait for events no consumer will ask for (they go with it, as a departed
  // consumer's queue does).
  bool holds_events() const noexcept override {
    return std::any_of(partitions_.begin(), partitions_.end(), [](const Partition& p) { return p.consumer && !p.queue.empty(); });
  }
  void drop_unclaimed() override {
    for (auto& partition : partitions_) {
      if (partition.consumer) continue;
      this->tally_discarded(partition.queue.size());
      partition.queue.clear();
      partition.unbacked = 0;
    }
  }

 private:
  struct Partition {
    PartitionKey key;
    std::optional<ConsumerSlot<T>> consumer{};
    std::size_t demand = 0;
    std::deque<T> queue{};  // events beyond the consumer's demand, or with no consumer yet
    std::size_t unbacked = 0;  // the first of them, queued with no consumer: they met no demand
    Batch<T> outgoing{};
  };

  typename std::vector<Partition>::iterator find(const PartitionKey& key) {
    // Numbered partitions sit at their own index.
    if (const auto* number = std::get_if<std::size_t>(&key);
        number != nullptr && *number < partitions_.size() && partitions_[*number].key == key) {
      return partitions_.begin() + static_cast<std::ptrdiff_t>(*number);
    }
    return std::find_if(partitions_.begin(), partitions_.end(), [&](const Partition& p) { return p.key == key; });
  }
  typename std::vector<Partition>::iterator find(SubscriptionId id) {
    return std::find_if(partitions_.begin(), partitions_.end(),
                        [&](const Partition& p) { return p.consumer && p.consumer->id == id; });
  }
  std::string names() const {
    std::string all = "[";
    for (const auto& partition : partitions_) all += (all.size() > 1 ? ", " : "") + to_string(partition.key);
    return all + "]";
  }
  static std::string name_of(const ConsumerSlot<T>& consumer) { return consumer.actor->name(); }

  std::function<typename dispatch::Partition<T>::Key(const T&)> hash_;
  std::function<void(std::span<const T>, std::vector<typename dispatch::Partition<T>::Key>&)> hash_batch_;
  std::vector<typename dispatch::Partition<T>::Key> keys_;  // hash_batch_'s, reused across batches
  std::vector<Partition> partitions_;
  std::size_t waiting_ = 0;  // forwarded upstream, not yet dispatched
  std::size_t pending_ = 0;  // departed consumers' demand, already forwarded once
};

// Builds the dispatcher a stage's policy names; throws if the policy does not fit its events.
template <class T>
std::unique_ptr<Dispatcher<T>> make_dispatcher(const std::any& policy) {
  if (!policy.has_value()) return std::make_unique<DemandDispatcher<T>>(dispatch::Demand{});
  if (const auto* demand = std::any_cast<dispatch::Demand>(&policy)) return std::make_unique<DemandDispatcher<T>>(*demand);
  if (std::any_cast<dispatch::Broadcast>(&policy) != nullptr) {
    if constexpr (std::is_copy_constructible_v<T>) {
      return std::make_unique<BroadcastDispatcher<T>>();
    } else {
      throw std::invalid_argument("a broadcast dispatcher copies every event to every consumer: it cannot take move-only events");
    }
  }
  if (const auto* partition = std::any_cast<dispatch::Partition<T>>(&policy)) {
    return std::make_unique<PartitionDispatcher<T>>(*partition);
  }
  throw std::invalid_argument("the dispatcher policy does not fit this stage (a Partition's event type must match)");
}

}  // namespace sluice::detail
