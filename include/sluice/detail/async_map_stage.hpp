#pragma once
// The stage behind the pipeline DSL's async_map: async_stream inside a pipeline. It applies a
// function to each event as a task (on the System's workers, or on blocking threads), at most
// max_concurrency at once, and emits TaskResults, in input order or as tasks finish.
//
// Demand: the stage asks upstream itself (manual mode), and only for what its consumers have
// asked of it, less what it already holds: events asked for, queued, running, or finished and
// waiting for an earlier one all count against downstream demand, and against the window
// (max_concurrency + reorder_limit). So memory stays bounded whatever the tasks' speed.
#include <sluice/async_options.hpp>
#include <sluice/detail/async_core.hpp>
#include <sluice/detail/demand_credit.hpp>
#include <sluice/stage.hpp>
#include <sluice/task_result.hpp>

#include <algorithm>
#include <any>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

namespace sluice::detail {

template <class In, class F>
using async_map_value_t = std::remove_cvref_t<async_call_t<F, In>>;

// How the DSL's async_map emits a result: as it is, ok or exit.
struct EmitTaskResults {
  template <class Result>
  bool operator()(Result&& result, Emitter<std::remove_cvref_t<Result>>& out) const {
    out.emit(std::forward<Result>(result));
    return true;
  }
};

// `Deliver(result, out)` emits what a finished task yields (or not: it returns whether it did),
// so that the YAML runner's async_map can unwrap values and route exits by its on_error.
template <class In, class F, class Out = TaskResult<async_map_value_t<In, F>, In>, class Deliver = EmitTaskResults>
class AsyncMapStage final : public ProducerConsumer<In, Out> {
 public:
  using T = async_map_value_t<In, F>;
  using Result = TaskResult<T, In>;
  static_assert(!task_traits<async_call_t<F, In>>::coroutine,
                "async_map runs functions; coroutine tasks run with async_stream");

  AsyncMapStage(F fn, AsyncOptions options, Deliver deliver = {})
      : fn_(std::make_shared<F>(std::move(fn))),
        options_((options.validate(), options)),
        window_(options_.window()),
        deliver_(std::move(deliver)) {}

  DemandMode handle_subscribe(const SubscriptionInfo& info) override {
    const DemandMode mode = credit_.subscribed(info);
    ask_upstream();
    return mode;
  }

  void handle_cancel(const SubscriptionInfo& info, const ExitReason&) override {
    credit_.cancelled(info, this->context(), queued_.size() + in_window(), window_);
  }

  void handle_demand(std::size_t demand, Emitter<Out>&) override {
    credit_.demanded(demand);
    ask_upstream();
  }

  void handle_events(std::span<In> events, Emitter<Out>&) override {
    credit_.received(events.size());
    for (In& event : events) queued_.push_back(std::move(event));
    start_tasks();
  }

  void handle_info(std::any& message, Emitter<Out>& out) override {
    if (auto* done = std::any_cast<Done>(&message)) {
      auto task = running_.find(done->seq);
      if (task == running_.end()) {
        // A task that timed out has returned: its late result is dropped, and its place is free.
        if (timed_out_.erase(done->seq) == 0) return;
      } else {
        if (task->second.timer != 0) this->context().cancel_timer(task->second.timer);
        // A result after the deadline counts as a timeout, as it would had the expiry come first.
        if (done->late) {
          time_out(task, true);
        } else {
          settle(task, std::move(done->result));
        }
      }
    } else if (auto* expired = std::any_cast<Expired>(&message)) {
      auto task = running_.find(expired->seq);
      if (task == running_.end()) return;
      // A task that has returned judged itself by its own clock, and its result is on its way
      // behind this message: a busy stage reading the expiry late must not fail it.
      if (task->second.clock->ended.load(std::memory_order_acquire)) return;
      // The timer was armed when the task was handed to a worker; its clock starts when it
      // begins to run. One still waiting for a worker, or begun since, gets the rest of its time.
      const std::int64_t began = task->second.clock->began.load(std::memory_order_acquire);
      const auto deadline = Clock::time_point(Clock::duration(began)) + options_.timeout;
      const auto now = Clock::now();
      if (began == 0 || deadline > now) {
        const auto rest = began == 0 ? options_.timeout : std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now);
        task->second.timer = this->context().send_after(rest, Expired{expired->seq});
        return;
      }
      time_out(task, false);
    } else if (auto* error = std::any_cast<std::exception_ptr>(&message)) {
      // What a task's wrapper threw outside the task itself (its result could not be put into
      // the message): which task is unknown, so the stage fails with it.
      std::rethrow_exception(*error);
    } else {
      return;
    }
    emit_ready(out);
    start_tasks();
    ask_upstream();
  }

  // A task that timed out and has not returned is work too: the stage completes after it.
  bool holds_work() const noexcept override {
    return !queued_.empty() || !running_.empty() || !ready_.empty() || !timed_out_.empty();
  }

  // The tasks still running are asked to stop (those not begun will not call fn); their
  // results will be dropped. Those that timed out were asked already.
  void terminate(const ExitReason&) override {
    for (auto& [seq, task] : running_) task.stop.request_stop();
  }

  // Tasks handed over and not returned, timed out or not: what max_concurrency bounds.
  std::size_t running() const noexcept { return running_.size() + timed_out_.size(); }

 private:
  struct Done {
    std::uint64_t seq;
    Result result;
    bool late = false;  // returned after its timeout, by its own clock
  };
  struct Expired {
    std::uint64_t seq;
  };
  using Clock = std::chrono::steady_clock;
  // Set by the task, read by the stage.
  struct TaskClock {
    std::atomic<std::int64_t> began{0};  // clock ticks when it began to run, 0 before
    std::atomic<bool> ended{false};      // it returned, and judged itself late or not
  };
  struct Running {
    std::optional<In> input;  // for exit results, with zip_input_on_exit
    std::stop_source stop;
    std::uint64_t timer = 0;
    std::shared_ptr<TaskClock> clock = std::make_shared<TaskClock>();
  };

  std::size_t in_window() const noexcept { return running_.size() + ready_.size(); }

  void ask_upstream() { credit_.ask(this->context(), queued_.size() + in_window(), window_); }

  void start_tasks() {
    while (!queued_.empty() && running() < options_.max_concurrency && in_window() < window_) {
      const std::uint64_t seq = next_seq_++;
      Running& task = running_[seq];
      if constexpr (std::copy_constructible<In>) {
        if (options_.zip_input_on_exit) task.input.emplace(queued_.front());
      }
      this->context().run_task(
          [fn = fn_, seq, element = std::move(queued_.front()), token = task.stop.get_token(),
           clock = task.clock, timeout = options_.timeout]() mutable -> std::any {
            // The stage stopped before this began: fn is not called (its result would be dropped).
            if (token.stop_requested()) return Done{seq, Result::exited("stopped")};
            const auto began = Clock::now();
            clock->began.store(std::max<std::int64_t>(began.time_since_epoch().count(), 1), std::memory_order_release);
            Result result = invoke_task<Result>(*fn, std::move(element), std::move(token));
            const bool late = timeout != infinite_timeout && Clock::now() - began > timeout;
            clock->ended.store(true, std::memory_order_release);
            return Done{seq, std::move(result), late};
          },
          options_.kind);
      queued_.pop_front();
      if (options_.timeout != infinite_timeout) task.timer = this->context().send_after(options_.timeout, Expired{seq});
    }
  }

  // A task past its timeout fails the stage (on_timeout exit), or yields exit("timeout").
  void time_out(typename std::map<std::uint64_t, Running>::iterator task, bool returned) {
    task->second.stop.request_stop();
    if (options_.on_timeout == OnTimeout::exit) {
      throw std::runtime_error("the task for event " + std::to_string(task->first - 1) + " timed out after " +
                               std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(options_.timeout).count()) +
                               " ms");
    }
    // Its place stays taken until it returns: Elixir kills the task before it starts another.
    if (!returned) timed_out_.insert(task->first);
    settle(task, Result::exited("timeout", true));
  }

  void settle(typename std::map<std::uint64_t, Running>::iterator task, Result&& result) {
    if (!result.ok() && options_.zip_input_on_exit) result.exit().input = std::move(task->second.input);
    ready_.emplace(task->first, std::move(result));
    running_.erase(task);
  }

  // Ordered: the results from the oldest on, up to the first still running. Unordered: all.
  void emit_ready(Emitter<Out>& out) {
    while (!ready_.empty() && (!options_.ordered || ready_.begin()->first == next_to_emit_)) {
      next_to_emit_ = ready_.begin()->first + 1;
      if (deliver_(std::move(ready_.begin()->second), out)) credit_.emitted(1);
      ready_.erase(ready_.begin());
    }
  }

  std::shared_ptr<F> fn_;  // shared with the running tasks, which may outlive a failed stage
  const AsyncOptions options_;
  const std::size_t window_;
  Deliver deliver_;
  DemandCredit credit_;
  std::deque<In> queued_;      // received, waiting for a free task
  std::map<std::uint64_t, Running> running_;
  std::set<std::uint64_t> timed_out_;  // timed out (result settled), not yet returned
  std::map<std::uint64_t, Result> ready_;  // finished, by input order
  std::uint64_t next_seq_ = 1;
  std::uint64_t next_to_emit_ = 1;
};

}  // namespace sluice::detail
