#pragma once
// OTP supervision for stages: restart strategies, restart types and intensity, nested trees,
// and children started at run time (DynamicSupervisor).
#include <sluice/detail/actor.hpp>
#include <sluice/stage.hpp>
#include <sluice/stage_ref.hpp>
#include <sluice/subscription.hpp>
#include <sluice/system.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sluice {

namespace detail {
class SupervisorCore;
}

// Which children restart when one fails (OTP's strategies).
enum class Strategy {
  one_for_one,   // only the failed child
  one_for_all,   // all children: the others are stopped, then all start again in order
  rest_for_one,  // the failed child and those started after it
};

// When a child is restarted (OTP's restart types).
enum class Restart {
  permanent,  // always
  transient,  // only after an abnormal exit (an error, not normal or shutdown)
  temporary,  // never; it is forgotten when it exits
};

struct SupervisorOptions {
  std::string name{};
  Strategy strategy = Strategy::one_for_one;
  // Restart intensity, Elixir's defaults (OTP's are 1 in 5 s): more than max_restarts restarts
  // within max_seconds and the supervisor gives up: it stops its children and fails, escalating
  // to its parent.
  int max_restarts = 3;
  std::chrono::milliseconds max_seconds{5000};
  bool register_name = false;
  // Stop normally once no child runs and none is due to restart, so that a supervised finite
  // pipeline ends (as OTP's auto_shutdown does when every child is significant).
  bool stop_when_children_done = false;
  // A DynamicSupervisor's rule (start_dynamic_supervisor sets it): a child that exits and is not
  // restarted (temporary, or transient after a normal exit) is forgotten, and its id is free
  // again. OTP's supervisor forgets only temporary children, and keeps a transient one's spec.
  bool dynamic = false;
};

// How to start one child, and the subscriptions to make each time it starts.
class ChildSpec {
 public:
  // Spawns the child, supervised by the given supervisor.
  using Start = std::function<detail::ActorRef(System&, StageOptions, detail::ActorCore& supervisor)>;

  ChildSpec(StageOptions options, Start start) : options_(std::move(options)), start_(std::move(start)) {}

  ChildSpec& restart(Restart restart) {
    restart_ = restart;
    return *this;
  }
  // `producer` is a sibling's id, or else a registered name.
  ChildSpec& subscribe_to(std::string producer, SubscribeOptions options = {}) {
    subscriptions_.push_back({std::move(producer), options});
    return *this;
  }

  const std::string& id() const noexcept { return options_.name; }
  Restart restart_type() const noexcept { return restart_; }

 private:
  friend class detail::SupervisorCore;
  struct Subscription {
    std::string producer;
    SubscribeOptions options;
  };
  StageOptions options_;
  Start start_;
  Restart restart_ = Restart::permanent;
  std::vector<Subscription> subscriptions_;
};

// A child stage S built from `args` (copied for each restart); its id is options.name.
template <StageType S, class... Args>
ChildSpec child(StageOptions options, Args... args) {
  return ChildSpec(std::move(options),
                   [args...](System& system, StageOptions stage_options, detail::ActorCore& supervisor) -> detail::ActorRef {
                     return system.spawn_child<S>(supervisor, std::move(stage_options), args...).handle();
                   });
}
template <StageType S, class... Args>
ChildSpec child(std::string id, Args... args) {
  StageOptions options;
  options.name = std::move(id);
  return child<S>(std::move(options), std::move(args)...);
}

struct ChildInfo {
  std::string id;
  detail::ActorRef stage;  // empty while not running
  std::size_t starts;      // 1 + restarts so far
};

// A handle to a running supervisor.
class SupervisorRef {
 public:
  SupervisorRef() = default;

  // Starts a child now (DynamicSupervisor.start_child) and returns its running instance. Throws
  // std::invalid_argument if the id is taken or the supervisor is stopping.
  detail::ActorRef start_child(ChildSpec spec);
  std::vector<ChildInfo> which_children() const;
  // The running instance of child `id`, typed; empty if not running or not an S.
  template <StageType S>
  std::optional<StageRef<S>> child(std::string_view id) const;
  // A child that is a supervisor (supervisor_child), running; empty otherwise.
  std::optional<SupervisorRef> child_supervisor(std::string_view id) const;

  detail::ActorCore& core() const noexcept;

 private:
  friend SupervisorRef start_supervisor(System&, SupervisorOptions, std::vector<ChildSpec>);
  explicit SupervisorRef(detail::ActorRef core) : core_(std::move(core)) {}
  detail::SupervisorCore& supervisor() const noexcept;
  detail::ActorRef core_;  // always a SupervisorCore
};

// Starts a supervisor with `children`, started in order.
SupervisorRef start_supervisor(System& system, SupervisorOptions options, std::vector<ChildSpec> children = {});
// A DynamicSupervisor: one_for_one, with children only from start_child.
inline SupervisorRef start_dynamic_supervisor(System& system, SupervisorOptions options) {
  options.strategy = Strategy::one_for_one;
  options.dynamic = true;
  return start_supervisor(system, std::move(options));
}
// A supervisor as the child of another: a supervision tree.
ChildSpec supervisor_child(SupervisorOptions options, std::vector<ChildSpec> children);

namespace detail {
ActorRef find_running_child(const ActorCore& supervisor, std::string_view id);
}  // namespace detail

template <StageType S>
std::optional<StageRef<S>> SupervisorRef::child(std::string_view id) const {
  const detail::ActorRef running = detail::find_running_child(*core_, id);
  auto* actor = dynamic_cast<detail::StageActor<S>*>(running.get());
  if (actor == nullptr) return std::nullopt;
  return StageRef<S>(actor);
}

}  // namespace sluice
