#pragma once
// The messages stages exchange. Control messages are untyped; event batches are typed by the
// receiving stage's input type.
#include <sluice/detail/batch.hpp>
#include <sluice/exit_reason.hpp>
#include <sluice/subscription.hpp>

#include <any>
#include <cstddef>
#include <variant>
#include <vector>

namespace sluice::detail {

class ActorCore;
template <class T>
class BatchPool;

// To a consumer: it is subscribed to `producer` (which is sent Subscribe at the same time).
struct SubscribeTo {
  ActorCore* producer;
  SubscriptionId id;
  SubscribeOptions options;
};
// To a producer: `consumer` subscribes.
struct Subscribe {
  ActorCore* consumer;
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
// To a consumer: the subscription ended because its producer stopped. A normal reason means
// the producer completed, after its last events.
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
// To any stage: a user message for handle_info.
struct Info {
  std::any payload;
};

using Control = std::variant<SubscribeTo, Subscribe, Ask, Cancel, Down, Stop, Complete, ForwardDemand, Info>;

template <class T>
struct Events {
  SubscriptionId id;
  Batch<T> events;
  BatchPool<T>* pool;  // where the emptied vector goes back to, for reuse
};

}  // namespace sluice::detail
