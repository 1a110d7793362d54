#include <sluice/detail/async_runtime.hpp>
#include <sluice/detail/blocking_pool.hpp>
#include <sluice/task.hpp>

#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <stdexcept>

namespace sluice::detail {

struct AsyncRuntime::Impl {
  // Sleeping coroutines are woken first (their resumptions go to the arena; a sleep begun from
  // then on ends at once, so nothing waits on a timer). Then every task is waited for, of
  // either kind together: a CPU task may start blocking ones (a stream nested in it) and a
  // blocking task CPU ones, so neither pool can go while the other still runs. Once none is
  // left nothing may start, and the blocking threads are joined and the arena drained.
  void shutdown() {
    timers.fire_all_now();
    {
      std::unique_lock lock(mutex);
      idle.wait(lock, [this] { return outstanding == 0; });
      closed = true;
    }
    blocking.reset();
    arena.execute([this] { group.wait(); });
  }

  void task_done() {
    std::lock_guard lock(mutex);
    if (--outstanding == 0) idle.notify_all();
  }

  oneapi::tbb::task_arena arena{};
  oneapi::tbb::task_group group;
  std::optional<BlockingPool> blocking{std::in_place};
  TimerService timers;
  std::mutex mutex;
  std::condition_variable idle;
  std::size_t outstanding = 0;  // guarded by mutex: tasks submitted and not yet over
  bool closed = false;          // guarded by mutex: shut down, no task may start
};

AsyncRuntime::AsyncRuntime() : impl_(std::make_unique<Impl>()) {}
AsyncRuntime::~AsyncRuntime() { impl_->shutdown(); }

AsyncRuntime& AsyncRuntime::instance() {
  static AsyncRuntime runtime;
  return runtime;
}

void AsyncRuntime::run(TaskKind kind, std::function<void()> task) {
  Impl& impl = *impl_;
  {
    std::lock_guard lock(impl.mutex);
    if (impl.closed) throw std::runtime_error("async runtime: the process is exiting, no task can start");
    ++impl.outstanding;
  }
  std::function<void()> counted = [&impl, task = std::move(task)]() mutable {
    struct Over {
      Impl& impl;
      ~Over() { impl.task_done(); }
    } over{impl};  // even if it throws: shutdown must not wait for it
    task();
    task = nullptr;  // destroyed before it counts as over: it may hold the last handle to a stream
  };
  try {
    if (kind == TaskKind::blocking) {
      impl.blocking->submit(std::move(counted));
    } else {
      impl.arena.enqueue(impl.group.defer(std::move(counted)));
    }
  } catch (...) {
    impl.task_done();  // not handed over: it will not run
    throw;
  }
}

TimerService& AsyncRuntime::timers() { return impl_->timers; }

std::size_t AsyncRuntime::cpu_slots() const noexcept {
  return static_cast<std::size_t>(std::max(1, impl_->arena.max_concurrency()));
}

void resume_after(std::chrono::nanoseconds delay, std::coroutine_handle<> waiting) {
  auto& runtime = AsyncRuntime::instance();
  runtime.timers().schedule_after(delay, [&runtime, waiting] {
    runtime.run(TaskKind::cpu, [waiting] { waiting.resume(); });
  });
}

}  // namespace sluice::detail
