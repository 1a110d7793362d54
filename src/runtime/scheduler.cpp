#include "scheduler.hpp"

#include <sluice/detail/actor.hpp>
#include <sluice/detail/blocking_pool.hpp>
#include <sluice/manual_scheduler.hpp>

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/info.h>
#include <oneapi/tbb/spin_mutex.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

namespace sluice {

std::optional<ManualScheduler::Ready> ManualScheduler::take() {
  std::lock_guard lock(mutex_);
  if (ready_.empty()) return std::nullopt;
  Ready next = std::move(ready_.front());
  ready_.pop_front();
  return next;
}

void ManualScheduler::run(Ready& next) {
  has_run_.store(true, std::memory_order_relaxed);
  if (next.actor == nullptr) {
    next.task();
  } else if (next.actor->run_slice()) {
    enqueue({next.actor, {}});
  }
}

bool ManualScheduler::run_once() {
  std::optional<Ready> next = take();
  if (!next) return false;
  run(*next);
  return true;
}

std::size_t ManualScheduler::run_until_idle(std::size_t limit) {
  std::size_t slices = 0;
  while (slices < limit && run_once()) ++slices;
  return slices;
}

std::size_t ManualScheduler::run_until_idle_except(const std::function<bool(const detail::ActorCore&)>& hold) {
  std::size_t slices = 0;
  std::deque<Ready> held;
  while (std::optional<Ready> next = take()) {
    if (next->actor != nullptr && hold(*next->actor)) {
      held.push_back(std::move(*next));
      continue;
    }
    run(*next);
    ++slices;
  }
  // Held stages keep their place ahead of anything another thread queued meanwhile.
  std::lock_guard lock(mutex_);
  ready_.insert(ready_.begin(), std::make_move_iterator(held.begin()), std::make_move_iterator(held.end()));
  return slices;
}

namespace detail {
namespace {

class TbbScheduler;
// The scheduler whose task this thread is running, if any.
thread_local TbbScheduler* current_scheduler = nullptr;
// The stage this worker runs as soon as its current slice ends (Go's and Tokio's "run next"
// slot): the first stage a slice wakes runs on the same thread, while the batch it was sent
// is still in this core's cache, and without a task of its own. Measured on W1 (2 workers):
// 2-3x the throughput of spawning every wake, since a cross-core hand-off costs about as much
// as handling a 500-event chunk.
thread_local ActorCore* run_next = nullptr;

// Stages woken on one worker beyond its run-next slot, in wake order. The worker takes them
// itself as its slices end. One helper task at a time lets an idle worker take the front stage
// once the owner has left a stage waiting at least defaults::steal_delay (Go delays stealing
// runnext the same way): short slices keep a chain on one core, while a stage behind a long
// slice, or behind a row of short ones, still moves. One helper per queue rather than a task per
// wake, because a worker that stays in its run-next chain never returns to oneTBB's deque and
// would pile up a stale task for every wake.
struct alignas(64) WakeQueue {
  oneapi::tbb::spin_mutex mutex;
  std::deque<ActorCore*> stages;        // guarded by mutex
  bool helper_spawned = false;          // guarded by mutex: a helper will look at the queue again
  // Stages queued and taken so far, written under the lock and read without it: their
  // difference is the queue's size, and a helper compares them across its looks.
  std::atomic<std::uint64_t> pushed{0};
  std::atomic<std::uint64_t> taken{0};

  // Queues `actor`; true when no helper was spawned yet, and the caller must spawn one.
  bool push(ActorCore& actor) {
    oneapi::tbb::spin_mutex::scoped_lock lock(mutex);
    stages.push_back(&actor);
    pushed.store(pushed.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return !std::exchange(helper_spawned, true);
  }
  // The owner's look before it locks: only the owner pushes, so a queue it sees empty is empty.
  bool looks_empty() const noexcept {
    return pushed.load(std::memory_order_relaxed) == taken.load(std::memory_order_relaxed);
  }

  // The front stage, or nullptr.
  ActorCore* take() {
    oneapi::tbb::spin_mutex::scoped_lock lock(mutex);
    return pop();
  }
  // The same for the helper, which also hands its duty on: `respawn` tells it to spawn the
  // next helper, since stages remain.
  ActorCore* take_as_helper(bool& respawn) {
    oneapi::tbb::spin_mutex::scoped_lock lock(mutex);
    ActorCore* actor = pop();
    respawn = helper_spawned = !stages.empty();
    return actor;
  }
  // A helper that leaves without a stage: true when stages remain and it must spawn the next.
  bool keep_helper() {
    oneapi::tbb::spin_mutex::scoped_lock lock(mutex);
    return helper_spawned = !stages.empty();
  }

 private:
  ActorCore* pop() {
    if (stages.empty()) return nullptr;
    ActorCore* actor = stages.front();
    stages.pop_front();
    taken.store(taken.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return actor;
  }
};
// This worker's queue, while it runs a slice.
thread_local WakeQueue* local_queue = nullptr;

// oneTBB's workers are one pool for every arena in the process, capped process-wide (by the
// smallest live global_control, else by the core count; the cap counts one master thread). An
// arena's size is a cap, not a reservation: while other arenas are busy (the async runtime's CPU
// tasks, a user's own parallel_for, another System), a System could get fewer workers than its
// threads, and a stage blocked in System::call would wait for a callee that no worker is left to
// run. So one limit covers every live System's threads at once, plus an arena of the default
// size for everything else, plus the master: each System gets its workers whatever else is busy,
// as a pool of its own would, and the cores are oversubscribed only while everything is busy.
class WorkerLimit {
 public:
  static WorkerLimit& instance() {
    static WorkerLimit limit;
    return limit;
  }
  void add(std::size_t threads) {
    std::lock_guard lock(mutex_);
    systems_threads_ += threads;
    apply();
  }
  void remove(std::size_t threads) {
    std::lock_guard lock(mutex_);
    systems_threads_ -= threads;
    apply();
  }

 private:
  // The new limit is set before the old one goes, so that it never falls to the default between.
  void apply() {
    using oneapi::tbb::global_control;
    std::unique_ptr<global_control> previous = std::move(control_);
    if (systems_threads_ > 0) {
      const auto others = static_cast<std::size_t>(oneapi::tbb::info::default_concurrency());
      control_ = std::make_unique<global_control>(global_control::max_allowed_parallelism, systems_threads_ + others + 1);
    }
  }

  std::mutex mutex_;
  std::size_t systems_threads_ = 0;              // guarded by mutex_
  std::unique_ptr<oneapi::tbb::global_control> control_;  // guarded by mutex_
};

// A System's share of WorkerLimit, for its lifetime.
class WorkerShare {
 public:
  explicit WorkerShare(std::size_t threads) : threads_(threads) { WorkerLimit::instance().add(threads_); }
  ~WorkerShare() { WorkerLimit::instance().remove(threads_); }
  WorkerShare(const WorkerShare&) = delete;
  WorkerShare& operator=(const WorkerShare&) = delete;

 private:
  std::size_t threads_;
};

class TbbScheduler final : public Scheduler {
 public:
  explicit TbbScheduler(std::size_t threads)
      : threads_(threads == 0 ? std::max(1u, std::thread::hardware_concurrency()) : threads),
        workers_(threads_),
        arena_(static_cast<int>(threads_), 0),
        queues_(threads_) {
    // No thread of ours joins the arena, so every slot goes to a worker (see WorkerLimit).
  }

  // The stages are stopped by now. Blocking tasks still running may post to them, which
  // spawns tasks: so they are joined first, and then the task group is waited for (a
  // task_group destroyed with tasks pending terminates the program).
  ~TbbScheduler() noexcept override {
    start();
    blocking_.reset();
    arena_.execute([this] { group_.wait(); });
  }

  void run_task(std::function<void()> task) override {
    if (!started_.load(std::memory_order_acquire) && hold_task(task)) return;
    enqueue(std::move(task));
  }

  void run_blocking(std::function<void()> task) override { blocking_->submit(std::move(task)); }

  void start() override {
    std::vector<ActorCore*> held;
    std::vector<std::function<void()>> held_tasks;
    {
      std::lock_guard lock(hold_mutex_);
      started_.store(true, std::memory_order_release);
      held.swap(held_);
      held_tasks.swap(held_tasks_);
    }
    for (ActorCore* actor : held) enqueue_run(*actor);
    for (auto& task : held_tasks) enqueue(std::move(task));
  }

  void schedule(ActorCore& actor) noexcept override {
    if (!started_.load(std::memory_order_acquire) && hold(actor)) return;
    if (current_scheduler != this) {
      enqueue_run(actor);
    } else if (run_next == nullptr) {
      run_next = &actor;
    } else {
      queue_here(actor);
    }
  }

  // This worker is about to block: its run-next stage goes to the arena, where another worker
  // takes it. Stages in its wake queue need nothing: the queue's helper takes them once they
  // have waited, as it would behind any long slice.
  void release_run_next() {
    if (run_next != nullptr) {
      enqueue_run(*run_next);
      run_next = nullptr;
    }
  }

 private:
  // Slices run back to back through the run-next slot; past this many, a chain leaves the
  // worker to any task waiting in the arena, so that a ping-pong between two stages cannot hold
  // a worker forever (a helper counts: it takes the stages queued behind the ping-pong).
  static constexpr int max_run_next_hops = 64;
  // How long a helper on an idle worker watches a busy owner's queue before it leaves (it leaves
  // at its first look past this, about 62 us in), and the longest it waits between two looks.
  static constexpr auto max_help_wait = 25 * defaults::steal_delay;
  static constexpr auto max_look_interval = 16 * defaults::steal_delay;

  // Every task goes to the arena's FIFO queue, none to a worker's own deque: oneTBB runs its own
  // deque first, so a chain that kept spawning there would starve the tasks enqueued from outside
  // (a stage woken by a timer or by another thread) on a one-worker System. Each is counted
  // until a worker starts it, so that a chain yields its worker only when a task waits.
  template <class Task>
  void enqueue(Task&& task) {
    waiting_tasks_.fetch_add(1, std::memory_order_relaxed);
    arena_.enqueue(group_.defer([this, task = std::forward<Task>(task)] {
      waiting_tasks_.fetch_sub(1, std::memory_order_relaxed);
      task();
    }));
  }
  void enqueue_run(ActorCore& actor) { enqueue([this, &actor] { run(actor); }); }
  void enqueue_help(WakeQueue& queue) { enqueue([this, &queue] { help(queue); }); }

  // Whether a task waits in the arena for a worker. Relaxed: a task enqueued just after the look
  // waits for the next one, a slice later.
  bool tasks_wait() const noexcept { return waiting_tasks_.load(std::memory_order_relaxed) > 0; }

  // Queues `actor` behind the stages this worker runs after its current slice.
  void queue_here(ActorCore& actor) {
    if (local_queue->push(actor)) enqueue_help(*local_queue);
  }

  void run(ActorCore& first) {
    TbbScheduler* outer_scheduler = std::exchange(current_scheduler, this);
    ActorCore* outer_next = std::exchange(run_next, nullptr);
    WakeQueue* outer_queue = std::exchange(local_queue, &own_queue());
    ActorCore* actor = &first;
    // Counts up to the limit and stays there: a chain with nothing waiting may run for good.
    for (int hop = 0; actor != nullptr; hop = std::min(hop + 1, max_run_next_hops)) {
      // A stage with work left yields: to the back of the arena's queue when a task waits there,
      // else behind the stages this worker has to run, as if woken now. A trip through the arena
      // that nothing waits for only costs (with the hop limit's, about 5% of W1 queued at
      // T = 1000).
      if (actor->run_slice()) {
        if (tasks_wait()) {
          enqueue_run(*actor);
        } else if (run_next == nullptr && local_queue->looks_empty()) {
          run_next = actor;
        } else {
          queue_here(*actor);
        }
      }
      actor = std::exchange(run_next, nullptr);
      if (actor == nullptr && !local_queue->looks_empty()) actor = local_queue->take();
      if (actor != nullptr && hop == max_run_next_hops && tasks_wait()) {
        enqueue_run(*actor);
        actor = nullptr;
      }
    }
    local_queue = outer_queue;
    run_next = outer_next;
    current_scheduler = outer_scheduler;
  }

  WakeQueue& own_queue() {
    // oneTBB gives each thread in the arena its own slot index; the clamp only guards against a
    // caller outside any arena (index -2), which would share the last queue, safely: the queue's
    // lock and its helper serve any number of pushers.
    const auto index = static_cast<std::size_t>(oneapi::tbb::this_task_arena::current_thread_index());
    return queues_[std::min(index, queues_.size() - 1)];
  }

  // The helper of `queue`: takes its front stage, on the owner at once, on another worker only
  // once the owner has left a stage waiting (at least steal_delay). A helper on another worker
  // watches for about max_help_wait, so that it holds that worker only while the owner is busy.
  void help(WakeQueue& queue) {
    if (&queue != &own_queue()) {
      // It looks at the queue now and then, not in a spin: each look pulls the line the owner
      // writes on every push and take to this core, and the owner pays for that. A stage has
      // waited when, at a look, the owner has not yet taken every stage pushed before the
      // previous look (the queue is FIFO). The first look comes after steal_delay; each look the
      // owner passes doubles the wait to the next, up to max_look_interval. At one look per
      // steal_delay, the owner's misses cost W1 queued up to 15% at T = 2^62 (in the slow mode),
      // since a chain of short slices keeps a helper watching all the time.
      using Clock = std::chrono::steady_clock;
      const auto started = Clock::now();
      std::uint64_t pushed_before = queue.pushed.load(std::memory_order_relaxed);
      // The next look is the interval after the later of the planned look and now: if this
      // thread was descheduled, two looks back to back would not prove a wait.
      Clock::duration interval = defaults::steal_delay;
      for (auto look = started + interval;; look = std::max(look, Clock::now()) + interval) {
        while (Clock::now() < look) std::this_thread::yield();
        if (queue.taken.load(std::memory_order_relaxed) < pushed_before) break;
        pushed_before = queue.pushed.load(std::memory_order_relaxed);
        interval = std::min<Clock::duration>(2 * interval, max_look_interval);
        if (look - started >= max_help_wait) {
          // The owner keeps up: go, and leave a helper in oneTBB's queue while stages remain.
          if (queue.keep_helper()) enqueue_help(queue);
          return;
        }
      }
    }
    bool respawn = false;
    ActorCore* actor = queue.take_as_helper(respawn);
    if (respawn) enqueue_help(queue);
    if (actor != nullptr) run(*actor);
  }

  // Keeps `actor` for start() unless the scheduler started meanwhile.
  bool hold(ActorCore& actor) {
    std::lock_guard lock(hold_mutex_);
    if (started_.load(std::memory_order_relaxed)) return false;
    held_.push_back(&actor);
    return true;
  }

  bool hold_task(std::function<void()>& task) {
    std::lock_guard lock(hold_mutex_);
    if (started_.load(std::memory_order_relaxed)) return false;
    held_tasks_.push_back(std::move(task));
    return true;
  }

  std::atomic<bool> started_{false};
  std::mutex hold_mutex_;
  std::vector<ActorCore*> held_;                     // guarded by hold_mutex_
  std::vector<std::function<void()>> held_tasks_;  // guarded by hold_mutex_
  std::size_t threads_;
  WorkerShare workers_;  // before the arena, and outliving it
  oneapi::tbb::task_arena arena_;
  oneapi::tbb::task_group group_;
  std::vector<WakeQueue> queues_;  // one per arena slot
  // Enqueued in the arena, not yet started. On a line of its own: every enqueue and start
  // writes it, and queues_ beside it is read at every run().
  alignas(64) std::atomic<std::size_t> waiting_tasks_{0};
  std::optional<BlockingPool> blocking_{std::in_place};  // joined first: its tasks post to stages
};

}  // namespace

std::unique_ptr<Scheduler> make_tbb_scheduler(std::size_t threads) {
  return std::make_unique<TbbScheduler>(threads);
}

bool on_system_worker() noexcept { return current_scheduler != nullptr; }

void before_blocking_wait() {
  for (RunningFrame* frame = running_here; frame != nullptr; frame = frame->outer) frame->kept.let_go();
  // After the turns: a kept stage that was sent messages meanwhile may be woken into the slot.
  if (current_scheduler != nullptr) current_scheduler->release_run_next();
}

}  // namespace detail
}  // namespace sluice
