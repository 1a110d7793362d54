#pragma once
// The messages stages exchange. Control messages are untyped; event batches are typed by the
// receiving stage's input type.
#include <sluice/detail/actor_ref.hpp>
#include <sluice/detail/batch.hpp>
#include <sluice/detail/timer_service.hpp>
#include <sluice/exit_reason.hpp>
#include <sluice/subscription.hpp>

#include <any>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace sluice::detail {

template <class T>
class BatchPool;

// To a consumer: it is subscribed to `producer`. A null producer stands for a name nobody had
// registered; a Down with noproc follows.
struct SubscribeTo {
  ActorRef producer;
  SubscriptionId id;
  SubscribeOptions options;
  // The consumer sends the producer its Subscribe, as a GenStage consumer does, unless the
  // System already did (see System::subscribe_untyped).
  bool tell_producer = false;
};
// To a producer: `consumer` subscribes.
struct Subscribe {
  ActorRef consumer;
  SubscriptionId id;
  SubscribeOptions options;
};
// To a producer: send up to `count` more events on this subscription.
struct Ask {
  SubscriptionId id;
  std::size_t count;
};
// To a producer: the consumer leaves the subscription.
struct Cancel {
  SubscriptionId id;
  ExitReason reason;
};
// To a consumer: the subscription ended, because its producer stopped (a normal reason means it
// completed, after its last events), or as the producer's answer to the consumer's Cancel.
struct Down {
  SubscriptionId id;
  ExitReason reason;
};
// To any stage: stop now with this reason.
struct Stop {
  ExitReason reason;
};
// To a source: stop producing, deliver what is buffered, then complete (a graceful drain).
struct Complete {};
// To a producer: stop accumulating demand and replay what was accumulated.
struct ForwardDemand {};
// To a producer, from itself: `count` events it emitted met no demand (a partition hash dropped
// them, or no consumer had their partition), so its consumers still wait for that many.
struct MakeUp {
  std::size_t count;
};
// To any stage: a user message for handle_info.
struct Info {
  std::any payload;
};

// Where a call's answer goes: shared by the caller, who may have stopped waiting (timed out),
// and the stage, which may answer late; a late answer is simply dropped.
class CallReply {
 public:
  void answer(std::any value) { settle(std::move(value), {}); }
  void fail(std::string error) { settle({}, std::move(error)); }
  // The answer, or std::nullopt on timeout; `error` is set when the stage could not answer.
  std::optional<std::any> wait_for(std::chrono::nanoseconds timeout, std::string& error) {
    const auto deadline = deadline_after(timeout);
    std::unique_lock lock(mutex_);
    if (deadline == std::chrono::steady_clock::time_point::max()) {
      settled_.wait(lock, [this] { return done_; });
    } else if (!settled_.wait_until(lock, deadline, [this] { return done_; })) {
      return std::nullopt;
    }
    error = error_;
    return value_;
  }
  bool done() {
    std::lock_guard lock(mutex_);
    return done_;
  }

 private:
  void settle(std::any value, std::string error) {
    std::lock_guard lock(mutex_);
    if (done_) return;
    value_ = std::move(value);
    error_ = std::move(error);
    done_ = true;
    settled_.notify_all();
  }

  std::mutex mutex_;
  std::condition_variable settled_;
  bool done_ = false;
  std::any value_;
  std::string error_;
};

// To any stage: a request for handle_call, answered through `reply`.
struct Call {
  std::any request;
  std::shared_ptr<CallReply> reply;
};
// To any stage: a request for handle_cast, not answered.
struct Cast {
  std::any message;
};
// To any stage: tell `watcher` (with a StageDown info message) when this stage stops.
struct Monitor {
  ActorRef watcher;
};
// To a supervisor: one of its children stopped.
struct ChildExit {
  ActorRef child;
  ExitReason reason;
};

using Control = std::variant<SubscribeTo, Subscribe, Ask, Cancel, Down, Stop, Complete, ForwardDemand, MakeUp, Info, Call,
                             Cast, Monitor, ChildExit>;

template <class T>
struct Events {
  SubscriptionId id;
  Batch<T> events;
  BatchPool<T>* pool;  // where the emptied vector goes back to, for reuse
};

// A batch handed off at once (HandOff::at_once), handled inside the producer's dispatch: the
// producer's own vector, read in place, and emptied afterwards with its capacity kept for the
// producer's next batch. Unless the consumer must keep it for later (a producer-consumer whose
// consumers have no demand parks it, as an Events), nothing is moved, swapped or given back
// through the pool.
template <class T>
struct HandedOff {
  SubscriptionId id;
  Batch<T>& events;
  BatchPool<T>* pool;
};

}  // namespace sluice::detail
