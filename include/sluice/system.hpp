#pragma once
// The runtime: a pool of oneTBB workers (or a test's ManualScheduler) and the stages on it.
#include <sluice/detail/actor.hpp>
#include <sluice/detail/stage_actor.hpp>
#include <sluice/detail/timer_service.hpp>
#include <sluice/exit_reason.hpp>
#include <sluice/manual_scheduler.hpp>
#include <sluice/scheduler.hpp>
#include <sluice/stage.hpp>
#include <sluice/stage_ref.hpp>
#include <sluice/subscription.hpp>

#include <any>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace sluice {

namespace detail {
class SupervisorCore;
}

// Runs its stages on its threads. Stages are linked as in an Elixir pipeline started with
// start_link: when one fails, the others are shut down and wait() reports the failure.
// Destroying a System stops what still runs and joins everything; destroyed from one of its own
// stages' callbacks, which it would wait for for ever, it aborts instead. A stage that has
// stopped is freed once nothing refers to it any more (StageRefs, subscriptions, monitors,
// supervisors), so a long run of restarts or start_child calls keeps memory flat.
class System final : private detail::StageHost {
 public:
  // Runs stages on `threads` oneTBB workers (0: one per hardware thread).
  explicit System(std::size_t threads = 0);
  // Runs stages only when the test steps `scheduler`: deterministic, on the test's thread.
  explicit System(ManualScheduler& scheduler);
  System(const System&) = delete;
  System& operator=(const System&) = delete;
  ~System();

  template <StageType S, class... Args>
  StageRef<S> spawn(StageOptions options, Args&&... args);
  // As spawn, for a supervisor's child: `supervisor` hears of its exit instead of the System.
  template <StageType S, class... Args>
  StageRef<S> spawn_child(detail::ActorCore& supervisor, StageOptions options, Args&&... args);
  template <StageType S, class... Args>
  StageRef<S> spawn(std::string name, Args&&... args) {
    StageOptions options;
    options.name = std::move(name);
    return spawn<S>(std::move(options), std::forward<Args>(args)...);
  }

  // Subscribes `consumer` to `producer`. Options are checked here: an out-of-range
  // max_demand/min_demand throws std::invalid_argument naming the option, value and range.
  template <StageType C, StageType P>
    requires SubscribableTo<C, P>
  SubscriptionId subscribe(const StageRef<C>& consumer, const StageRef<P>& producer, SubscribeOptions options = {}) {
    return subscribe_untyped(consumer.core(), producer.core(), options);
  }
  // For callers that wire a graph while stages may already run (the pipeline DSL): on a System
  // that runs (after start(), or a ManualScheduler's first step), the stage is held: it queues
  // its messages and runs only once released (release_held, or start()), so that the graph is
  // whole before an event flows, as one wired before start() is. A held consumer's
  // subscriptions reach both ends at once, as they do before start(). Before the System runs,
  // start() holds everything already, and the stage is spawned as by spawn().
  template <StageType S, class... Args>
  StageRef<S> spawn_held(StageOptions options, Args&&... args) {
    return spawn_under<S>(nullptr, std::move(options), runs(), std::forward<Args>(args)...);
  }
  // Lets a stage spawned held run; nothing for one that runs already.
  void release_held(detail::ActorCore& stage);
  // For callers that checked event types themselves (the pipeline DSL, the YAML runner).
  SubscriptionId subscribe_untyped(detail::ActorCore& consumer, detail::ActorCore& producer, SubscribeOptions options);
  // Subscribes to the stage registered as `producer`. If there is none, the consumer's
  // subscription ends at once with reason noproc, as GenStage's does.
  template <StageType C>
    requires ReceivingStage<C>
  SubscriptionId subscribe(const StageRef<C>& consumer, std::string_view producer, SubscribeOptions options = {});

  // --- the registry ---------------------------------------------------------------------------
  // The live stage registered under `name` (StageOptions::register_name), or an empty handle.
  detail::ActorRef whereis(std::string_view name) const;
  // The same, typed: empty if there is no such stage or it is not an S.
  template <StageType S>
  std::optional<StageRef<S>> lookup(std::string_view name) const {
    const detail::ActorRef found = whereis(name);
    auto* actor = dynamic_cast<detail::StageActor<S>*>(found.get());
    if (actor == nullptr) return std::nullopt;
    return StageRef<S>(actor);
  }

  // --- GenServer-style messages ----------------------------------------------------------------
  // Asks the stage's handle_call and waits for the answer. Throws CallError on timeout (the
  // late answer is dropped; nothing hangs), if the stage is gone, or if it failed handling it.
  std::any call(detail::ActorCore& stage, std::any request, std::chrono::nanoseconds timeout = defaults::call_timeout);
  template <StageType S>
  std::any call(const StageRef<S>& stage, std::any request, std::chrono::nanoseconds timeout = defaults::call_timeout) {
    return call(stage.core(), std::move(request), timeout);
  }
  // Delivers `message` to handle_cast.
  void cast(detail::ActorCore& stage, std::any message) { stage.post(detail::Cast{std::move(message)}); }
  template <StageType S>
  void cast(const StageRef<S>& stage, std::any message) {
    cast(stage.core(), std::move(message));
  }
  // Delivers `message` to handle_info after `delay`; returns an id for cancel_timer.
  std::uint64_t send_after(detail::ActorCore& stage, std::chrono::nanoseconds delay, std::any message);
  template <StageType S>
  std::uint64_t send_after(const StageRef<S>& stage, std::chrono::nanoseconds delay, std::any message) {
    return send_after(stage.core(), delay, std::move(message));
  }
  bool cancel_timer(std::uint64_t timer) { return timers_->cancel(timer); }
  // When `target` stops, `watcher`'s handle_info receives a StageDown with the reason (at once,
  // with reason noproc, if it already has).
  void monitor(detail::ActorCore& watcher, detail::ActorCore& target) {
    target.post(detail::Monitor{detail::ActorRef(&watcher)});
  }
  template <StageType W, StageType T>
  void monitor(const StageRef<W>& watcher, const StageRef<T>& target) {
    monitor(watcher.core(), target.core());
  }

  // Delivers `message` to the stage's handle_info.
  void send_info(detail::ActorCore& stage, std::any message);
  template <StageType S>
  void send_info(const StageRef<S>& stage, std::any message) {
    send_info(stage.core(), std::move(message));
  }

  // Ends a producer's accumulate mode (StageOptions::accumulate_demand): the demand it recorded
  // is replayed to handle_demand in order, and later demand goes straight through.
  void forward_demand(detail::ActorCore& producer) { producer.post(detail::ForwardDemand{}); }
  template <StageType S>
  void forward_demand(const StageRef<S>& producer) {
    forward_demand(producer.core());
  }

  // Lets the stages run, those spawned held included. Until then they are held, messages and
  // all, so that a graph wired before start() is complete before the first event flows. wait(),
  // drain() and the destructor start too.
  void start();

  // Blocks until every stage has stopped. Throws StageError if a stage failed. With a
  // ManualScheduler it steps the scheduler until idle instead, and throws std::logic_error if
  // stages are still running then (they wait for something that will never come).
  void wait();
  // Graceful: sources stop producing, deliver what they hold, and complete; completion then
  // flows downstream, so every event already emitted reaches the sinks. A producer fed by the
  // pipeline itself (fed_by_pipeline) is left to end when its feeders have.
  void drain();
  // Immediate: every stage stops with reason shutdown.
  void stop();

  std::size_t running() const;
  // Timers waiting for their deadlines (send_after, task timeouts), cancelled ones not yet
  // dropped included: what the timer thread's memory grows with.
  std::size_t timers_held() const { return timers_->held(); }

  // Times every message of every stage from now on, for StageStats::busy_ns. Off by default: a
  // clock read a message is most of a message's cost when it carries one event (as
  // Tokio keeps its per-poll timing opt-in). `sluice run --metrics` turns it on.
  void measure_busy_time(bool on = true) noexcept { measure_busy_time_.store(on, std::memory_order_relaxed); }
  std::optional<ExitReason> failure() const;
  // True once stop() was called (or a linked stage failed): supervisors restart nothing then.
  bool stopping() const noexcept { return stopping_.load(std::memory_order_acquire); }
  // True once drain() was called: a source spawned since is drained at once, and supervisors
  // do not restart a child that completes.
  bool draining() const noexcept { return draining_.load(std::memory_order_acquire); }

 private:
  friend class detail::SupervisorCore;
  static SubscriptionId next_subscription_id();
  // Spawns an S, supervised by `supervisor` if not null, and held if `held` (see spawn_held).
  template <StageType S, class... Args>
  StageRef<S> spawn_under(detail::ActorCore* supervisor, StageOptions options, bool held, Args&&... args);
  // Subscribes to the stage registered as `producer`, or to nobody (see subscribe by name).
  SubscriptionId subscribe_by_name(detail::ActorCore& consumer, std::string_view producer, SubscribeOptions options);
  void stage_stopped(detail::ActorCore& stage, const ExitReason& reason) override;
  detail::TimerService& timers() override { return *timers_; }
  void adopt(const detail::ActorRef& stage, bool is_source, bool registered, bool held);
  // True once stages run: after start(), or a ManualScheduler's first step.
  bool runs();
  // Frees the stage's registered name now, before it stops (a supervisor whose start failed,
  // so that a retry can take the name at once).
  void unregister(const detail::ActorCore& stage);
  void unregister_locked(const detail::ActorCore& stage);  // with mutex_ held
  // The running stages a message to all of them goes to.
  enum class Targets {
    sources,       // the producers that subscribe to nothing (drain)
    unsupervised,  // those no supervisor stops: a supervisor stops its children itself, in order
  };
  void post_to_all(const detail::Control& message, Targets targets);

  std::unique_ptr<Scheduler> owned_scheduler_;
  Scheduler& scheduler_;
  ManualScheduler* manual_ = nullptr;

  mutable std::mutex mutex_;
  std::condition_variable all_stopped_;
  // The stages that have not stopped (each holds itself alive until its last slice), and the
  // sources among them. Guarded by mutex_, as are the members below.
  std::unordered_set<detail::ActorCore*> running_stages_;
  std::unordered_set<detail::ActorCore*> sources_;
  std::unordered_set<detail::ActorCore*> held_;  // spawned held, not yet released
  std::optional<ExitReason> failure_;
  std::unordered_map<std::string, detail::ActorCore*> registry_;
  std::unique_ptr<detail::TimerService> timers_ = std::make_unique<detail::TimerService>();
  std::mutex start_mutex_;
  bool started_ = false;  // guarded by start_mutex_
  std::atomic<bool> stopping_{false};
  std::atomic<bool> draining_{false};
};

template <StageType S, class... Args>
StageRef<S> System::spawn(StageOptions options, Args&&... args) {
  if (options.name.empty()) options.name = "stage-" + std::to_string(running() + 1);
  return spawn_under<S>(nullptr, std::move(options), false, std::forward<Args>(args)...);
}

template <StageType S, class... Args>
StageRef<S> System::spawn_child(detail::ActorCore& supervisor, StageOptions options, Args&&... args) {
  return spawn_under<S>(&supervisor, std::move(options), false, std::forward<Args>(args)...);
}

template <StageType S, class... Args>
StageRef<S> System::spawn_under(detail::ActorCore* supervisor, StageOptions options, bool held, Args&&... args) {
  const bool registered = options.register_name;
  auto* actor = new detail::StageActor<S>(scheduler_, static_cast<detail::StageHost&>(*this), std::move(options),
                                          std::forward<Args>(args)...);
  // The handle is taken first: the stage may run, stop and let go of itself before adopt returns.
  StageRef<S> stage(actor);
  if (supervisor != nullptr) actor->set_supervisor(supervisor);
  if (held) actor->hold();
  adopt(stage.handle(), DrainedSource<S>, registered, held);
  return stage;
}

template <StageType C>
  requires ReceivingStage<C>
SubscriptionId System::subscribe(const StageRef<C>& consumer, std::string_view producer, SubscribeOptions options) {
  return subscribe_by_name(consumer.core(), producer, options);
}

}  // namespace sluice
