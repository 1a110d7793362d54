#pragma once
// Subscription options and what a stage learns when a subscription starts or ends.
#include <sluice/defaults.hpp>
#include <sluice/dispatcher.hpp>

#include <any>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice {

using SubscriptionId = std::uint64_t;

// What a consumer does when its producer stops (GenStage's :cancel option).
enum class CancelMode {
  permanent,  // stop whenever the producer stops abnormally, or when every producer completed
  transient,  // stop only when the producer stops abnormally
  temporary,  // never stop because of the producer; handle_cancel tells what happened
};

// Automatic demand refills by GenStage's rule; manual leaves every ask to the stage.
enum class DemandMode { automatic, manual };

// How a batch reaches the consumer. queued: into its mailbox, and the scheduler runs it (as
// GenStage's processes). at_once: when the consumer is idle and its producer's only consumer,
// the producer's thread runs it there and then, with no trip through the scheduler (as Akka
// runs fused stages). It saves a hop's scheduling, which counts when batches are small, but the
// producer waits while the consumer works, so stages cannot overlap: keep it for short
// handle_events (README, "Handing batches off at once").
enum class HandOff { queued, at_once };

struct SubscribeOptions {
  std::size_t max_demand = defaults::max_demand;
  std::optional<std::size_t> min_demand{};  // defaults to max_demand / 2
  CancelMode cancel = CancelMode::permanent;
  // With a partition dispatcher: which partition this consumer takes (required there).
  std::optional<PartitionKey> partition{};
  // With a broadcast dispatcher: a std::function<bool(const T&)> keeping the events this
  // consumer wants (empty: all of them).
  std::any selector{};
  HandOff hand_off = HandOff::queued;

  std::size_t effective_min_demand() const noexcept { return min_demand.value_or(max_demand / 2); }

  // Throws std::invalid_argument naming the option, its value and the allowed range.
  void validate() const;
};

// Which side of a subscription the peer is on, seen from the stage being told.
enum class PeerRole { producer, consumer };

struct SubscriptionInfo {
  SubscriptionId id = 0;
  PeerRole peer_role = PeerRole::producer;
  std::string_view peer_name;
  SubscribeOptions options;
  // In a consumer's handle_cancel: events asked for on this subscription that never came. A
  // stage asking by hand (DemandMode::manual) stops counting them as on their way.
  std::size_t undelivered = 0;
};

}  // namespace sluice
