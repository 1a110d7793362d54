#pragma once
// The counted handle to an actor; its constructor and destructor are defined with ActorCore,
// in actor.hpp.
#include <utility>

namespace sluice::detail {

class ActorCore;

// A counted handle to an actor. It keeps the actor's object alive, not the actor running: a
// stopped stage is freed once its peers, monitors, timers, tasks and the user's StageRefs have
// let go of it. Copying costs an atomic increment; the event path sends batches to peers that
// already hold handles, and copies none.
class ActorRef {
 public:
  ActorRef() = default;
  explicit ActorRef(ActorCore* actor) noexcept;
  ActorRef(const ActorRef& other) noexcept : ActorRef(other.actor_) {}
  ActorRef(ActorRef&& other) noexcept : actor_(std::exchange(other.actor_, nullptr)) {}
  ActorRef& operator=(ActorRef other) noexcept {
    std::swap(actor_, other.actor_);
    return *this;
  }
  ~ActorRef();

  ActorCore* get() const noexcept { return actor_; }
  ActorCore& operator*() const noexcept { return *actor_; }
  ActorCore* operator->() const noexcept { return actor_; }
  explicit operator bool() const noexcept { return actor_ != nullptr; }
  friend bool operator==(const ActorRef& ref, const ActorCore* actor) noexcept { return ref.actor_ == actor; }

 private:
  ActorCore* actor_ = nullptr;
};

}  // namespace sluice::detail
