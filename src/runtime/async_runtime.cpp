#include <sluice/detail/actor.hpp>
#include <sluice/detail/async_runtime.hpp>
#include <sluice/defaults.hpp>
#include <sluice/detail/blocking_pool.hpp>
#include <sluice/task.hpp>

#include <oneapi/tbb/info.h>
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
#include <vector>

namespace sluice::detail {
namespace {
// True while this thread runs one of the runtime's CPU tasks (on a oneTBB worker, or a
// stand-in).
thread_local bool in_cpu_task = false;
struct CpuTaskScope {
  bool outer = std::exchange(in_cpu_task, true);
  ~CpuTaskScope() { in_cpu_task = outer; }
};
}  // namespace

// A thread that stands in the arena for one sleeping lender at a time (AsyncRuntime::Lend).
struct AsyncRuntime::StandIn {
  std::condition_variable_any wake;
  bool wanted = false;                               // guarded by lend_mutex: lent to a Lend
  bool standing = false;                             // guarded by lend_mutex: woke to stand in
  std::optional<oneapi::tbb::task_handle> end_wait;  // guarded by lend_mutex: while it waits
  std::jthread thread;
};

struct AsyncRuntime::Impl {
  // The arena is initialised here, before another thread can reach it: oneTBB initialises
  // it lazily on first use, and max_concurrency() (cpu_slots) reads what that writes without
  // synchronisation, so a first use on one thread (a stand-in's) raced a read on another.
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
    for (auto& stand_in : stand_ins) {
      stand_in->thread.request_stop();
      {
        std::lock_guard lock(lend_mutex);
        end_stand_in_wait(*stand_in);
      }
      stand_in->thread.join();
    }
    arena.execute([this] { group.wait(); });
  }

  // An idle stand-in, or a new one; none past defaults::max_stand_ins (nullptr). Throws if a
  // new one's thread cannot start.
  StandIn* lend() {
    std::lock_guard lock(lend_mutex);
    StandIn* stand_in = nullptr;
    if (!idle_stand_ins.empty()) {
      stand_in = idle_stand_ins.back();
      idle_stand_ins.pop_back();
    } else {
      if (stand_ins.size() == defaults::max_stand_ins) return nullptr;
      // Room first, so that nothing can throw once the thread runs (it would be joined while
      // it waits for this lock), nor when it goes idle.
      stand_ins.reserve(stand_ins.size() + 1);
      idle_stand_ins.reserve(stand_ins.size() + 1);
      auto fresh = std::make_unique<StandIn>();
      fresh->thread = std::jthread([this, stand_in = fresh.get()](std::stop_token stop) { stand_in_loop(*stand_in, stop); });
      stand_in = stand_ins.emplace_back(std::move(fresh)).get();
    }
    stand_in->wanted = true;
    stand_in->wake.notify_one();
    return stand_in;
  }
  void unlend(StandIn& stand_in) {
    std::lock_guard lock(lend_mutex);
    stand_in.wanted = false;
    end_stand_in_wait(stand_in);
    // Lent and given back before it woke: it is idle where it sleeps (once awake, it goes idle
    // by itself).
    if (!stand_in.standing) idle_stand_ins.push_back(&stand_in);
  }
  // Under lend_mutex.
  void end_stand_in_wait(StandIn& stand_in) {
    if (stand_in.end_wait) {
      arena.enqueue(std::move(*stand_in.end_wait));
      stand_in.end_wait.reset();
    }
  }
  // While wanted, the stand-in waits in the arena on a task that only unlend submits, running
  // the arena's tasks meanwhile (as oneTBB runs them while a thread waits in task_group::wait),
  // in a slot kept for it. It may sleep in one of them itself (a stream nested in a CPU task):
  // it then lends too, and another stand-in takes its place. It is idle again, free to stand in
  // for another, only once back here.
  void stand_in_loop(StandIn& stand_in, std::stop_token stop) {
    std::unique_lock lock(lend_mutex);
    while (stand_in.wake.wait(lock, stop, [&] { return stand_in.wanted; }) && !stop.stop_requested()) {
      stand_in.standing = true;
      lock.unlock();
      arena.execute([&] {
        oneapi::tbb::task_group until_ended;
        {
          std::lock_guard guard(lend_mutex);
          if (!stand_in.wanted || stop.stop_requested()) return;  // shutdown ends no wait begun after it
          stand_in.end_wait.emplace(until_ended.defer([] {}));
        }
        until_ended.wait();
      });
      lock.lock();
      stand_in.standing = false;
      if (!stand_in.wanted) idle_stand_ins.push_back(&stand_in);
    }
  }

  void task_done() {
    std::lock_guard lock(mutex);
    if (--outstanding == 0) idle.notify_all();
  }

  // Slots for the stand-ins beyond those oneTBB's workers take: a stand-in that found none
  // would only hand its wait to the arena as a task and sleep.
  oneapi::tbb::task_arena arena{static_cast<int>(oneapi::tbb::info::default_concurrency() + defaults::max_stand_ins),
                                static_cast<unsigned>(1 + defaults::max_stand_ins)};
  oneapi::tbb::task_group group;
  std::optional<BlockingPool> blocking{std::in_place};
  TimerService timers;
  std::mutex mutex;
  std::condition_variable idle;
  std::size_t outstanding = 0;  // guarded by mutex: tasks submitted and not yet over
  bool closed = false;          // guarded by mutex: shut down, no task may start

  std::mutex lend_mutex;
  std::vector<std::unique_ptr<StandIn>> stand_ins;  // guarded by lend_mutex: started as lenders came
  std::vector<StandIn*> idle_stand_ins;              // guarded by lend_mutex
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

AsyncRuntime::Lend::Lend() noexcept : stand_in_(nullptr) {
  if (!in_cpu_task && !on_system_worker()) return;
  try {
    stand_in_ = instance().impl_->lend();
  } catch (...) {
    // No thread to be had: the tasks wait for a worker, or for starvation.
  }
}

AsyncRuntime::Lend::~Lend() {
  if (stand_in_ != nullptr) instance().impl_->unlend(*stand_in_);
}

std::size_t AsyncRuntime::cpu_slots() const noexcept {
  return static_cast<std::size_t>(std::max(1, impl_->arena.max_concurrency() - static_cast<int>(defaults::max_stand_ins)));
}

void resume_after(std::chrono::nanoseconds delay, std::coroutine_handle<> waiting) {
  auto& runtime = AsyncRuntime::instance();
  runtime.timers().schedule_after(delay, [&runtime, waiting] {
    runtime.run(TaskKind::cpu, [waiting] { waiting.resume(); });
  });
}

}  // namespace sluice::detail
