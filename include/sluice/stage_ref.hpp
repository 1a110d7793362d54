#pragma once
// A value-type handle to a stage. The stage object lives while a handle to it does, so its
// name, stats and state stay readable after it stopped.
#include <sluice/detail/stage_actor.hpp>
#include <sluice/stage_stats.hpp>

#include <string>

namespace sluice {

template <StageType S>
class StageRef {
 public:
  StageRef() = default;
  // The caller holds `actor` alive for the duration of the call.
  explicit StageRef(detail::StageActor<S>* actor) noexcept : actor_(actor), handle_(actor) {}

  const std::string& name() const noexcept { return actor_->name(); }
  StageStatsSnapshot stats() const noexcept { return actor_->stats().snapshot(); }
  // The stage object itself. Its callbacks run on worker threads: read it from outside only
  // once the stage has stopped (after System::wait()).
  S& get() const noexcept { return actor_->stage(); }
  S* operator->() const noexcept { return &actor_->stage(); }
  explicit operator bool() const noexcept { return actor_ != nullptr; }

  detail::ActorCore& core() const noexcept { return *actor_; }
  const detail::ActorRef& handle() const noexcept { return handle_; }

 private:
  detail::StageActor<S>* actor_ = nullptr;
  detail::ActorRef handle_;  // keeps actor_ alive
};

}  // namespace sluice
