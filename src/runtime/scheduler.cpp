#include "scheduler.hpp"

#include <sluice/detail/actor.hpp>
#include <sluice/manual_scheduler.hpp>

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <algorithm>
#include <thread>

namespace sluice {

bool ManualScheduler::run_once() {
  if (ready_.empty()) return false;
  detail::ActorCore* actor = ready_.front();
  ready_.pop_front();
  if (actor->run_slice()) ready_.push_back(actor);
  return true;
}

std::size_t ManualScheduler::run_until_idle(std::size_t limit) {
  std::size_t slices = 0;
  while (slices < limit && run_once()) ++slices;
  return slices;
}

std::size_t ManualScheduler::run_until_idle_except(const std::function<bool(const detail::ActorCore&)>& hold) {
  std::size_t slices = 0;
  std::deque<detail::ActorCore*> held;
  while (!ready_.empty()) {
    detail::ActorCore* actor = ready_.front();
    ready_.pop_front();
    if (hold(*actor)) {
      held.push_back(actor);
      continue;
    }
    ++slices;
    if (actor->run_slice()) ready_.push_back(actor);
  }
  ready_ = std::move(held);
  return slices;
}

namespace detail {
namespace {

class TbbScheduler;
// The scheduler whose task this thread is running, if any: a stage that wakes another from
// inside the arena spawns into the worker's own deque, which is cheaper than an enqueue.
thread_local const TbbScheduler* current_scheduler = nullptr;

class TbbScheduler final : public Scheduler {
 public:
  explicit TbbScheduler(std::size_t threads)
      : threads_(threads == 0 ? std::max(1u, std::thread::hardware_concurrency()) : threads),
        // No thread of ours joins the arena, so every slot goes to a worker; oneTBB counts the
        // main thread in its default limit, which would otherwise leave one core idle.
        parallelism_(oneapi::tbb::global_control::max_allowed_parallelism, threads_ + 1),
        arena_(static_cast<int>(threads_), 0) {}

  // task_group's destructor may throw missing_wait; waiting first makes that impossible.
  ~TbbScheduler() noexcept override {
    arena_.execute([this] { group_.wait(); });
  }

  void schedule(ActorCore& actor) override {
    if (current_scheduler == this) {
      group_.run([this, &actor] { run(actor); });
    } else {
      arena_.enqueue(group_.defer([this, &actor] { run(actor); }));
    }
  }

 private:
  void run(ActorCore& actor) {
    const TbbScheduler* outer = current_scheduler;
    current_scheduler = this;
    // A stage with work left yields: it goes to the back of the arena's queue so that other
    // stages get their turn.
    if (actor.run_slice()) arena_.enqueue(group_.defer([this, &actor] { run(actor); }));
    current_scheduler = outer;
  }

  std::size_t threads_;
  oneapi::tbb::global_control parallelism_;
  oneapi::tbb::task_arena arena_;
  oneapi::tbb::task_group group_;
};

}  // namespace

std::unique_ptr<Scheduler> make_tbb_scheduler(std::size_t threads) {
  return std::make_unique<TbbScheduler>(threads);
}

}  // namespace detail
}  // namespace sluice
