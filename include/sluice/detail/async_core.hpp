#pragma once
// The engine behind async_stream: slots for the elements in flight, the tasks that run them,
// and the consumer's side (start, wait, time out, deliver), which runs on the iterating thread.
//
// A slot's state and the sequence number of its element share one atomic tag, so a task
// claims its element with one compare-and-swap, and a late task (timed out, or stopped on
// close) finds the tag changed and discards its result. A task holds its place against
// max_concurrency until it returns, even once its timeout result is delivered: no thread can
// be killed, so the bound holds only that way. close() waits for every running task to return,
// as std::jthread joins. Tasks keep the core alive through a shared_ptr only for their last
// steps, after they have said they are done.
#include <sluice/async_options.hpp>
#include <sluice/detail/actor.hpp>
#include <sluice/detail/async_runtime.hpp>
#include <sluice/task.hpp>
#include <sluice/task_result.hpp>

#include <oneapi/tbb/concurrent_queue.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace sluice::detail {

template <class F, class In>
concept TakesStopToken = std::invocable<F&, In&&, std::stop_token>;

template <class F, class In>
concept AsyncFunction = std::invocable<F&, In&&> || TakesStopToken<F, In>;

template <class F, class In>
using async_call_t = typename std::conditional_t<TakesStopToken<F, In>, std::invoke_result<F&, In&&, std::stop_token>,
                                                 std::invoke_result<F&, In&&>>::type;

// A function task returns its value; a coroutine task returns Task<value>.
template <class R>
struct task_traits {
  using value_type = R;
  static constexpr bool coroutine = false;
};
template <class U>
struct task_traits<Task<U>> {
  using value_type = U;
  static constexpr bool coroutine = true;
};

// Runs `body`, which makes a Result; an exception escaping it becomes exit(its message).
template <class Result, class Body>
Result exit_on_throw(Body&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    return Result::exited(e.what());
  } catch (...) {
    return Result::exited("unknown exception");
  }
}

// Runs one task: its value, or exit(reason) with the message of what it threw.
template <class Result, class F, class In>
Result invoke_task(F& fn, In&& element, [[maybe_unused]] std::stop_token token) {
  return exit_on_throw<Result>([&] {
    if constexpr (TakesStopToken<F, In>) {
      return Result(std::invoke(fn, std::move(element), std::move(token)));
    } else {
      return Result(std::invoke(fn, std::move(element)));
    }
  });
}

template <class In, class F>
class AsyncCore final : public std::enable_shared_from_this<AsyncCore<In, F>> {
 public:
  using Call = async_call_t<F, In>;
  using T = std::remove_cvref_t<typename task_traits<Call>::value_type>;
  static_assert(!std::is_void_v<T>, "an async task returns a value");
  using Result = TaskResult<T, In>;
  static constexpr bool coroutine = task_traits<Call>::coroutine;
  static constexpr bool stoppable = TakesStopToken<F, In>;

  AsyncCore(F fn, AsyncOptions options)
      : fn_(std::move(fn)),
        options_((options.validate(), options)),
        window_(options_.window()),
        max_helpers_(std::min(options_.max_concurrency, AsyncRuntime::instance().cpu_slots())) {
    if (options_.zip_input_on_exit && !std::copy_constructible<In>)
      throw std::invalid_argument("zip_input_on_exit needs elements that can be copied");
  }

  // The next result, or nothing when the input is exhausted and every result delivered.
  // `pull()` returns the next input element, or nothing at its end. Consumer thread only.
  template <class Pull>
  std::optional<Result> next(Pull&& pull);

  // Stops early: tasks not begun are dropped, running ones asked to stop, and whatever they
  // return discarded. Returns once every task has returned (as std::jthread joins).
  void close() noexcept;

 private:
  using Clock = std::chrono::steady_clock;
  enum State : std::uint64_t { free_slot = 0, pending = 1, running = 2, finished = 3 };
  static constexpr std::uint64_t tag_of(std::uint64_t seq, State state) noexcept { return seq << 2 | state; }
  static constexpr State state_of(std::uint64_t tag) noexcept { return static_cast<State>(tag & 3); }
  static constexpr std::uint64_t seq_of(std::uint64_t tag) noexcept { return tag >> 2; }

  struct Slot {
    std::atomic<std::uint64_t> tag{0};
    std::atomic<std::int64_t> started{0};  // Clock ticks when its task began; 0 before
    std::int64_t queued = 0;               // Clock ticks when it was handed over; the consumer's
    std::optional<In> input;               // until a task claims it
    std::optional<In> zipped;              // a copy for exit results (zip_input_on_exit)
    std::stop_source stop{std::nostopstate};
    std::optional<Result> result;  // written before the tag says finished, read after
  };
  struct Claim {
    std::size_t slot;
    std::uint64_t seq;
  };

  static std::int64_t now_ticks() noexcept { return Clock::now().time_since_epoch().count(); }
  bool has_timeout() const noexcept { return options_.timeout != infinite_timeout; }

  // Slots are made as the window first needs them, in chunks that double in size: a slot never
  // moves (tasks on other threads hold it), and a generous window costs only what is used.
  static constexpr std::size_t first_chunk = 8;
  static std::pair<std::size_t, std::size_t> chunk_of(std::size_t index) noexcept {
    const std::size_t chunk = static_cast<std::size_t>(std::bit_width(index / first_chunk + 1)) - 1;
    return {chunk, index - first_chunk * ((std::size_t{1} << chunk) - 1)};
  }
  Slot& slot_at(std::size_t index) const noexcept {
    const auto [chunk, offset] = chunk_of(index);
    return chunks_[chunk][offset];
  }
  void add_slot();

  template <class Pull>
  void fill(Pull& pull);
  void start(In element);
  bool claim_and_run(Claim claim, bool by_consumer = false);
  void finish(std::size_t slot, std::uint64_t seq, Result&& result, std::int64_t ended = now_ticks(),
              bool by_consumer = false);
  std::optional<Result> take_ready();
  Result deliver(Result&& result);
  // Times out what is due; returns the stop sources to signal once the lock is released.
  std::vector<std::stop_source> expire_locked(Clock::time_point now);
  void add_helper();
  void help_loop();
  static void report(void* owner, typename Task<T>::promise_type::Ticket ticket,
                     typename Task<T>::promise_type::Outcome&& outcome);
  // Runs fn's coroutine with the element kept in this frame. A coroutine keeps a reference
  // parameter as a reference: fn taking its element by reference would otherwise read a dead
  // local once it first suspends. What fn throws before its first suspension is the task's
  // exception, an exit like any other.
  static Task<T> own_element(F& fn, In element, [[maybe_unused]] std::stop_token token) {
    if constexpr (stoppable) {
      co_return co_await std::invoke(fn, std::move(element), std::move(token));
    } else {
      co_return co_await std::invoke(fn, std::move(element));
    }
  }

  std::optional<F> fn_;  // destroyed by close(), on the consumer's thread
  const AsyncOptions options_;
  const std::size_t window_;
  std::array<std::unique_ptr<Slot[]>, 64> chunks_;  // chunk k holds first_chunk << k slots
  const std::size_t max_helpers_;

  std::mutex mutex_;
  std::condition_variable ready_;
  // Started and not returned, timed out or not: what max_concurrency bounds. Lowered under
  // mutex_ (but for a task the consumer ran itself, in ordered mode).
  std::atomic<std::size_t> running_{0};
  std::deque<std::size_t> completed_;  // guarded by mutex_: unordered mode, in completion order
  bool consumer_waiting_ = false;      // guarded by mutex_

  // The consumer's own (the iterating thread's).
  std::size_t slot_count_ = 0;  // made so far
  std::vector<std::size_t> free_slots_;
  std::deque<std::size_t> in_order_;  // ordered mode: slots in input order
  std::uint64_t next_seq_ = 1;
  std::uint64_t delivered_seq_ = 0;  // of the result last taken
  std::size_t in_window_ = 0;  // started and not yet delivered
  bool input_done_ = false;
  bool closed_ = false;
  bool starved_ = false;  // at the last look, a task had waited a whole timeout for a worker

  bool may_run_here() const noexcept {
    if (!has_timeout()) return true;
    const std::int64_t timeout_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(options_.timeout).count();
    return tasks_timed_.load(std::memory_order_relaxed) >= tasks_to_measure &&
           mean_task_ns_.load(std::memory_order_relaxed) < timeout_ns / 100;
  }
  Clock::time_point next_deadline_ = Clock::time_point::max();  // no task can expire before

  // CPU tasks wait here for a worker, or for the consumer, which runs them itself rather than
  // sleep (as task_group::wait does): a trivial function then costs no thread hand-off.
  oneapi::tbb::concurrent_queue<Claim> pending_;
  std::atomic<std::size_t> helpers_{0};
  // CPU tasks shorter than this on average run on the consumer's thread as they start: handing
  // them to a worker would cost more than running them. Until measured, assume they are not.
  static constexpr std::int64_t inline_below_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(defaults::async_inline_task).count();
  std::atomic<std::int64_t> mean_task_ns_{16 * inline_below_ns};
  // Tasks timed so far, up to tasks_to_measure: until then mean_task_ns_ is a guess.
  static constexpr std::uint32_t tasks_to_measure = 8;
  std::atomic<std::uint32_t> tasks_timed_{0};
};

// --- the consumer's side ---------------------------------------------------------------------

template <class In, class F>
template <class Pull>
std::optional<typename AsyncCore<In, F>::Result> AsyncCore<In, F>::next(Pull&& pull) {
  if (closed_) return std::nullopt;
  for (;;) {
    fill(pull);
    // In ordered mode a ready result is the oldest slot's, found from its tag without a lock.
    if (options_.ordered) {
      if (auto result = take_ready()) return deliver(std::move(*result));
    }
    std::unique_lock lock(mutex_);
    // Times out what is due. Stop callbacks run user code: never under the lock.
    auto expire_due = [&] {
      const auto now = Clock::now();
      if (now < next_deadline_) return;
      auto to_stop = expire_locked(now);
      if (to_stop.empty()) return;
      lock.unlock();
      for (auto& source : to_stop) source.request_stop();
      lock.lock();
    };
    for (;;) {
      // Unordered, results may be ready at every call (tasks run on this thread, or finish
      // faster than they are taken), so the consumer might never wait: it looks at the
      // deadlines here too, or a task past its timeout would wait for the input to end.
      if (has_timeout() && !options_.ordered) expire_due();
      if (auto result = take_ready()) {
        lock.unlock();
        return deliver(std::move(*result));
      }
      if (in_window_ == 0 && input_done_) return std::nullopt;
      if (!input_done_ && running_.load() < options_.max_concurrency && in_window_ < window_) break;  // start more
      if constexpr (!coroutine) {
        // The consumer runs a waiting CPU task itself rather than sleep (the arena keeps a
        // core for it). With a timeout, running one, it sees no timeout until that one returns,
        // so it only runs tasks measured far shorter than the timeout.
        if (options_.kind == TaskKind::cpu) {
          Claim claim;
          if (may_run_here() && pending_.try_pop(claim)) {
            lock.unlock();
            // The task may run long: what this thread holds for later runs elsewhere meanwhile.
            before_blocking_wait();
            claim_and_run(claim, true);
            lock.lock();
            continue;
          }
          // No worker has taken a task for a whole timeout: they are all busy (the consumer
          // may be one of them). A blocking thread takes the waiting tasks instead.
          if (starved_) {
            starved_ = false;
            while (pending_.try_pop(claim)) {
              try {
                AsyncRuntime::instance().run(TaskKind::blocking, [core = this->shared_from_this(), claim] {
                  core->claim_and_run(claim);
                });
              } catch (...) {
                pending_.push(claim);  // no thread to be had: it waits for a worker after all
                break;
              }
            }
          }
        }
      }
      // Iterated inside a stage's callback, the stream is about to wait on tasks that may need a
      // stage this thread holds for later: a turn its slice keeps, or its run-next slot, which a
      // task run here may have filled. Letting go only queues stages: it runs no user code, and
      // never takes mutex_.
      before_blocking_wait();
      consumer_waiting_ = true;
      {
        AsyncRuntime::Lend lend;  // on a oneTBB worker, its place in the arena while it sleeps
        if (has_timeout() && next_deadline_ != Clock::time_point::max()) {
          ready_.wait_until(lock, next_deadline_);
        } else {
          ready_.wait(lock);  // for a result, or for a task to return and make room
        }
      }
      consumer_waiting_ = false;
      if (has_timeout()) expire_due();
    }
  }
}

// Starts tasks while there is room: fewer than max_concurrency running (timed-out tasks that
// have not returned count), and the window (in flight plus waiting to be delivered) not full.
// Pulls one element per task, no more.
template <class In, class F>
template <class Pull>
void AsyncCore<In, F>::fill(Pull& pull) {
  // Only this thread adds to running_, so the room it sees can only grow meanwhile.
  const std::size_t running = running_.load();
  const std::size_t room =
      std::min(options_.max_concurrency - std::min(options_.max_concurrency, running), window_ - in_window_);
  running_.fetch_add(room);  // reserved, so that finishing tasks cannot make room twice
  std::size_t started = 0;
  try {
    for (; started < room && !input_done_; ++started) {
      std::optional<In> element = pull();
      if (!element) {
        input_done_ = true;
        break;
      }
      start(std::move(*element));
    }
  } catch (...) {
    running_.fetch_sub(room - started);
    throw;
  }
  if (started < room) running_.fetch_sub(room - started);
}

template <class In, class F>
void AsyncCore<In, F>::add_slot() {
  const auto [chunk, offset] = chunk_of(slot_count_);
  if (offset == 0) {
    auto slots = std::make_unique<Slot[]>(first_chunk << chunk);
    free_slots_.reserve(slot_count_ + (first_chunk << chunk));  // so that giving slots back never throws
    chunks_[chunk] = std::move(slots);
  }
  free_slots_.push_back(slot_count_++);
}

template <class In, class F>
void AsyncCore<In, F>::start(In element) {
  // What may throw comes before the slot is taken, so that a throw leaves nothing behind.
  if (free_slots_.empty()) add_slot();
  const std::size_t index = free_slots_.back();
  Slot& slot = slot_at(index);
  if constexpr (std::copy_constructible<In>) {
    if (options_.zip_input_on_exit) slot.zipped.emplace(element);
  }
  if constexpr (stoppable) slot.stop = std::stop_source();
  if (options_.ordered) in_order_.push_back(index);
  free_slots_.pop_back();
  const std::uint64_t seq = next_seq_++;
  ++in_window_;
  slot.started.store(0, std::memory_order_relaxed);
  // A task's deadline is at least this far off: the consumer wakes then to look.
  auto note_deadline = [this] {
    if (has_timeout()) next_deadline_ = std::min(next_deadline_, Clock::now() + options_.timeout);
  };

  if constexpr (coroutine) {
    note_deadline();
    // Runs here until its first suspension; it reports through report() when it finishes.
    slot.tag.store(tag_of(seq, running), std::memory_order_release);
    slot.started.store(now_ticks(), std::memory_order_release);
    std::stop_token token;
    if constexpr (stoppable) token = slot.stop.get_token();
    std::optional<Task<T>> task;
    try {
      task.emplace(own_element(*fn_, std::move(element), std::move(token)));  // its frame may not fit in memory
    } catch (const std::exception& e) {
      finish(index, seq, Result::exited(e.what()));
      return;
    } catch (...) {
      finish(index, seq, Result::exited("unknown exception"));
      return;
    }
    std::move(*task).start_detached(this->shared_from_this(), &AsyncCore::report, {index, seq});
  } else {
    slot.input.emplace(std::move(element));
    slot.tag.store(tag_of(seq, pending), std::memory_order_release);
    if (options_.kind == TaskKind::cpu && mean_task_ns_.load(std::memory_order_relaxed) < inline_below_ns) {
      claim_and_run({index, seq}, true);
      return;
    }
    note_deadline();
    slot.queued = now_ticks();
    try {
      if (options_.kind == TaskKind::blocking) {
        AsyncRuntime::instance().run(TaskKind::blocking, [core = this->shared_from_this(), index, seq] {
          core->claim_and_run({index, seq});
        });
      } else {
        pending_.push({index, seq});
        add_helper();
      }
    } catch (...) {
      // Not handed over (no thread, no memory): the slot goes back, unless a helper already
      // claimed it from pending_, in which case it runs and delivers as usual.
      std::uint64_t expected = tag_of(seq, pending);
      if (slot.tag.compare_exchange_strong(expected, tag_of(0, free_slot))) {
        slot.input.reset();
        slot.zipped.reset();
        if (options_.ordered) in_order_.pop_back();
        free_slots_.push_back(index);
        --in_window_;
        --next_seq_;
        throw;
      }
    }
  }
}

// The next result to deliver, if it is ready: in ordered mode the oldest element's (no lock
// needed: the tag says), else the first to finish (under mutex_). Frees its slot.
template <class In, class F>
std::optional<typename AsyncCore<In, F>::Result> AsyncCore<In, F>::take_ready() {
  std::size_t index;
  if (options_.ordered) {
    if (in_order_.empty() || state_of(slot_at(in_order_.front()).tag.load(std::memory_order_acquire)) != finished)
      return std::nullopt;
    index = in_order_.front();
    in_order_.pop_front();
  } else {
    if (completed_.empty()) return std::nullopt;
    index = completed_.front();
    completed_.pop_front();
  }
  Slot& slot = slot_at(index);
  delivered_seq_ = seq_of(slot.tag.load(std::memory_order_relaxed));
  Result result = std::move(*slot.result);
  slot.result.reset();
  if (!result.ok() && options_.zip_input_on_exit) result.exit().input = std::move(slot.zipped);
  slot.zipped.reset();
  slot.tag.store(tag_of(0, free_slot), std::memory_order_relaxed);
  free_slots_.push_back(index);
  --in_window_;
  return result;
}

template <class In, class F>
typename AsyncCore<In, F>::Result AsyncCore<In, F>::deliver(Result&& result) {
  if (!result.ok() && result.exit().timed_out && options_.on_timeout == OnTimeout::exit) {
    close();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(options_.timeout).count();
    // Sequence numbers follow the input in either order, so the element is named in both.
    throw TaskTimeout("async_stream: the task for element " + std::to_string(delivered_seq_ - 1) + " timed out after " +
                      std::to_string(ms) + " ms");
  }
  return std::move(result);
}

// Every running task whose deadline has passed yields exit("timeout") now, and is asked to
// stop; the rest set the next time to look. A timed-out task keeps its place in running_
// until it returns (Elixir kills it before it starts another).
template <class In, class F>
std::vector<std::stop_source> AsyncCore<In, F>::expire_locked(Clock::time_point now) {
  auto next = Clock::time_point::max();
  std::vector<std::stop_source> to_stop;
  starved_ = false;
  for (std::size_t index = 0; index < slot_count_; ++index) {
    Slot& slot = slot_at(index);
    const std::uint64_t tag = slot.tag.load(std::memory_order_acquire);
    if (state_of(tag) != running && state_of(tag) != pending) continue;
    const std::int64_t started = slot.started.load(std::memory_order_acquire);
    if (state_of(tag) == pending || started == 0) {  // starting about now: its clock starts then
      next = std::min(next, now + options_.timeout);
      const auto queued = Clock::time_point(Clock::duration(slot.queued));
      if (state_of(tag) == pending && now - queued >= options_.timeout) starved_ = true;
      continue;
    }
    const auto deadline = Clock::time_point(Clock::duration(started)) + options_.timeout;
    if (deadline > now) {
      next = std::min(next, deadline);
      continue;
    }
    slot.result.emplace(Result::exited("timeout", true));
    slot.tag.store(tag_of(seq_of(tag), finished), std::memory_order_release);
    if (!options_.ordered) completed_.push_back(index);
    if constexpr (stoppable) to_stop.push_back(slot.stop);
  }
  next_deadline_ = next;
  return to_stop;
}

// Task.async_stream halting early kills its tasks and waits for each to go down before it
// returns. No thread can be killed: running tasks are asked to stop and waited for.
template <class In, class F>
void AsyncCore<In, F>::close() noexcept {
  if (closed_) return;
  closed_ = true;
  std::vector<std::stop_source> to_stop;
  std::unique_lock lock(mutex_);
  for (std::size_t index = 0; index < slot_count_; ++index) {
    Slot& slot = slot_at(index);
    std::uint64_t tag = slot.tag.load(std::memory_order_acquire);
    if (state_of(tag) == pending && slot.tag.compare_exchange_strong(tag, tag_of(0, free_slot))) {
      slot.input.reset();  // never claimed: no task will touch it
      running_.fetch_sub(1);
      continue;
    }
    if (state_of(tag) != running) continue;
    if constexpr (stoppable) to_stop.push_back(slot.stop);
    slot.tag.store(tag_of(0, free_slot), std::memory_order_release);  // its result will be dropped
  }
  // Stop callbacks run user code: never under the lock.
  lock.unlock();
  for (auto& source : to_stop) source.request_stop();
  // The tasks may need a stage this thread holds for later (see next()).
  before_blocking_wait();
  AsyncRuntime::Lend lend;  // as in next()
  lock.lock();
  consumer_waiting_ = true;
  ready_.wait(lock, [this] { return running_.load() == 0; });
  consumer_waiting_ = false;
  lock.unlock();
  // What is left of the caller's goes here, not on whichever thread lets the core go last.
  for (std::size_t index = 0; index < slot_count_; ++index) {
    Slot& slot = slot_at(index);
    slot.result.reset();
    slot.zipped.reset();
  }
  fn_.reset();
}

// --- the tasks' side -------------------------------------------------------------------------

template <class In, class F>
bool AsyncCore<In, F>::claim_and_run(Claim claim, bool by_consumer) {
  Slot& slot = slot_at(claim.slot);
  std::uint64_t expected = tag_of(claim.seq, pending);
  if (!slot.tag.compare_exchange_strong(expected, tag_of(claim.seq, running), std::memory_order_acq_rel)) return false;
  std::int64_t started = 0;
  // The element is destroyed as this returns, before finish(): once the task says it is done,
  // close() may return.
  auto run = [&] {
    std::stop_token token;
    if constexpr (stoppable) token = slot.stop.get_token();
    In element = std::move(*slot.input);
    slot.input.reset();
    started = now_ticks();
    slot.started.store(started, std::memory_order_release);
    return invoke_task<Result>(*fn_, std::move(element), std::move(token));
  };
  Result result = run();
  const std::int64_t ended = now_ticks();
  if constexpr (!coroutine) {
    // An average over the last several tasks; updates from several threads may overwrite
    // each other, which only makes it a little less exact.
    const std::int64_t mean = mean_task_ns_.load(std::memory_order_relaxed);
    const std::int64_t took = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::duration(ended - started)).count();
    mean_task_ns_.store(mean + (took - mean) / 8, std::memory_order_relaxed);
    if (tasks_timed_.load(std::memory_order_relaxed) < tasks_to_measure) tasks_timed_.fetch_add(1, std::memory_order_relaxed);
  }
  finish(claim.slot, claim.seq, std::move(result), ended, by_consumer);
  return true;
}

// A task returns: its place is free. A result after the deadline counts as a timeout, as it
// would had the consumer looked first; a result for a slot no longer running this element
// (timed out, or closed) is dropped, and the slot may already hold another element.
template <class In, class F>
void AsyncCore<In, F>::finish(std::size_t index, std::uint64_t seq, Result&& result, std::int64_t ended,
                              bool by_consumer) {
  Slot& slot = slot_at(index);
  // The consumer ran it: nobody else can change this slot, and in ordered mode nobody waits.
  const bool locked = !(by_consumer && options_.ordered);
  std::unique_lock lock(mutex_, std::defer_lock);
  if (locked) lock.lock();
  const bool ours = slot.tag.load(std::memory_order_relaxed) == tag_of(seq, running);
  const bool late = ours && has_timeout() &&
                    Clock::duration(ended - slot.started.load(std::memory_order_acquire)) > options_.timeout;
  if (ours) {
    if (late) {
      slot.result.emplace(Result::exited("timeout", true));
    } else {
      slot.result.emplace(std::move(result));
    }
    slot.tag.store(tag_of(seq, finished), std::memory_order_release);
    if (!options_.ordered) completed_.push_back(index);
  }
  if (!ours || late) {
    // Its value goes now, outside the lock (its destructor is the caller's code), and before
    // its place is freed: close() may return then. A move that throws leaves it to the caller.
    if (locked) lock.unlock();
    try {
      const Result dropped(std::move(result));
    } catch (...) {
    }
    if (locked) lock.lock();
  }
  running_.fetch_sub(1);
  if (locked && consumer_waiting_) ready_.notify_one();
}

template <class In, class F>
void AsyncCore<In, F>::report(void* owner, typename Task<T>::promise_type::Ticket ticket,
                              typename Task<T>::promise_type::Outcome&& outcome) {
  auto* core = static_cast<AsyncCore*>(owner);
  Result result = exit_on_throw<Result>([&] { return Result(outcome.take()); });
  outcome.value.reset();  // before finish(), as the element in claim_and_run()
  core->finish(static_cast<std::size_t>(ticket.first), ticket.second, std::move(result));
}

// Keeps up to max_helpers_ workers draining pending_. A helper leaves when it finds nothing.
template <class In, class F>
void AsyncCore<In, F>::add_helper() {
  std::size_t helpers = helpers_.load();
  while (helpers < max_helpers_) {
    if (helpers_.compare_exchange_weak(helpers, helpers + 1)) {
      try {
        AsyncRuntime::instance().run(TaskKind::cpu, [core = this->shared_from_this()] { core->help_loop(); });
      } catch (...) {
        helpers_.fetch_sub(1);  // not started: its place is free
        throw;
      }
      return;
    }
  }
}

template <class In, class F>
void AsyncCore<In, F>::help_loop() {
  for (;;) {
    Claim claim;
    while (pending_.try_pop(claim)) claim_and_run(claim);
    helpers_.fetch_sub(1);
    // A claim pushed while this helper was leaving may have seen no room for a new helper.
    if (pending_.empty()) return;
    std::size_t helpers = helpers_.load();
    do {
      if (helpers >= max_helpers_) return;
    } while (!helpers_.compare_exchange_weak(helpers, helpers + 1));
  }
}

}  // namespace sluice::detail
