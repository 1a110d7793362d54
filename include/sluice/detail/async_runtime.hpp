#pragma once
// The threads behind async_stream when it runs outside a System: an arena of oneTBB workers
// for CPU tasks and coroutine resumptions, a pool of threads for blocking tasks, and a timer.
// One per process, created on first use; at exit it wakes sleeping coroutines, then joins
// everything (tasks must finish cooperatively: no thread is ever killed).
#include <sluice/detail/timer_service.hpp>
#include <sluice/task_kind.hpp>

#include <cstddef>
#include <functional>
#include <memory>

namespace sluice::detail {

class AsyncRuntime {
 public:
  static AsyncRuntime& instance();

  void run(TaskKind kind, std::function<void()> task);
  TimerService& timers();
  // How many CPU tasks can run at once on the arena.
  std::size_t cpu_slots() const noexcept;

  struct StandIn;
  // Held by a thread while it sleeps waiting on tasks (an async_stream's consumer). oneTBB
  // counts a worker asleep in a task as busy, and wakes no other in its place unless other work
  // in the process asks for one: on a System's worker, or in a CPU task, the arena's tasks
  // (CPU tasks, coroutine resumptions) could wait for ever. So while such a thread sleeps, a
  // thread of the runtime's own stands in for it in the arena, running them: one per sleeper,
  // so that streams nested in CPU tasks each have one. Nothing is lent from other threads,
  // which oneTBB does not count.
  class Lend {
   public:
    Lend() noexcept;
    ~Lend();
    Lend(const Lend&) = delete;
    Lend& operator=(const Lend&) = delete;

   private:
    StandIn* stand_in_;
  };

  AsyncRuntime(const AsyncRuntime&) = delete;
  AsyncRuntime& operator=(const AsyncRuntime&) = delete;

 private:
  struct Impl;
  AsyncRuntime();
  ~AsyncRuntime();
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::detail
