#include <sluice/system.hpp>

#include "scheduler.hpp"

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace sluice {

void SubscribeOptions::validate() const {
  if (max_demand < 1) {
    throw std::invalid_argument("max_demand must be at least 1, got " + std::to_string(max_demand));
  }
  if (min_demand && *min_demand > max_demand - 1) {
    throw std::invalid_argument("min_demand must lie in [0, " + std::to_string(max_demand - 1) + "] (max_demand - 1), got " +
                                std::to_string(*min_demand));
  }
}

System::System(std::size_t threads)
    : owned_scheduler_(detail::make_tbb_scheduler(threads)), scheduler_(*owned_scheduler_) {}

System::System(ManualScheduler& scheduler) : scheduler_(scheduler), manual_(&scheduler) {}

namespace {

// The stage of the System with `scheduler` whose callback runs on this thread, if any: the
// System cannot wait for its stages there, as that one cannot stop while it waits.
const detail::ActorCore* own_stage_running_here(const Scheduler& scheduler) noexcept {
  for (const detail::RunningFrame* frame = detail::running_here; frame != nullptr; frame = frame->outer) {
    if (frame->scheduler == &scheduler) return frame->stage;
  }
  return nullptr;
}

}  // namespace

System::~System() {
  // A destructor cannot throw as wait() does: abort, as std::thread's destructor terminates
  // rather than hang or leave a thread unjoined.
  if (const detail::ActorCore* stage = own_stage_running_here(scheduler_)) {
    const std::string message = "sluice: System destroyed from stage '" + stage->name() +
                                "' of the same System: it would wait for ever for that stage to stop\n";
    std::fputs(message.c_str(), stderr);
    std::abort();
  }
  start();
  stop();
  if (manual_ != nullptr) {
    manual_->run_until_idle();
  } else {
    std::unique_lock lock(mutex_);
    all_stopped_.wait(lock, [this] { return running_stages_.empty(); });
  }
  // No timer may fire into a stage being destroyed, and no task may still run a slice.
  timers_.reset();
  owned_scheduler_.reset();
}

void System::adopt(const detail::ActorRef& stage, bool is_source, bool registered, bool held) {
  bool stop_now = false;
  bool drain_now = false;
  {
    std::lock_guard lock(mutex_);
    if (registered && !registry_.emplace(stage->name(), stage.get()).second) {
      throw std::invalid_argument("a stage named '" + stage->name() + "' is already registered");
    }
    if (is_source) sources_.insert(stage.get());
    if (held) held_.insert(stage.get());
    running_stages_.insert(stage.get());
    stage->hold_self(stage);
    // Read under the lock that stop() and drain() take to list the stages: a stage spawned
    // after they listed theirs (by a callback still running, say) hears the same, or wait()
    // would wait for it for ever. A supervised stage is its supervisor's to stop or not restart.
    stop_now = stopping() && stage->supervisor() == nullptr;
    drain_now = draining() && is_source;
  }
  if (stop_now) stage->post(detail::Stop{ExitReason::shutdown()});
  if (drain_now) stage->post(detail::Complete{});
}

bool System::runs() {
  std::lock_guard lock(start_mutex_);
  return started_ || (manual_ != nullptr && manual_->has_run());
}

void System::release_held(detail::ActorCore& stage) {
  // Under start_mutex_, as subscribe_untyped reads held(): a held consumer's subscription
  // reaches both ends before the consumer can run and ask.
  std::lock_guard start_lock(start_mutex_);
  {
    std::lock_guard lock(mutex_);
    if (held_.erase(&stage) == 0) return;
  }
  stage.release();
}

SubscriptionId System::next_subscription_id() {
  static std::atomic<SubscriptionId> next_id{1};
  return next_id.fetch_add(1, std::memory_order_relaxed);
}

SubscriptionId System::subscribe_untyped(detail::ActorCore& consumer, detail::ActorCore& producer,
                                         SubscribeOptions options) {
  options.validate();
  const SubscriptionId id = next_subscription_id();
  std::lock_guard lock(start_mutex_);
  if ((started_ || (manual_ != nullptr && manual_->has_run())) && !consumer.held()) {
    // Stages run: the consumer tells the producer, as a GenStage consumer sends :subscribe
    // itself. The producer then hears of the subscription before anything the consumer sends on
    // it (an ask, a cancel), and the consumer has it before any answer (events, a refusal).
    consumer.post(detail::SubscribeTo{detail::ActorRef(&producer), id, options, true});
  } else if (consumer.post(detail::SubscribeTo{detail::ActorRef(&producer), id, options, false})) {
    // Nothing runs yet (until start(), or a ManualScheduler's first step), or the consumer is
    // held: both ends hear of it now, so that a graph wired before the consumer runs is complete
    // before an event flows.
    // A consumer that had stopped takes up nothing, and the producer is not told.
    producer.post(detail::Subscribe{detail::ActorRef(&consumer), id, options});
  }
  return id;
}

SubscriptionId System::subscribe_by_name(detail::ActorCore& consumer, std::string_view producer, SubscribeOptions options) {
  if (const detail::ActorRef found = whereis(producer)) return subscribe_untyped(consumer, *found, options);
  options.validate();
  // A subscription to nobody, ended at once: the consumer's cancel mode decides what follows.
  const SubscriptionId id = next_subscription_id();
  consumer.post(detail::SubscribeTo{{}, id, options});
  consumer.post(detail::Down{id, ExitReason::noproc(std::string(producer))});
  return id;
}

void System::send_info(detail::ActorCore& stage, std::any message) { stage.post(detail::Info{std::move(message)}); }

void System::post_to_all(const detail::Control& message, Targets targets) {
  // Handles taken under the lock: a listed stage has not stopped, so it still holds itself.
  std::vector<detail::ActorRef> stages;
  {
    std::lock_guard lock(mutex_);
    for (detail::ActorCore* stage : targets == Targets::sources ? sources_ : running_stages_)
      if (targets == Targets::sources || stage->supervisor() == nullptr) stages.emplace_back(stage);
  }
  for (const auto& stage : stages) stage->post(detail::Control(message));
}

void System::start() {
  {
    std::lock_guard lock(start_mutex_);
    started_ = true;
  }
  scheduler_.start();
  // A held stage has not run, so it still holds itself: the raw pointers are safe to take.
  // Released under start_mutex_, as in release_held.
  std::lock_guard start_lock(start_mutex_);
  std::unordered_set<detail::ActorCore*> held;
  {
    std::lock_guard lock(mutex_);
    held.swap(held_);
  }
  for (detail::ActorCore* stage : held) stage->release();
}

void System::drain() {
  start();
  draining_.store(true, std::memory_order_release);
  post_to_all(detail::Complete{}, Targets::sources);
}

void System::stop() {
  stopping_.store(true, std::memory_order_release);
  // A supervision tree shuts down from its root, as an OTP application's does: each supervisor
  // stops its children one at a time, in reverse start order.
  post_to_all(detail::Stop{ExitReason::shutdown()}, Targets::unsupervised);
}

void System::unregister(const detail::ActorCore& stage) {
  std::lock_guard lock(mutex_);
  unregister_locked(stage);
}

void System::unregister_locked(const detail::ActorCore& stage) {
  auto registered = registry_.find(stage.name());
  if (registered != registry_.end() && registered->second == &stage) registry_.erase(registered);
}

void System::stage_stopped(detail::ActorCore& stage, const ExitReason& reason) {
  bool first_failure = false;
  {
    std::lock_guard lock(mutex_);
    running_stages_.erase(&stage);
    sources_.erase(&stage);
    // The name is free again before anyone (a restarting supervisor) hears of the exit.
    unregister_locked(stage);
    if (running_stages_.empty()) all_stopped_.notify_all();
    if (stage.supervisor() != nullptr) {
      stage.supervisor()->post(detail::ChildExit{detail::ActorRef(&stage), reason});
      return;
    }
    if (reason.is_abnormal() && !failure_) {
      failure_ = reason;
      first_failure = true;
    }
  }
  // Linked stages: one failure shuts the rest down.
  if (first_failure) stop();
}

void System::wait() {
  if (const detail::ActorCore* stage = own_stage_running_here(scheduler_)) {
    throw std::logic_error("System::wait() called from stage '" + stage->name() +
                           "' of the same System: it could never return, as that stage cannot stop while it waits");
  }
  start();
  if (manual_ != nullptr) {
    manual_->run_until_idle();
    std::lock_guard lock(mutex_);
    if (!running_stages_.empty() && !failure_) {
      throw std::logic_error(std::to_string(running_stages_.size()) + " stage(s) still running with nothing left to do");
    }
  } else {
    std::unique_lock lock(mutex_);
    all_stopped_.wait(lock, [this] { return running_stages_.empty(); });
  }
  std::lock_guard lock(mutex_);
  if (failure_) throw StageError(*failure_);
}

detail::ActorRef System::whereis(std::string_view name) const {
  std::lock_guard lock(mutex_);
  auto found = registry_.find(std::string(name));
  // A registered stage has not stopped (stage_stopped unregisters it), so it is still alive.
  return found == registry_.end() ? detail::ActorRef() : detail::ActorRef(found->second);
}

std::any System::call(detail::ActorCore& stage, std::any request, std::chrono::nanoseconds timeout) {
  if (detail::runs_beneath_caller(stage)) {
    throw CallError(CallError::Kind::calling_self,
                    "call to '" + stage.name() + "' from a stage it is running (on the same thread): it cannot answer");
  }
  auto reply = std::make_shared<detail::CallReply>();
  stage.post(detail::Call{std::move(request), reply});
  // The caller waits: the stages this thread holds for later must be free to run, the callee
  // among them.
  detail::before_blocking_wait();
  // On a ManualScheduler nothing runs unless stepped: step until answered or idle.
  if (manual_ != nullptr) {
    while (!reply->done() && manual_->run_once()) {
    }
    timeout = std::chrono::nanoseconds::zero();
  }
  std::string error;
  std::optional<std::any> answer = reply->wait_for(timeout, error);
  if (!answer) {
    throw CallError(CallError::Kind::timeout, "call to '" + stage.name() + "' timed out after " +
                                                  std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count()) +
                                                  " ms");
  }
  if (!error.empty()) {
    const bool gone = error.starts_with("no such stage");
    throw CallError(gone ? CallError::Kind::noproc : CallError::Kind::failed, error);
  }
  return std::move(*answer);
}

std::uint64_t System::send_after(detail::ActorCore& stage, std::chrono::nanoseconds delay, std::any message) {
  auto shared = std::make_shared<std::any>(std::move(message));
  return timers_->schedule_after(delay, [target = detail::ActorRef(&stage), shared] { target->post(detail::Info{std::move(*shared)}); });
}

std::size_t System::running() const {
  std::lock_guard lock(mutex_);
  return running_stages_.size();
}

std::optional<ExitReason> System::failure() const {
  std::lock_guard lock(mutex_);
  return failure_;
}

}  // namespace sluice
