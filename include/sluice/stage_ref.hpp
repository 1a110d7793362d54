#pragma once
// A value-type handle to a running stage.
#include <sluice/detail/stage_actor.hpp>
#include <sluice/stage_stats.hpp>

#include <string>

namespace sluice {

template <StageType S>
class StageRef {
 public:
  StageRef() = default;
  explicit StageRef(detail::StageActor<S>* actor) noexcept : actor_(actor) {}

  const std::string& name() const noexcept { return actor_->name(); }
  StageStatsSnapshot stats() const noexcept { return actor_->stats().snapshot(); }
  // The stage object itself. Its callbacks run on worker threads: read it from outside only
  // once the stage has stopped (after System::wait()).
  S& get() const noexcept { return actor_->stage(); }
  S* operator->() const noexcept { return &actor_->stage(); }
  explicit operator bool() const noexcept { return actor_ != nullptr; }

  detail::ActorCore& core() const noexcept { return *actor_; }

 private:
  detail::StageActor<S>* actor_ = nullptr;
};

}  // namespace sluice
