#pragma once
// The type-erased actor core: a name, a mailbox, and a slice the scheduler runs.
#include <sluice/detail/messages.hpp>
#include <sluice/exit_reason.hpp>
#include <sluice/scheduler.hpp>
#include <sluice/stage_stats.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <oneapi/tbb/spin_mutex.h>

#include <string>
#include <utility>
#include <vector>

namespace sluice::detail {

class TimerService;

// Told when a stage stops, once, from the stage's own slice; and the owner of shared services.
class StageHost {
 public:
  virtual void stage_stopped(ActorCore& stage, const ExitReason& reason) = 0;
  virtual TimerService& timers() = 0;
  // Whether stages time their slices (StageStats::busy_ns).
  bool measures_busy_time() const noexcept { return measure_busy_time_.load(std::memory_order_relaxed); }

 protected:
  ~StageHost() = default;
  std::atomic<bool> measure_busy_time_{false};
};

// What a push did.
enum class Delivery {
  schedule,  // the actor was idle: the sender must schedule it
  queued,    // the actor is scheduled or running, and will get to the message
  closed,    // the actor has stopped for good: the message is the sender's to deal with
};

// A multi-producer, single-consumer mailbox. Senders append under a lock; the running slice
// swaps the whole backlog out with one lock and works through it without any. Both vectors
// keep their capacity, so a steady stream of messages allocates nothing. The lock is oneTBB's
// spin_mutex: it guards a push_back or a swap, far shorter than a futex round trip.
template <class Message>
class Mailbox {
 public:
  // On Delivery::closed the message is left in `message`.
  Delivery push(Message&& message) {
    oneapi::tbb::spin_mutex::scoped_lock lock(mutex_);
    if (closed_) return Delivery::closed;
    incoming_.push_back(std::move(message));
    has_incoming_.store(true, std::memory_order_relaxed);
    if (scheduled_) return Delivery::queued;
    scheduled_ = true;
    return Delivery::schedule;
  }

  // The next message for the running slice. nullptr means there is none, and then the actor
  // has gone idle in the same step: the next push schedules it again. With `close` (a stopped
  // actor), the mailbox closes instead: no push is accepted again.
  Message* next(bool close) {
    if (next_ == drained_end()) {
      draining_.clear();
      oneapi::tbb::spin_mutex::scoped_lock lock(mutex_);
      std::swap(incoming_, draining_);
      has_incoming_.store(false, std::memory_order_relaxed);
      start_draining();
      if (draining_.empty()) {
        scheduled_ = false;
        closed_ = close;
        return nullptr;
      }
    }
    return next_++;
  }

  // The next message for a turn kept past its work (KeptTurns): nullptr when there is none,
  // and the turn stays taken. A message pushed while this looks goes unseen until the next
  // look, or until finish_slice() gives the turn back and finds it.
  Message* next_kept() {
    if (next_ != drained_end()) return next_++;
    if (!has_incoming_.load(std::memory_order_relaxed)) return nullptr;  // no lock for an empty mailbox
    draining_.clear();
    oneapi::tbb::spin_mutex::scoped_lock lock(mutex_);
    std::swap(incoming_, draining_);
    has_incoming_.store(false, std::memory_order_relaxed);
    start_draining();
    return draining_.empty() ? nullptr : next_++;
  }

  // Takes the turn of an idle mailbox, as a push that schedules would, but with no message:
  // the caller then runs the actor itself, and ends with next() or finish_slice(). An idle
  // mailbox is empty, so whatever the caller hands over directly comes after everything the
  // actor was sent before.
  bool try_claim() {
    oneapi::tbb::spin_mutex::scoped_lock lock(mutex_);
    if (closed_ || scheduled_) return false;
    scheduled_ = true;
    return true;
  }

  // Makes a new mailbox look scheduled, with no slice to run it: messages queue, and nothing
  // schedules the actor until its holder does (ActorCore::release).
  void hold() {
    oneapi::tbb::spin_mutex::scoped_lock lock(mutex_);
    scheduled_ = true;
  }

  // For the running turn: true when no message sent to the actor before now is left to handle.
  // Relaxed is enough: a push by this thread, or by a stage before this thread took that stage's
  // turn (through its mailbox's lock), happened before; a push from another thread at the same
  // moment has no order to keep with the caller's.
  [[gnu::always_inline]] bool quiet() const noexcept {
    return next_ == drained_end() && !has_incoming_.load(std::memory_order_relaxed);
  }

  // Ends a slice cut short by its budget: true when messages remain (the actor stays
  // scheduled), false when it went idle, or closed (with `close`, as for next()).
  bool finish_slice(bool close) {
    if (next_ != drained_end()) return true;
    draining_.clear();
    start_draining();
    oneapi::tbb::spin_mutex::scoped_lock lock(mutex_);
    if (!incoming_.empty()) return true;
    scheduled_ = false;
    closed_ = close;
    return false;
  }

 private:
  // The cursor runs over draining_ by pointer: a test of `quiet()` on every event then compares
  // it with the vector's end, where an index against size() divides by the message's size.
  void start_draining() noexcept { next_ = draining_.data(); }
  const Message* drained_end() const noexcept { return draining_.data() + draining_.size(); }

  oneapi::tbb::spin_mutex mutex_;
  std::vector<Message> incoming_;  // guarded by mutex_
  bool scheduled_ = false;         // guarded by mutex_
  bool closed_ = false;            // guarded by mutex_
  std::atomic<bool> has_incoming_{false};  // !incoming_.empty(), written under mutex_
  std::vector<Message> draining_;  // the running slice's alone
  Message* next_ = nullptr;        // the next message of draining_ to handle
};

// The consumers a slice ran at once (StageActor::post_events) whose turns it keeps until it
// ends, idle, rather than giving each back after each batch: the next batch then skips the
// claim, and the turn is not given back and taken again for every event, each a lock on the
// consumer's mailbox. Messages others send a kept stage queue, and the slice's end gives the
// turn back and schedules the stage if any came (let_go). Lives on the stack of the slice.
class KeptTurns {
 public:
  KeptTurns() = default;
  KeptTurns(const KeptTurns&) = delete;
  KeptTurns& operator=(const KeptTurns&) = delete;
  ~KeptTurns() { let_go(); }

  [[gnu::always_inline]] bool holds(const ActorCore& stage) const noexcept {
    for (std::size_t i = 0; i < count_; ++i)
      if (stages_[i] == &stage) return true;
    return false;
  }
  // False when full: the caller gives the turn back itself.
  bool add(ActorCore& stage) noexcept {
    if (count_ == stages_.size()) return false;
    stages_[count_++] = &stage;
    return true;
  }
  void remove(const ActorCore& stage) noexcept {
    ActorCore** last = std::remove(begin(), end(), &stage);
    count_ = static_cast<std::size_t>(last - stages_.data());
  }
  // Gives back every kept turn but those of stages running on this thread (a wait inside one
  // of them, before_blocking_wait); at the slice's end none is.
  void let_go();

 private:
  ActorCore** begin() noexcept { return stages_.data(); }
  ActorCore** end() noexcept { return stages_.data() + count_; }

  // A slice hands off at once at most max_hand_off_depth deep, to one consumer at each level.
  std::array<ActorCore*, defaults::max_hand_off_depth> stages_{};
  std::size_t count_ = 0;
};

// The stages whose callbacks are running on this thread, innermost first: the one whose slice
// the scheduler runs, and the consumers it handed batches to at once (see
// StageActor::post_events). Each frame lives on the stack of the code that runs the stage.
struct RunningFrame {
  const ActorCore* stage;
  const Scheduler* scheduler;  // the stage's
  std::size_t& budget;         // messages left in the turn, shared by the stages it runs at once
  KeptTurns& kept;             // the slice's, shared by the stages it runs at once
  RunningFrame* outer;
  std::size_t depth;                // frames outside it on this thread: hand-offs, or nested steps
  std::uint64_t handed_off_ns = 0;  // busy time of consumers run at once inside this stage
};
inline thread_local RunningFrame* running_here = nullptr;

// Pushes a frame for the lifetime of the guard.
class RunningGuard {
 public:
  RunningGuard(const ActorCore& stage, const Scheduler& scheduler, std::size_t& budget, KeptTurns& kept) noexcept
      : frame_{&stage, &scheduler, budget, kept, running_here, running_here != nullptr ? running_here->depth + 1 : 0} {
    running_here = &frame_;
  }
  RunningGuard(const RunningGuard&) = delete;
  RunningGuard& operator=(const RunningGuard&) = delete;
  ~RunningGuard() { running_here = frame_.outer; }

 private:
  RunningFrame frame_;
};

// True when `stage` is running beneath the caller on this thread: a synchronous call to it
// could never be answered.
inline bool runs_beneath_caller(const ActorCore& stage) noexcept {
  for (const RunningFrame* frame = running_here; frame != nullptr; frame = frame->outer)
    if (frame->stage == &stage) return true;
  return false;
}

class ActorCore {
 public:
  ActorCore(Scheduler& scheduler, StageHost& host, std::string name)
      : scheduler_(scheduler), host_(host), name_(std::move(name)) {}
  ActorCore(const ActorCore&) = delete;
  ActorCore& operator=(const ActorCore&) = delete;
  virtual ~ActorCore() = default;

  // Handles up to the scheduler's throughput() messages; true when messages remain, in which
  // case the actor stays scheduled and the scheduler must run it again.
  virtual bool run_slice() = 0;
  // Any stage can send control messages to any other, whatever its event types. False when the
  // actor had stopped for good: the message was then answered on this thread.
  virtual bool post(Control&& message) = 0;
  // Gives back a turn a slice kept (KeptTurns), and schedules the actor if messages came
  // meanwhile. Only actors that are handed batches at once keep turns.
  virtual void let_go_turn() {}
  // An ask from a consumer this producer handed a batch to at once, running beneath it on this
  // thread (see RunningFrame). The producer is mid-message and its turn is taken, so the ask may
  // skip the mailbox and its lock (StageActor). Actors that never produce just post it.
  virtual void ask_beneath(SubscriptionId id, std::size_t count) { post(Ask{id, count}); }

  const std::string& name() const noexcept { return name_; }
  const StageStats& stats() const noexcept { return stats_; }
  // True once the actor has stopped, from any thread.
  bool has_stopped() const noexcept { return exited_.load(std::memory_order_acquire); }

  // Held (System::spawn_held): its messages queue, and it runs only once released. Set before
  // the stage is shared; cleared by the System, under its start lock.
  bool held() const noexcept { return held_.load(std::memory_order_acquire); }
  // Lets a held actor run: its mailbox looks scheduled already, so this is the one schedule.
  void release() {
    held_.store(false, std::memory_order_release);
    scheduler_.schedule(*this);
  }

  // The System's hold on a running actor, taken when it adopts the actor. The actor lets go of
  // it at the end of its last slice, once it has stopped and its mailbox is closed: no message
  // can schedule it again, so nothing but other handles can reach it after that.
  void hold_self(ActorRef self) noexcept { self_ = std::move(self); }

  // The supervisor told when this stage stops (none: the stage is linked to its System). Set
  // before the System adopts the stage, and never changed after. Held, so that it is there to
  // tell even for an instance it no longer counts as its child (one whose start failed).
  ActorCore* supervisor() const noexcept { return supervisor_.get(); }
  void set_supervisor(ActorCore* supervisor) noexcept { supervisor_ = ActorRef(supervisor); }

 protected:
  // Adds a watcher, told by notify_stopped. Watchers that have stopped themselves are dropped
  // here: a long-lived stage monitored by one restarted watcher after another keeps none of the
  // stopped ones (OTP drops a monitor when its watcher dies).
  void add_monitor(ActorRef watcher) {
    std::erase_if(monitors_, [](const ActorRef& stopped) { return stopped->has_stopped(); });
    monitors_.push_back(std::move(watcher));
  }
  // From the actor's own slice, once: tells its watchers and its host why it stopped.
  void notify_stopped(const ExitReason& reason) {
    exited_.store(true, std::memory_order_release);
    for (const ActorRef& watcher : std::exchange(monitors_, {})) watcher->post(Info{StageDown{name_, reason}});
    host_.stage_stopped(*this, reason);
  }

  // Queues `message` and schedules this actor if it was idle. False when the mailbox has
  // closed: the message is then left with the caller, to answer for a stopped actor.
  template <class Message>
  bool enqueue(Mailbox<Message>& mailbox, Message&& message) {
    switch (mailbox.push(std::move(message))) {
      case Delivery::schedule:
        scheduler_.schedule(*this);
        return true;
      case Delivery::queued:
        return true;
      case Delivery::closed:
        break;
    }
    return false;
  }

  // A turn: hands `handle` messages while `budget` lasts; true when messages remain, or work
  // the actor keeps outside its mailbox (`holds_work`: it stays scheduled for it). Once the
  // mailbox runs dry the actor is idle, and another worker may run it, or free it: nothing of it
  // is touched after that. A stopped actor (`stopped()`) closes its mailbox instead, and letting
  // go of its hold on itself is then the last thing it does, which may free it.
  template <class Message, class Stopped, class Handle, class HoldsWork>
  bool drain(Mailbox<Message>& mailbox, std::size_t& budget, Stopped stopped, Handle handle, HoldsWork holds_work) {
    bool closing = stopped();
    while (budget > 0) {
      Message* message = mailbox.next(closing);
      if (message == nullptr) return closing ? close_slice() : false;
      --budget;
      handle(*message);
      closing = stopped();
    }
    if (holds_work() || mailbox.finish_slice(closing)) return true;
    return closing ? close_slice() : false;
  }

  Scheduler& scheduler_;
  StageHost& host_;
  std::atomic<bool> held_{false};
  std::string name_;
  StageStats stats_;

 private:
  friend class ActorRef;
  ActorRef supervisor_;
  std::atomic<std::size_t> refs_{0};
  ActorRef self_;
  std::atomic<bool> exited_{false};
  std::vector<ActorRef> monitors_;  // the running slice's alone

  bool close_slice() noexcept {
    ActorRef last = std::move(self_);
    return false;
  }
};

inline void KeptTurns::let_go() {
  std::size_t next = 0;
  while (next < count_) {
    ActorCore* stage = stages_[next];
    if (runs_beneath_caller(*stage)) {
      ++next;
      continue;
    }
    stages_[next] = stages_[--count_];
    stage->let_go_turn();
  }
}

// Before this thread blocks (System::call, or iterating an async_stream inside a callback), it
// lets go of the stages it holds for later, so that they can run elsewhere meanwhile: a call to
// one of them would otherwise never be answered. Those are the turns its slices keep (stages
// running on this thread keep theirs), and the stage its worker would run after the current
// slice (the scheduler's run-next slot). Stages queued behind that slot need nothing: the
// queue's helper moves them to an idle worker. Defined with the scheduler.
void before_blocking_wait();
// True on a System's worker while it runs a stage (not on a ManualScheduler's thread).
bool on_system_worker() noexcept;

inline ActorRef::ActorRef(ActorCore* actor) noexcept : actor_(actor) {
  if (actor_ != nullptr) actor_->refs_.fetch_add(1, std::memory_order_relaxed);
}

inline ActorRef::~ActorRef() {
  // acq_rel: whatever any holder did to the actor happens before its deletion.
  if (actor_ != nullptr && actor_->refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete actor_;
}

}  // namespace sluice::detail
