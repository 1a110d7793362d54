#include "scheduler.hpp"

#include <sluice/detail/actor.hpp>
#include <sluice/detail/blocking_pool.hpp>
#include <sluice/manual_scheduler.hpp>

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <atomic>
#include <mutex>
#include <optional>
#include <vector>
#include <thread>
#include <utility>

namespace sluice {

bool ManualScheduler::run_once() {
  if (ready_.empty()) return false;
  Ready next = std::move(ready_.front());
  ready_.pop_front();
  if (next.actor == nullptr) {
    next.task();
  } else if (next.actor->run_slice()) {
    ready_.push_back({next.actor, {}});
  }
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
  while (!ready_.empty()) {
    if (ready_.front().actor != nullptr && hold(*ready_.front().actor)) {
      held.push_back(std::move(ready_.front()));
      ready_.pop_front();
      continue;
    }
    run_once();
    ++slices;
  }
  ready_ = std::move(held);
  return slices;
}

namespace detail {
namespace {

class TbbScheduler;
// The scheduler whose task this thread is running, if any.
thread_local const TbbScheduler* current_scheduler = nullptr;
// The stage this worker runs as soon as its current slice ends (Go's and Tokio's "run next"
// slot): the first stage a slice wakes runs on the same thread, while the batch it was sent
// is still in this core's cache, and without a task of its own. Measured on W1 (2 workers):
// 2-3x the throughput of spawning every wake, since a cross-core hand-off costs about as much
// as handling a 500-event chunk.
thread_local ActorCore* run_next = nullptr;

// Further stages woken on this worker, in order, each with its run ticket. Each also gets a
// task that an idle worker can steal; the thief waits defaults::steal_delay for this worker to
// take the stage first, so short slices keep a chain on one core and long ones still spread.
struct Woken {
  ActorCore* actor;
  std::uint64_t ticket;
};
thread_local std::deque<Woken> run_soon;

class TbbScheduler final : public Scheduler {
 public:
  explicit TbbScheduler(std::size_t threads)
      : threads_(threads == 0 ? std::max(1u, std::thread::hardware_concurrency()) : threads),
        // No thread of ours joins the arena, so every slot goes to a worker; oneTBB counts the
        // main thread in its default limit, which would otherwise leave one core idle.
        parallelism_(oneapi::tbb::global_control::max_allowed_parallelism, threads_ + 1),
        arena_(static_cast<int>(threads_), 0) {}

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
    arena_.enqueue(group_.defer(std::move(task)));
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
    for (ActorCore* actor : held) arena_.enqueue(group_.defer([this, actor] { run(*actor); }));
    for (auto& task : held_tasks) arena_.enqueue(group_.defer(std::move(task)));
  }

  void schedule(ActorCore& actor) override {
    if (!started_.load(std::memory_order_acquire) && hold(actor)) return;
    if (current_scheduler != this) {
      arena_.enqueue(group_.defer([this, &actor] { run(actor); }));
    } else if (run_next == nullptr) {
      run_next = &actor;
    } else {
      const std::uint64_t ticket = actor.open_ticket();
      // The task first: it alone guarantees the stage runs, the entry only lets this worker
      // get there sooner.
      group_.run([this, &actor, ticket, owner = &run_soon] { run_stolen(actor, ticket, owner); });
      run_soon.push_back({&actor, ticket});
    }
  }

 private:
  // Slices run back to back through the run-next slot before the rest is left to the task
  // queue, so that a ping-pong between two stages cannot hold a worker forever.
  static constexpr int max_run_next_hops = 64;

  void run(ActorCore& first) {
    const TbbScheduler* outer_scheduler = std::exchange(current_scheduler, this);
    ActorCore* outer_next = std::exchange(run_next, nullptr);
    ActorCore* actor = &first;
    for (int hop = 0; actor != nullptr; ++hop) {
      // A stage with work left yields: it goes to the back of the arena's queue so that other
      // stages get their turn.
      if (actor->run_slice()) arena_.enqueue(group_.defer([this, actor] { run(*actor); }));
      actor = std::exchange(run_next, nullptr);
      while (actor == nullptr && !run_soon.empty()) {
        const Woken woken = run_soon.front();
        run_soon.pop_front();
        if (woken.actor->claim(woken.ticket)) actor = woken.actor;
      }
      if (actor != nullptr && hop == max_run_next_hops) {
        group_.run([this, actor] { run(*actor); });
        actor = nullptr;
      }
    }
    // Entries left (after the hop limit, or a caller's, in a run nested in a slice's oneTBB wait)
    // must not outlive this run: their stages may stop and be destroyed, and this thread may next
    // run another System's stages. Their tasks run them.
    run_soon.clear();
    run_next = outer_next;
    current_scheduler = outer_scheduler;
  }

  // The task of a stage in `owner`'s run_soon. Whichever of the task and `owner` comes first
  // runs the stage; a task on another worker first gives `owner` steal_delay to come.
  void run_stolen(ActorCore& actor, std::uint64_t ticket, const std::deque<Woken>* owner) {
    if (owner != &run_soon) {
      const auto deadline = std::chrono::steady_clock::now() + defaults::steal_delay;
      while (actor.ticket_open(ticket) && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    }
    if (actor.claim(ticket)) run(actor);
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
  oneapi::tbb::global_control parallelism_;
  oneapi::tbb::task_arena arena_;
  oneapi::tbb::task_group group_;
  std::optional<BlockingPool> blocking_{std::in_place};  // joined first: its tasks post to stages
};

}  // namespace

std::unique_ptr<Scheduler> make_tbb_scheduler(std::size_t threads) {
  return std::make_unique<TbbScheduler>(threads);
}

}  // namespace detail
}  // namespace sluice
