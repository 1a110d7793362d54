#pragma once
// Manual demand for a producer-consumer that emits later than it receives (async_map, delay,
// rate_limit): it asks its producers only for what its consumers asked of it, less what it
// already holds, so that events waiting inside it count against downstream demand.
#include <sluice/stage.hpp>

#include <algorithm>
#include <cstddef>
#include <vector>

namespace sluice::detail {

class DemandCredit {
 public:
  // From handle_subscribe: subscriptions to producers become manual; the stage asks on them.
  DemandMode subscribed(const SubscriptionInfo& info) {
    if (info.peer_role != PeerRole::producer) return DemandMode::automatic;
    producers_.push_back(info.id);
    return DemandMode::manual;
  }
  // A producer that leaves will not send what it was asked for and did not send: that share
  // is asked of the others (as ask() does), instead of counting as on its way forever.
  void cancelled(const SubscriptionInfo& info, StageContext& context, std::size_t held, std::size_t limit) {
    if (info.peer_role != PeerRole::producer) return;
    std::erase(producers_, info.id);
    requested_ -= std::min(requested_, info.undelivered);
    ask(context, held, limit);
  }
  bool has_producers() const noexcept { return !producers_.empty(); }

  void demanded(std::size_t count) noexcept { credit_ += count; }
  void received(std::size_t count) noexcept { requested_ -= std::min(requested_, count); }
  void emitted(std::size_t count) noexcept { credit_ -= std::min(credit_, count); }
  std::size_t credit() const noexcept { return credit_; }

  // Asks for what downstream wants, at most `limit` in all, less `held` events received and not
  // yet emitted and less what was asked for already. Several producers take turns.
  void ask(StageContext& context, std::size_t held, std::size_t limit) {
    if (producers_.empty()) return;
    const std::size_t on_the_way = requested_ + held;
    const std::size_t target = std::min(credit_, limit);
    if (target <= on_the_way) return;
    const std::size_t want = target - on_the_way;
    requested_ += want;
    context.ask(producers_[turn_++ % producers_.size()], want);
  }

 private:
  std::vector<SubscriptionId> producers_;
  std::size_t turn_ = 0;
  std::size_t credit_ = 0;     // downstream demand not yet met
  std::size_t requested_ = 0;  // asked of producers, not yet received
};

}  // namespace sluice::detail
