#pragma once
// The built-in stage types of YAML pipelines (`sluice list` documents them). Their events are
// int64s, doubles or strings (expr::EventType): the loader knows each edge's type, so a stage
// is instantiated for the types it sees, and its batches are plain vectors an expression reads
// as columns.
#include <sluice/async_options.hpp>
#include <sluice/detail/async_map_stage.hpp>
#include <sluice/detail/demand_credit.hpp>
#include <sluice/detail/file_descriptor.hpp>
#include <sluice/expr.hpp>
#include <sluice/stage.hpp>
#include <sluice/value.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace sluice::stages {

// What a stage does with an event its expression (or its async task) fails on.
enum class OnError {
  stop,         // the pipeline stops: what came before the event still reaches the sinks
  skip,         // the event is counted and dropped
  dead_letter,  // the event and the error go to the dead-letter stage; counted too
};

// Where failed events go with on_error: dead_letter. Called on the failing stage's thread.
using DeadLetter = std::function<void(const std::string& stage, const Value& event, const std::string& error)>;

// The first fatal failure of a pipeline's stages, for whoever runs it. `on_failure` runs on the
// failing stage's thread (the YAML runner drains the pipeline from it).
class Failures {
 public:
  explicit Failures(std::function<void()> on_failure = {}) : on_failure_(std::move(on_failure)) {}
  void record(std::string message) {
    {
      std::lock_guard lock(mutex_);
      if (first_) return;
      first_ = std::move(message);
    }
    if (on_failure_) on_failure_();
  }
  std::optional<std::string> first() const {
    std::lock_guard lock(mutex_);
    return first_;
  }

 private:
  mutable std::mutex mutex_;
  std::optional<std::string> first_;
  std::function<void()> on_failure_;
};

// How an expression stage handles the events of one chunk, event errors included.
class ExpressionStep {
 public:
  ExpressionStep(std::string stage, expr::Expression expression, OnError on_error, std::shared_ptr<Failures> failures,
                 DeadLetter dead_letter = {})
      : stage_(std::move(stage)),
        expression_(std::move(expression)),
        on_error_(on_error),
        failures_(std::move(failures)),
        dead_letter_(std::move(dead_letter)) {}

  // Calls `use(first, results)` for each run of events that evaluated, `results` being the
  // expression's values for events [first, first + results.size()). Returns false when the
  // stage must stop (on_error: stop), after the runs before the failing event.
  template <expr::EventType Event, class Evaluate, class Use>
  bool apply(std::span<const Event> events, Evaluate evaluate, Use use) {
    return apply_from(events, 0, evaluate, use);
  }

  // An event failed: applies on_error. False when the stage must stop.
  bool reject(const Value& bad, const std::string& error) {
    if (on_error_ == OnError::stop) {
      failures_->record("stage '" + stage_ + "' failed on event " + describe(bad) + ": " + error);
      return false;
    }
    skipped_.fetch_add(1, std::memory_order_relaxed);
    if (on_error_ == OnError::dead_letter && dead_letter_) dead_letter_(stage_, bad, error);
    return true;
  }

  std::uint64_t skipped() const noexcept { return skipped_.load(std::memory_order_relaxed); }
  const expr::Expression& expression() const noexcept { return expression_; }

 private:
  // apply() over `events`, which start at `offset` in the events it was given.
  template <expr::EventType Event, class Evaluate, class Use>
  bool apply_from(std::span<const Event> events, std::size_t offset, Evaluate& evaluate, Use& use) {
    std::size_t first = 0;
    while (first < events.size()) {
      const auto rest = events.subspan(first);
      std::size_t failed = 0;
      std::string error;
      try {
        use(offset + first, evaluate(rest));
        return true;
      } catch (const expr::EvalError& failure) {
        failed = failure.index();
        error = failure.what();
      }
      // The error names a failing event, not always the first (an operand is evaluated whole
      // before the next): the events before it go through the same rules on their own.
      if (failed > 0 && !apply_from(rest.first(failed), offset + first, evaluate, use)) return false;
      if (!reject(Value(rest[failed]), error)) return false;
      first += failed + 1;
    }
    return true;
  }

  static std::string describe(const Value& value) {
    if (std::holds_alternative<std::string>(value)) return "\"" + std::get<std::string>(value) + "\"";
    return to_string(value);
  }

  std::string stage_;
  expr::Expression expression_;
  OnError on_error_;
  std::shared_ptr<Failures> failures_;
  DeadLetter dead_letter_;
  std::atomic<std::uint64_t> skipped_{0};
};

// --- producers -------------------------------------------------------------------------------

// from, from + step, ... up to `to` (inclusive); endless without `to`.
class RangeSource final : public Producer<std::int64_t> {
 public:
  RangeSource(std::int64_t from, std::optional<std::int64_t> to, std::int64_t step)
      : next_(from), to_(to), step_(step), empty_(to && (step > 0 ? from > *to : from < *to)) {
    if (step == 0) throw std::invalid_argument("a range's step must not be 0");
  }
  void handle_demand(std::size_t demand, Emitter<std::int64_t>& out) override {
    if (empty_) {
      out.done();
      return;
    }
    const std::uint64_t after_next = left_after_next();
    const bool last = demand > after_next;  // then what is left, after_next + 1, fits the demand
    const std::uint64_t count = last ? after_next + 1 : demand;
    auto value = static_cast<std::uint64_t>(next_);
    out.emit_bulk(count, [&](std::span<std::int64_t> slots) {
      value = fill_stepping(slots.data(), slots.size(), value, static_cast<std::uint64_t>(step_));
      return slots.size();
    });
    if (last) {
      out.done();
    } else {
      next_ = static_cast<std::int64_t>(value);
    }
  }

 private:
  // value, value + step, ... into `count` slots; returns the value after them. Unsigned
  // arithmetic wraps where int64 would overflow; every value written is in range. Out of line,
  // unrolled, with restrict-qualified slots, as the DSL's bulk loops
  // (include/sluice/detail/pipeline_stages.hpp says why).
  [[gnu::noinline]] static std::uint64_t fill_stepping(std::int64_t* __restrict slots, std::size_t count, std::uint64_t value,
                                                       std::uint64_t step) {
#pragma GCC unroll 4
    for (std::size_t i = 0; i < count; ++i, value += step) slots[i] = static_cast<std::int64_t>(value);
    return value;
  }

  // How many values come after next_, up to `to` or to the end of int64's range (exact, in
  // unsigned arithmetic: the distance may not fit an int64). next_ itself is due.
  std::uint64_t left_after_next() const {
    const std::int64_t last = to_ ? *to_ : step_ > 0 ? std::numeric_limits<std::int64_t>::max() : std::numeric_limits<std::int64_t>::min();
    const std::uint64_t distance = step_ > 0 ? static_cast<std::uint64_t>(last) - static_cast<std::uint64_t>(next_)
                                             : static_cast<std::uint64_t>(next_) - static_cast<std::uint64_t>(last);
    const std::uint64_t stride = step_ > 0 ? static_cast<std::uint64_t>(step_) : std::uint64_t{0} - static_cast<std::uint64_t>(step_);
    return distance / stride;
  }

  std::int64_t next_;
  std::optional<std::int64_t> to_;
  std::int64_t step_;
  bool empty_;
};

// The expression over i = 0, 1, ... count - 1.
template <expr::EventType Out>
class GenerateSource final : public Producer<Out> {
 public:
  GenerateSource(std::int64_t count, std::shared_ptr<ExpressionStep> step) : count_(count), step_(std::move(step)) {}
  void handle_demand(std::size_t demand, Emitter<Out>& out) override {
    const auto n = static_cast<std::int64_t>(std::min<std::uint64_t>(demand, static_cast<std::uint64_t>(count_ - next_)));
    std::vector<std::int64_t> indices(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) indices[static_cast<std::size_t>(i)] = next_ + i;
    next_ += n;
    const bool go_on = step_->apply(
        std::span<const std::int64_t>(indices),
        [&](std::span<const std::int64_t> part) { return step_->expression().evaluate<Out>(part); },
        [&](std::size_t, expr::Values<Out> values) { out.emit_all(std::move(values)); });
    if (!go_on || next_ >= count_) out.done();
  }

 private:
  std::int64_t count_;
  std::shared_ptr<ExpressionStep> step_;
  std::int64_t next_ = 0;
};

// One event per line of a file, or of standard input for "-". Lines are read on a blocking
// thread, a chunk at a time, never on a worker: a chunk is the whole lines one read brought, so
// a line typed on a terminal goes out at once rather than waiting for the next. The
// thread waits in poll() on the input and on a wake-up descriptor, not in a blocking read, so
// that a stage that stops (a drain, a take that had enough) ends a read waiting on a terminal
// or a pipe at once: a blocked read would hold the System's shutdown until input came.
class LinesSource final : public Producer<std::string> {
 public:
  explicit LinesSource(std::string path) : path_(std::move(path)), wake_(::eventfd(0, EFD_CLOEXEC)) {
    if (!wake_.valid()) throw std::system_error(errno, std::generic_category(), "cannot create an eventfd");
  }

  void handle_demand(std::size_t demand, Emitter<std::string>& out) override {
    demand_ += demand;
    release(out);
  }
  void handle_info(std::any& message, Emitter<std::string>& out) override {
    if (auto* failure = std::any_cast<std::exception_ptr>(&message)) std::rethrow_exception(*failure);
    auto* chunk = std::any_cast<Chunk>(&message);
    if (chunk == nullptr) return;
    reading_ = false;
    ended_ = chunk->ended;
    for (auto& line : chunk->lines) lines_.push_back(std::move(line));
    release(out);
  }
  void terminate(const ExitReason&) override {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto written = ::write(wake_.get(), &one, sizeof one);
  }

 private:
  struct Chunk {
    std::vector<std::string> lines;
    bool ended = false;
  };

  void release(Emitter<std::string>& out) {
    for (; demand_ > 0 && !lines_.empty(); --demand_) {
      out.emit(std::move(lines_.front()));
      lines_.pop_front();
    }
    if (ended_ && lines_.empty()) {
      out.done();
    } else if (demand_ > 0 && !reading_ && !ended_) {
      reading_ = true;  // one read at a time: only that task touches the input and its buffer
      context().run_task([this, limit = demand_] { return std::any(read(limit)); }, TaskKind::blocking);
    }
  }

  // On the blocking thread: one line (waiting for it if need be), then whatever else is ready,
  // at most `limit`. A last line without a newline counts once the input ends.
  Chunk read(std::size_t limit) {
    if (!input_.valid()) open();
    Chunk chunk;
    for (;;) {
      take_lines(chunk, limit);
      if (!chunk.lines.empty() || input_ended_) break;
      pollfd ready[2] = {{input_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
      if (::poll(ready, 2, -1) < 0) {
        if (errno == EINTR) continue;
        throw std::system_error(errno, std::generic_category(), "cannot read '" + path_ + "'");
      }
      if (ready[1].revents != 0) return chunk;  // the stage stopped: nobody wants the rest
      char buffer[1 << 16];
      const ssize_t got = ::read(input_.get(), buffer, sizeof buffer);
      if (got < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        throw std::system_error(errno, std::generic_category(), "cannot read '" + path_ + "'");
      }
      if (got == 0) {
        input_ended_ = true;
      } else {
        pending_.append(buffer, static_cast<std::size_t>(got));
      }
    }
    if (input_ended_ && chunk.lines.size() < limit && !pending_.empty()) {
      chunk.lines.push_back(std::exchange(pending_, {}));
      strip_carriage_return(chunk.lines.back());
    }
    chunk.ended = input_ended_ && pending_.empty();
    return chunk;
  }

  void take_lines(Chunk& chunk, std::size_t limit) {
    std::size_t start = 0;
    for (std::size_t end; chunk.lines.size() < limit && (end = pending_.find('\n', start)) != std::string::npos; start = end + 1) {
      chunk.lines.emplace_back(pending_, start, end - start);
      strip_carriage_return(chunk.lines.back());
    }
    pending_.erase(0, start);
  }

  static void strip_carriage_return(std::string& line) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
  }

  void open() {
    if (path_ == "-") {
      input_ = detail::FileDescriptor(STDIN_FILENO, true);
      return;
    }
    input_ = detail::FileDescriptor(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    if (!input_.valid()) throw std::runtime_error("cannot open '" + path_ + "' for reading");
  }

  std::string path_;
  detail::FileDescriptor wake_;   // written when the stage stops, to end a waiting read
  detail::FileDescriptor input_;  // opened by the first read
  std::string pending_;       // read, not yet split into lines
  bool input_ended_ = false;
  std::size_t demand_ = 0;
  std::deque<std::string> lines_;  // read, waiting for demand
  bool reading_ = false;
  bool ended_ = false;
};

// --- producer-consumers ----------------------------------------------------------------------

template <expr::EventType In, expr::EventType Out>
class MapStage final : public ProducerConsumer<In, Out> {
 public:
  explicit MapStage(std::shared_ptr<ExpressionStep> step) : step_(std::move(step)) {}
  void handle_events(std::span<In> events, Emitter<Out>& out) override {
    const bool go_on = step_->apply(
        std::span<const In>(events), [&](std::span<const In> part) { return step_->expression().evaluate<Out>(part); },
        [&](std::size_t, expr::Values<Out> values) { out.emit_all(std::move(values)); });
    if (!go_on) out.done();
  }

 private:
  std::shared_ptr<ExpressionStep> step_;
};

template <expr::EventType Event>
class FilterStage final : public ProducerConsumer<Event, Event> {
 public:
  explicit FilterStage(std::shared_ptr<ExpressionStep> step) : step_(std::move(step)) {}
  void handle_events(std::span<Event> events, Emitter<Event>& out) override {
    bool go_on = true;
    if constexpr (std::is_trivially_copyable_v<Event>) {
      // The expression picks the events itself (Expression::select), into a batch sent whole.
      go_on = step_->apply(
          std::span<const Event>(events), [&](std::span<const Event> part) { return step_->expression().select(part); },
          [&](std::size_t, expr::Values<Event> kept) { out.emit_all(std::move(kept)); });
    } else {
      // Strings are moved, not copied: flags first, then the events they keep.
      go_on = step_->apply(
          std::span<const Event>(events),
          [&](std::span<const Event> part) { return step_->expression().evaluate<std::int64_t>(part); },
          [&](std::size_t first, const expr::Values<std::int64_t>& keep) {
            out.reserve(keep.size());
            for (std::size_t i = 0; i < keep.size(); ++i)
              if (keep[i] != 0) out.emit(std::move(events[first + i]));
          });
    }
    if (!go_on) out.done();
  }

 private:
  std::shared_ptr<ExpressionStep> step_;
};

// Splits string events on `separator` into one event per part.
class FlatMapStage final : public ProducerConsumer<std::string, std::string> {
 public:
  explicit FlatMapStage(std::string separator) : separator_(std::move(separator)) {}
  void handle_events(std::span<std::string> events, Emitter<std::string>& out) override {
    for (const std::string& text : events) {
      std::size_t start = 0;
      for (;;) {
        const std::size_t end = separator_.empty() ? std::string::npos : text.find(separator_, start);
        out.emit(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
        if (end == std::string::npos) break;
        start = end + separator_.size();
      }
    }
  }

 private:
  std::string separator_;
};

// Passes the first `count` events on, then cancels upstream and completes.
template <expr::EventType Event>
class TakeStage final : public ProducerConsumer<Event, Event> {
 public:
  explicit TakeStage(std::uint64_t count) : left_(count) {}
  void handle_events(std::span<Event> events, Emitter<Event>& out) override {
    for (auto& event : events) {
      if (left_ == 0) break;
      out.emit(std::move(event));
      --left_;
    }
    if (left_ == 0) out.done();
  }

 private:
  std::uint64_t left_;
};

// Joins every `size` events into one string event, parts separated by `separator`; a partial
// batch goes out after `timeout` (if not zero), and at the end of the input.
template <expr::EventType In>
class BatchStage final : public ProducerConsumer<In, std::string> {
 public:
  BatchStage(std::size_t size, std::chrono::milliseconds timeout, std::string separator)
      : size_(size), timeout_(timeout), separator_(std::move(separator)) {}

  void handle_events(std::span<In> events, Emitter<std::string>& out) override {
    for (const auto& event : events) {
      if (parts_ > 0) line_ += separator_;
      append_value(line_, event);
      if (++parts_ == size_) {
        flush(out);
      } else if (parts_ == 1 && timeout_.count() > 0) {
        timer_ = this->context().send_after(timeout_, Flush{generation_});
      }
    }
  }
  void handle_info(std::any& message, Emitter<std::string>& out) override {
    const auto* flush_due = std::any_cast<Flush>(&message);
    if (flush_due != nullptr && flush_due->generation == generation_ && parts_ > 0) flush(out);
  }
  // What is left goes out as a last, short batch.
  void handle_end_of_input(Emitter<std::string>& out) override {
    if (parts_ > 0) flush(out);
  }

 private:
  struct Flush {
    std::uint64_t generation;  // of the batch it was set for: a later batch ignores it
  };
  void flush(Emitter<std::string>& out) {
    out.emit(std::exchange(line_, {}));
    parts_ = 0;
    ++generation_;
    // The batch's timer is not needed any more: cancelled, it is dropped now rather than held
    // until its deadline, so that memory stays flat however fast batches fill. One that fired
    // already arrives as a Flush of an old generation.
    if (timer_) this->context().cancel_timer(*std::exchange(timer_, std::nullopt));
  }

  std::size_t size_;
  std::chrono::milliseconds timeout_;
  std::string separator_;
  std::string line_;
  std::size_t parts_ = 0;
  std::uint64_t generation_ = 0;
  std::optional<std::uint64_t> timer_;  // set for the batch being filled
};

// A producer-consumer that holds events and lets them go in order, at times of its choosing
// (delay, rate_limit). Its demand is manual: events it holds count against downstream demand,
// and it holds at most `window`.
template <expr::EventType Event>
class PacedStage : public ProducerConsumer<Event, Event> {
 public:
  using Clock = std::chrono::steady_clock;
  explicit PacedStage(std::size_t window) : window_(window) {}

  DemandMode handle_subscribe(const SubscriptionInfo& info) override {
    const DemandMode mode = credit_.subscribed(info);
    credit_.ask(this->context(), held_.size(), window_);
    return mode;
  }
  void handle_cancel(const SubscriptionInfo& info, const ExitReason&) override {
    credit_.cancelled(info, this->context(), held_.size(), window_);
  }
  void handle_demand(std::size_t demand, Emitter<Event>& out) override {
    credit_.demanded(demand);
    pump(out);
  }
  void handle_events(std::span<Event> events, Emitter<Event>& out) override {
    credit_.received(events.size());
    const auto now = Clock::now();
    for (auto& event : events) held_.push_back({due(now), std::move(event)});
    pump(out);
  }
  void handle_info(std::any& message, Emitter<Event>& out) override {
    if (std::any_cast<Tick>(&message) == nullptr) return;
    armed_ = false;
    pump(out);
  }
  bool holds_work() const noexcept override { return !held_.empty(); }

 protected:
  // When an event arriving at `arrival` may leave.
  virtual Clock::time_point due(Clock::time_point arrival) = 0;
  // Nothing if one more event may leave now (and it is counted), else when one may.
  virtual std::optional<Clock::time_point> take_turn(Clock::time_point now) = 0;

 private:
  struct Tick {};
  struct Held {
    Clock::time_point due;
    Event event;
  };

  void pump(Emitter<Event>& out) {
    const auto now = Clock::now();
    while (!held_.empty() && credit_.credit() > 0) {
      if (held_.front().due > now) {
        arm(held_.front().due - now);
        break;
      }
      if (auto later = take_turn(now)) {
        arm(*later - now);
        break;
      }
      out.emit(std::move(held_.front().event));
      held_.pop_front();
      credit_.emitted(1);
    }
    credit_.ask(this->context(), held_.size(), window_);
  }
  void arm(Clock::duration wait) {
    if (armed_) return;
    armed_ = true;
    this->context().send_after(wait, Tick{});
  }

  std::size_t window_;
  detail::DemandCredit credit_;
  std::deque<Held> held_;
  bool armed_ = false;  // a Tick is on its way
};

// Holds each event for `delay` (simulated I/O latency); events overlap, so throughput is not
// limited by the delay, only by the window.
template <expr::EventType Event>
class DelayStage final : public PacedStage<Event> {
 public:
  using Clock = std::chrono::steady_clock;
  DelayStage(std::chrono::milliseconds delay, std::size_t window) : PacedStage<Event>(window), delay_(delay) {}

 private:
  Clock::time_point due(Clock::time_point arrival) override { return arrival + delay_; }
  std::optional<Clock::time_point> take_turn(Clock::time_point) override { return std::nullopt; }
  std::chrono::milliseconds delay_;
};

// Lets at most `per_second` events a second through, evenly spaced.
template <expr::EventType Event>
class RateLimitStage final : public PacedStage<Event> {
 public:
  using Clock = std::chrono::steady_clock;
  RateLimitStage(double per_second, std::size_t window)
      : PacedStage<Event>(window),
        interval_(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / per_second))) {}

 private:
  Clock::time_point due(Clock::time_point arrival) override { return arrival; }
  std::optional<Clock::time_point> take_turn(Clock::time_point now) override {
    if (next_turn_ > now) return next_turn_;
    // Turns not taken while idle are not saved up: no burst after a pause.
    next_turn_ = std::max(next_turn_, now - interval_) + interval_;
    return std::nullopt;
  }
  Clock::duration interval_;
  Clock::time_point next_turn_{};
};

// async_map in a YAML pipeline: the expression evaluated as a task per event, after
// `delay` (simulated I/O, on a blocking thread; it ends early if the task is asked to stop).
template <expr::EventType In, expr::EventType Out>
struct DelayedExpression {
  std::shared_ptr<ExpressionStep> step;
  std::chrono::milliseconds delay;

  Out operator()(In event, std::stop_token stop) const {
    if (delay.count() > 0) {
      std::mutex mutex;
      std::condition_variable_any never;
      std::unique_lock lock(mutex);
      never.wait_for(lock, stop, delay, [] { return false; });
    }
    return std::move(step->expression().evaluate<Out>(std::span<const In>(&event, 1)).front());
  }
};

// Emits a task's value; an exit (an expression error, a timeout) goes by the stage's on_error.
template <expr::EventType In, expr::EventType Out>
struct DeliverValues {
  std::shared_ptr<ExpressionStep> step;

  bool operator()(TaskResult<Out, In>&& result, Emitter<Out>& out) const {
    if (result.ok()) {
      out.emit(std::move(result.value()));
      return true;
    }
    if (!step->reject(Value(*result.exit().input), result.exit().reason)) out.done();
    return false;
  }
};

template <expr::EventType In, expr::EventType Out>
using AsyncMapStage = detail::AsyncMapStage<In, DelayedExpression<In, Out>, Out, DeliverValues<In, Out>>;

// The events of the stages whose on_error is dead_letter, each as one string:
// `stage: error: event`. It completes once every stage feeding it has stopped.
class DeadLetterSource final : public Producer<std::string> {
 public:
  struct Letter {
    std::string line;
  };
  explicit DeadLetterSource(std::size_t feeders) : feeders_(feeders) {}
  // It ends once its feeders have stopped, so a drain leaves it running until then.
  static constexpr bool fed_by_pipeline = true;

  void handle_demand(std::size_t demand, Emitter<std::string>& out) override {
    demand_ += demand;
    release(out);
  }
  void handle_info(std::any& message, Emitter<std::string>& out) override {
    if (auto* letter = std::any_cast<Letter>(&message)) {
      letters_.push_back(std::move(letter->line));
    } else if (std::any_cast<StageDown>(&message) != nullptr) {
      --feeders_;
    }
    release(out);
  }

 private:
  void release(Emitter<std::string>& out) {
    for (; demand_ > 0 && !letters_.empty(); --demand_) {
      out.emit(std::move(letters_.front()));
      letters_.pop_front();
    }
    if (feeders_ == 0 && letters_.empty()) out.done();
  }

  std::size_t feeders_;
  std::size_t demand_ = 0;
  std::deque<std::string> letters_;  // unbounded, but only failed events wait here
};

// --- consumers -------------------------------------------------------------------------------

// The turns sinks take at writing, shared whatever their event type.
inline std::mutex& output_turns() {
  static std::mutex turns;
  return turns;
}

// Writes all of `text` with write(2), in its sink's turn; a write error (a full disk) fails the
// sink. SIGPIPE is left to its default, so a closed pipe (`sluice run x.yaml | head`) ends the
// process, as it does other Unix filters.
inline void write_all(int descriptor, std::string_view text) {
  std::lock_guard lock(output_turns());
  for (std::size_t written = 0; written < text.size();) {
    const ssize_t count = ::write(descriptor, text.data() + written, text.size() - written);
    if (count < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "write failed");
    }
    written += static_cast<std::size_t>(count);
  }
}

// Writes `value` and a newline: a sink's one result line.
template <expr::EventType Event>
void print_line(int descriptor, const Event& value) {
  std::string line;
  append_value(line, value);
  line.push_back('\n');
  write_all(descriptor, line);
}

// Writes one event per line to a file descriptor, one write(2) per batch.
template <expr::EventType Event>
class WriterSink final : public Consumer<Event> {
 public:
  // Standard output. Each batch goes out as it comes, so a reader at the other end of a pipe
  // sees events as they are handled.
  explicit WriterSink(int descriptor) : descriptor_(descriptor, true) {}
  // Opens `path` now, so that a bad path fails when the pipeline is built, not mid-stream.
  WriterSink(const std::string& path, bool append)
      : descriptor_(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0666)) {
    if (!descriptor_.valid()) throw std::runtime_error("cannot open '" + path + "' for writing");
  }

  // A batch is whole lines, written with write(2) and no stdio buffer: a file ends at a line
  // boundary after every batch, even if the process exits at once on a second signal (a stdio
  // buffer would have sent its full blocks and kept the torn rest). Sinks take turns, so that
  // two of them on standard output never interleave their batches (as stdio's lock did).
  void handle_events(std::span<Event> events) override {
    text_.clear();
    for (const auto& event : events) {
      append_value(text_, event);
      text_.push_back('\n');
    }
    write_all(descriptor_.get(), text_);
  }
  void terminate(const ExitReason&) override { descriptor_.close(); }

 private:
  detail::FileDescriptor descriptor_;  // standard output is borrowed, a file owned
  std::string text_;
};

template <expr::EventType Event>
class NullSink final : public Consumer<Event> {
 public:
  void handle_events(std::span<Event>) override {}
};

// Prints one line at the end: the number of events.
template <expr::EventType Event>
class CountSink final : public Consumer<Event> {
 public:
  explicit CountSink(int descriptor) : descriptor_(descriptor) {}
  void handle_events(std::span<Event> events) override { count_ += events.size(); }
  void terminate(const ExitReason& reason) override {
    if (reason.kind == ExitReason::Kind::normal) print_line(descriptor_, static_cast<std::int64_t>(count_));
  }

 private:
  int descriptor_;  // borrowed
  std::uint64_t count_ = 0;
};

// Prints one line at the end: the sum of the events. An integer sum that overflows is an error.
template <class Number>
  requires std::is_same_v<Number, std::int64_t> || std::is_same_v<Number, double>
class SumSink final : public Consumer<Number> {
 public:
  explicit SumSink(int descriptor) : descriptor_(descriptor) {}
  void handle_events(std::span<Number> events) override {
    for (const Number event : events) {
      if constexpr (std::is_same_v<Number, double>) {
        sum_ += event;
      } else if (__builtin_add_overflow(sum_, event, &sum_)) {
        throw std::runtime_error("integer overflow in the sum, adding " + std::to_string(event));
      }
    }
  }
  void terminate(const ExitReason& reason) override {
    if (reason.kind == ExitReason::Kind::normal) print_line(descriptor_, sum_);
  }

 private:
  int descriptor_;  // borrowed
  Number sum_ = 0;
};

}  // namespace sluice::stages
