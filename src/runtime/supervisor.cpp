#include <sluice/supervisor.hpp>

#include <sluice/detail/restart_intensity.hpp>

#include <algorithm>
#include <mutex>
#include <stdexcept>

namespace sluice {
namespace detail {

// A supervisor is an actor: child exits reach it as messages, handled one at a time in its
// slices. Its state is also guarded by a mutex, so that start_child and which_children work
// synchronously from any thread, before the System starts and on a ManualScheduler alike.
class SupervisorCore final : public ActorCore {
 public:
  SupervisorCore(System& system, SupervisorOptions options)
      : ActorCore(system.scheduler_, static_cast<StageHost&>(system), options.name),
        system_(system),
        options_(std::move(options)) {}

  // Adopted by the System like any stage (a friend of System, which keeps adopt private).
  static ActorRef create(System& system, SupervisorOptions options, ActorCore* parent) {
    const bool registered = options.register_name;
    ActorRef core(new SupervisorCore(system, std::move(options)));
    core->set_supervisor(parent);
    system.adopt(core, false, registered, false);
    return core;
  }

  // A supervisor whose own start failed: stopped, and its name freed now rather than when the
  // stop has run.
  static void abandon(System& system, ActorCore& core) {
    system.unregister(core);
    core.post(Stop{ExitReason::shutdown()});
  }

  bool post(Control&& message) override {
    if (enqueue(mailbox_, std::move(message))) return true;
    // Stopped for good: answered as after stop, on the sender's thread.
    std::visit([this](auto& m) { handle_after_stop(m); }, message);
    return false;
  }

  bool run_slice() override {
    std::size_t budget = scheduler_.throughput();
    return drain(
        mailbox_, budget, [this] { return is_stopped(); },
        [this](Control& message) { std::visit([this](auto& m) { handle(m); }, message); }, [] { return false; });
  }

  ActorRef start_child(ChildSpec spec) {
    std::lock_guard lock(mutex_);
    if (stopped_ || terminating_) throw std::invalid_argument("supervisor '" + name_ + "' is stopping");
    if (index_of(spec.id())) throw std::invalid_argument("supervisor '" + name_ + "' already has a child '" + spec.id() + "'");
    children_.push_back(Child{std::move(spec)});
    try {
      start(children_.size() - 1);
    } catch (...) {
      children_.pop_back();  // the caller hears why; the id stays free for a corrected spec
      throw;
    }
    return children_.back().actor;
  }

  std::vector<ChildInfo> which_children() const {
    std::lock_guard lock(mutex_);
    std::vector<ChildInfo> info;
    for (const auto& child : children_) info.push_back({child.spec.id(), child.actor, child.starts});
    return info;
  }

  ActorRef running_child(std::string_view id) const {
    std::lock_guard lock(mutex_);
    auto index = index_of(id);
    return index ? children_[*index].actor : ActorRef();
  }

 private:
  struct Child {
    ChildSpec spec;
    ActorRef actor{};  // the running instance
    std::size_t starts = 0;
    bool stopping = false;  // stopped by us, for a group restart or our own termination
  };

  void handle(ChildExit& m) {
    std::lock_guard lock(mutex_);
    auto index = index_of(m.child.get());
    if (!index) return;  // an instance already replaced
    Child& child = children_[*index];
    child.actor = {};
    if (child.stopping) {
      child.stopping = false;
      if (terminating_) {
        if (!stop_next(0)) finish_termination_if_done();
      } else if (!stop_next(group_first_)) {
        group_stopping_ = false;
        restart_group();
      }
      return;
    }
    if (terminating_) return;
    // A drain asks sources to complete, and completion to flow downstream: a child that
    // completes then did as asked, and a new one would run on.
    const bool drained = system_.draining() && !m.reason.is_abnormal();
    const bool restart = !system_.stopping() && !drained &&
                         (child.spec.restart_type() == Restart::permanent ||
                          (child.spec.restart_type() == Restart::transient && m.reason.is_abnormal()));
    if (!restart) {
      if (child.spec.restart_type() == Restart::temporary || options_.dynamic) forget_child(*index);
      stop_if_children_done();
      return;
    }
    if (!intensity_.record()) {
      fail_past_intensity(m.reason.describe());
      return;
    }
    switch (options_.strategy) {
      case Strategy::one_for_one:
        restart_child(*index);
        break;
      case Strategy::one_for_all:
        restart_from(0);
        break;
      case Strategy::rest_for_one:
        restart_from(*index);
        break;
    }
  }

  void handle(Stop& m) {
    std::lock_guard lock(mutex_);
    terminate(m.reason);
  }

  void handle(Call& m) { m.reply->fail("supervisor '" + name_ + "' answers no calls: use its SupervisorRef"); }

  // Unlocked while it adds: dropping a stopped watcher may free it, running its destructor.
  void handle(Monitor& m) {
    if (is_stopped()) {
      handle_after_stop(m);
    } else {
      add_monitor(std::move(m.watcher));
    }
  }

  void handle(Subscribe& m) { handle_after_stop(m); }

  template <class Other>
  void handle(Other&) {}

  // Answers that need nothing but the name, so a closed mailbox's sender can give them too.
  void handle_after_stop(Call& m) { handle(m); }
  void handle_after_stop(Monitor& m) { m.watcher->post(Info{StageDown{name_, ExitReason::noproc(name_)}}); }
  void handle_after_stop(Subscribe& m) {
    // Supervisors produce nothing: a subscription to one ends at once.
    m.consumer->post(Down{m.id, ExitReason::error(name_, "a supervisor has no events to subscribe to")});
  }
  template <class Other>
  void handle_after_stop(Other&) {}

  bool is_stopped() const {
    std::lock_guard lock(mutex_);
    return stopped_;
  }

  // Stops the running children from `first` on (in reverse start order, one at a time) and
  // restarts them all, in order, once every one of them has exited.
  void restart_from(std::size_t first) {
    group_first_ = first;
    group_stopping_ = stop_next(first);
    if (!group_stopping_) restart_group();
  }

  // Asks the last running child from `first` on to stop, unless a child is stopping already:
  // its exit asks the next. As OTP's terminate_children, children stop one at a time, in
  // reverse start order, each once the one started after it has exited: a consumer started
  // after its producer stops first. False when none is left running from `first` on.
  bool stop_next(std::size_t first) {
    const auto stopping = [](const Child& child) { return child.actor != nullptr && child.stopping; };
    if (std::any_of(children_.begin(), children_.end(), stopping)) return true;
    for (std::size_t i = children_.size(); i-- > first;) {
      if (children_[i].actor != nullptr) {
        children_[i].stopping = true;
        children_[i].actor->post(Stop{ExitReason::shutdown()});
        return true;
      }
    }
    return false;
  }

  void restart_group() {
    // Temporary children are not restarted: they leave the group.
    for (std::size_t i = children_.size(); i-- > group_first_;) {
      if (children_[i].spec.restart_type() == Restart::temporary && children_[i].actor == nullptr) forget_child(i);
    }
    // The System began to stop while the group was stopping: nothing restarts then.
    if (system_.stopping()) {
      stop_if_children_done();
      return;
    }
    for (std::size_t i = group_first_; i < children_.size(); ++i) {
      if (children_[i].actor == nullptr && !restart_child(i)) return;
    }
  }

  // Removes a child that will not restart. A group restart still waiting for its children to
  // stop keeps pointing at the same first child when one before it goes.
  void forget_child(std::size_t index) {
    children_.erase(children_.begin() + static_cast<std::ptrdiff_t>(index));
    if (group_stopping_ && index < group_first_) --group_first_;
  }

  // Starts child `index` again. A start that throws (the child's constructor failed) is tried
  // again, each try counted against the restart intensity, as OTP's try_again_restart does;
  // past it the supervisor fails with the child's error. The tries in a row are capped at
  // max_restarts as well: a start that fails slowly would otherwise stay inside the window for
  // ever, and this loop holds the supervisor. False when it failed.
  bool restart_child(std::size_t index) {
    for (int tries = 1;; ++tries) {
      std::string error;
      try {
        start(index);
        return true;
      } catch (const std::exception& e) {
        error = e.what();
      } catch (...) {
        error = "unknown exception";  // as a stage's own failure reads: it must not escape the slice
      }
      if (!intensity_.record() || tries >= options_.max_restarts) {
        fail_past_intensity("'" + children_[index].spec.id() + "' could not be started: " + error);
        return false;
      }
    }
  }

  void fail_past_intensity(const std::string& last_failure) {
    terminate(ExitReason::error(name_, intensity_.exceeded(last_failure)));
  }

  void start(std::size_t index) {
    Child& child = children_[index];
    StageOptions options = child.spec.options_;
    ActorRef actor = child.spec.start_(system_, std::move(options), *this);
    try {
      for (const auto& subscription : child.spec.subscriptions_) subscribe(*actor, subscription.producer, subscription.options);
    } catch (...) {
      // Not recorded as the child: stopped, so that a failed start leaves no instance running.
      actor->post(Stop{ExitReason::shutdown()});
      throw;
    }
    child.actor = std::move(actor);
    ++child.starts;
  }

  // A sibling's running instance first, then the System's registry.
  void subscribe(ActorCore& consumer, const std::string& producer, const SubscribeOptions& options) {
    auto sibling = index_of(producer);
    if (sibling && children_[*sibling].actor) {
      system_.subscribe_untyped(consumer, *children_[*sibling].actor, options);
    } else {
      system_.subscribe_by_name(consumer, producer, options);
    }
  }

  // Stops every child, one at a time in reverse start order, then stops with `reason`.
  void terminate(ExitReason reason) {
    if (terminating_ || stopped_) return;
    terminating_ = true;
    termination_reason_ = std::move(reason);
    if (!stop_next(0)) finish_termination_if_done();
  }

  void finish_termination_if_done() {
    for (const auto& child : children_)
      if (child.actor != nullptr) return;
    stop(termination_reason_);
  }

  // Once its children are done: when asked to, or in a drain, which ends the whole System.
  void stop_if_children_done() {
    if (!options_.stop_when_children_done && !system_.draining()) return;
    for (const auto& child : children_)
      if (child.actor != nullptr) return;
    terminating_ = true;
    stop(ExitReason::normal());
  }

  void stop(const ExitReason& reason) {
    if (stopped_) return;
    stopped_ = true;
    notify_stopped(reason);
  }

  std::optional<std::size_t> index_of(std::string_view id) const {
    for (std::size_t i = 0; i < children_.size(); ++i)
      if (children_[i].spec.id() == id) return i;
    return std::nullopt;
  }
  std::optional<std::size_t> index_of(const ActorCore* actor) const {
    for (std::size_t i = 0; i < children_.size(); ++i)
      if (children_[i].actor == actor) return i;
    return std::nullopt;
  }

  System& system_;
  SupervisorOptions options_;
  Mailbox<Control> mailbox_;

  mutable std::mutex mutex_;
  std::vector<Child> children_;  // in start order
  RestartIntensity intensity_{options_.max_restarts, options_.max_seconds};
  std::size_t group_first_ = 0;
  bool group_stopping_ = false;  // a group restart waits for its children to stop
  bool terminating_ = false;
  bool stopped_ = false;
  ExitReason termination_reason_;
};

ActorRef find_running_child(const ActorCore& supervisor, std::string_view id) {
  return static_cast<const SupervisorCore&>(supervisor).running_child(id);
}

}  // namespace detail

detail::ActorRef SupervisorRef::start_child(ChildSpec spec) { return supervisor().start_child(std::move(spec)); }

std::vector<ChildInfo> SupervisorRef::which_children() const { return supervisor().which_children(); }

std::optional<SupervisorRef> SupervisorRef::child_supervisor(std::string_view id) const {
  detail::ActorRef running = supervisor().running_child(id);
  if (dynamic_cast<detail::SupervisorCore*>(running.get()) == nullptr) return std::nullopt;
  return SupervisorRef(std::move(running));
}

detail::ActorCore& SupervisorRef::core() const noexcept { return *core_; }

detail::SupervisorCore& SupervisorRef::supervisor() const noexcept { return static_cast<detail::SupervisorCore&>(*core_); }

namespace {

detail::ActorRef start_under(System& system, SupervisorOptions options, std::vector<ChildSpec> children,
                             detail::ActorCore* parent) {
  if (options.name.empty()) options.name = "supervisor";
  detail::ActorRef core = detail::SupervisorCore::create(system, std::move(options), parent);
  try {
    for (auto& child : children) static_cast<detail::SupervisorCore&>(*core).start_child(std::move(child));
  } catch (...) {
    // As OTP's supervisor init: a child that cannot start fails the whole start, and the
    // children already started are shut down with it, not left running unowned. Its name is
    // free at once: the caller, or a parent's try_again_restart, may start it again now.
    detail::SupervisorCore::abandon(system, *core);
    throw;
  }
  return core;
}

}  // namespace

SupervisorRef start_supervisor(System& system, SupervisorOptions options, std::vector<ChildSpec> children) {
  return SupervisorRef(start_under(system, std::move(options), std::move(children), nullptr));
}

ChildSpec supervisor_child(SupervisorOptions options, std::vector<ChildSpec> children) {
  StageOptions stage_options;
  stage_options.name = options.name;
  return ChildSpec(std::move(stage_options),
                   [options, children](System& system, StageOptions, detail::ActorCore& parent) -> detail::ActorRef {
                     return start_under(system, options, children, &parent);
                   });
}

}  // namespace sluice
