#include <sluice/detail/actor.hpp>
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
#include <stop_token>
#include <thread>
#include <utility>

namespace sluice::detail {
namespace {
// True while this thread runs one of the runtime's CPU tasks (on a oneTBB worker, or the
// stand-in).
thread_local bool in_cpu_task = false;
struct CpuTaskScope {
  bool outer = std::exchange(in_cpu_task, true);
  ~CpuTaskScope() { in_cpu_task = outer; }
};
}  // namespace

struct AsyncRuntime::Impl {
  // The arena is initialised here, before another thread can reach it: oneTBB initialises
  // it lazily on first use, and max_concurrency() (cpu_slots) reads what that writes without
  // synchronisation, so a first use on one thread (the stand-in's) raced a read on another.
  Impl() { arena.initialize(); }

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
    if (stand_in.joinable()) {
      stand_in.request_stop();
      end_stand_in_wait();
      stand_in.join();
    }
    arena.execute([this] { group.wait(); });
  }

  // Throws if the stand-in's thread cannot start; nothing is lent then.
  void lend() {
    std::lock_guard lock(lend_mutex);
    if (lenders > 0) {
      ++lenders;
      return;
    }
    if (!stand_in.joinable()) stand_in = std::jthread([this](std::stop_token stop) { stand_in_loop(stop); });
    lenders = 1;
    lenders_changed.notify_all();
  }
  void unlend() {
    std::lock_guard lock(lend_mutex);
    if (--lenders == 0) end_stand_in_wait_locked();
  }
  void end_stand_in_wait() {
    std::lock_guard lock(lend_mutex);
    end_stand_in_wait_locked();
  }
  void end_stand_in_wait_locked() {
    if (end_wait) {
      arena.enqueue(std::move(*end_wait));
      end_wait.reset();
    }
  }
  // While anyone lends, the stand-in waits in the arena on a task that only end_stand_in_wait
  // submits, running the arena's tasks meanwhile (as oneTBB runs them while a thread waits
  // in task_group::wait); it fills the slot the arena keeps for a thread that joins.
  void stand_in_loop(std::stop_token stop) {
    std::unique_lock lock(lend_mutex);
    while (lenders_changed.wait(lock, stop, [this] { return lenders > 0; }) && !stop.stop_requested()) {
      lock.unlock();
      arena.execute([this, &stop] {
        oneapi::tbb::task_group until_ended;
        {
          std::lock_guard guard(lend_mutex);
          if (lenders == 0 || stop.stop_requested()) return;  // shutdown ends no wait begun after it
          end_wait.emplace(until_ended.defer([] {}));
        }
        until_ended.wait();
      });
      lock.lock();
    }
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

  std::mutex lend_mutex;
  std::condition_variable_any lenders_changed;
  std::size_t lenders = 0;                         // guarded by lend_mutex
  std::optional<oneapi::tbb::task_handle> end_wait;  // guarded by lend_mutex: the stand-in's, while it waits
  std::jthread stand_in;                           // started at the first lend
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
      impl.arena.enqueue(impl.group.defer([counted = std::move(counted)] {
        CpuTaskScope scope;
        counted();
      }));
    }
  } catch (...) {
    impl.task_done();  // not handed over: it will not run
    throw;
  }
}

TimerService& AsyncRuntime::timers() { return impl_->timers; }

AsyncRuntime::Lend::Lend() noexcept : lent_(in_cpu_task || on_system_worker()) {
  if (!lent_) return;
  try {
    instance().impl_->lend();
  } catch (...) {
    lent_ = false;  // no thread to be had: the tasks wait for a worker, or for starvation
  }
}

AsyncRuntime::Lend::~Lend() {
  if (lent_) instance().impl_->unlend();
}

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
