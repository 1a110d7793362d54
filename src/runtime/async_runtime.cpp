#include <sluice/detail/async_runtime.hpp>
#include <sluice/detail/blocking_pool.hpp>
#include <sluice/task.hpp>

#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <algorithm>
#include <optional>

namespace sluice::detail {

struct AsyncRuntime::Impl {
  // Shutdown order matters: sleeping coroutines are woken first (their resumptions go to the
  // arena), blocking tasks are joined, then the arena drains; a sleep begun meanwhile ends at
  // once, so the drain cannot wait on a timer.
  void shutdown() {
    timers.fire_all_now();
    blocking.reset();
    arena.execute([this] { group.wait(); });
  }

  oneapi::tbb::task_arena arena{};
  oneapi::tbb::task_group group;
  std::optional<BlockingPool> blocking{std::in_place};
  TimerService timers;
};

AsyncRuntime::AsyncRuntime() : impl_(std::make_unique<Impl>()) {}
AsyncRuntime::~AsyncRuntime() { impl_->shutdown(); }

AsyncRuntime& AsyncRuntime::instance() {
  static AsyncRuntime runtime;
  return runtime;
}

void AsyncRuntime::run(TaskKind kind, std::function<void()> task) {
  if (kind == TaskKind::blocking) {
    impl_->blocking->submit(std::move(task));
  } else {
    impl_->arena.enqueue(impl_->group.defer(std::move(task)));
  }
}

TimerService& AsyncRuntime::timers() { return impl_->timers; }

std::size_t AsyncRuntime::cpu_slots() const noexcept {
  return static_cast<std::size_t>(std::max(1, impl_->arena.max_concurrency()));
}

void resume_after(std::chrono::nanoseconds delay, std::coroutine_handle<> waiting) {
  auto& runtime = AsyncRuntime::instance();
  runtime.timers().schedule(TimerService::Clock::now() + delay, [&runtime, waiting] {
    runtime.run(TaskKind::cpu, [waiting] { waiting.resume(); });
  });
}

}  // namespace sluice::detail
