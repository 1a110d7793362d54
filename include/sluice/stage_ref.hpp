#pragma once
// A value-type handle to a stage. The stage object lives while a handle to it does, so its
// name, stats and state stay readable after it stopped (even after its System is gone).
#include <sluice/detail/stage_actor.hpp>
#include <sluice/stage_stats.hpp>

#include <string>

namespace sluice {

// S is checked where a handle is made rather than named, so that a stage may hold handles to
// stages of its own type (its class is incomplete where its members are declared).
template <class S>
class StageRef {
 public:
  StageRef() = default;
  // The caller holds `actor` alive for the duration of the call.
  explicit StageRef(detail::StageActor<S>* actor) noexcept
    requires StageType<S>
      : handle_(actor) {}

  const std::string& name() const noexcept { return actor().name(); }
  StageStatsSnapshot stats() const noexcept { return actor().stats().snapshot(); }
  // The stage object itself. Its callbacks run on worker threads: read it from outside only
  // once the stage has stopped (after System::wait()).
  S& get() const noexcept { return actor().stage(); }
  S* operator->() const noexcept { return &actor().stage(); }
  // False for a default-constructed or moved-from handle.
  explicit operator bool() const noexcept { return static_cast<bool>(handle_); }

  detail::ActorCore& core() const noexcept { return *handle_; }
  const detail::ActorRef& handle() const noexcept { return handle_; }

 private:
  // The one pointer is the counted one, so that a moved-from handle is empty, not dangling.
  detail::StageActor<S>& actor() const noexcept { return static_cast<detail::StageActor<S>&>(*handle_); }

  detail::ActorRef handle_;
};

}  // namespace sluice
