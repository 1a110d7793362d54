#pragma once
// The three GenStage behaviours: derive from one, override its callbacks.
#include <sluice/defaults.hpp>
#include <sluice/emitter.hpp>
#include <sluice/exit_reason.hpp>
#include <sluice/subscription.hpp>
#include <sluice/task_kind.hpp>

#include <any>
#include <chrono>
#include <cstdint>
#include <concepts>
#include <cstddef>
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

namespace sluice {

// What a producer does with events it emits beyond its consumers' demand (GenStage's
// :buffer_keep): keep the last ones (drop the oldest) or the first ones (drop the excess).
enum class BufferKeep { last, first };

struct StageOptions {
  std::string name{};
  // Unset: defaults::buffer_size for producers, defaults::unlimited_buffer for
  // producer-consumers (GenStage's defaults).
  std::optional<std::size_t> buffer_size{};
  BufferKeep buffer_keep = BufferKeep::last;
  // Called on the stage's own thread with the number of events just discarded from a full
  // buffer; the running total is in StageStats::discarded too.
  std::function<void(std::size_t)> on_discard{};
  // A producer whose last consumer cancelled completes, so that a `take`-like consumer ends the
  // stream upstream. GenStage keeps such a producer alive; set false to do the same.
  bool complete_when_unsubscribed = true;
  // How a producer shares events among its consumers: dispatch::Demand (the default),
  // dispatch::Broadcast, or dispatch::Partition<Out> (see <sluice/dispatcher.hpp>).
  std::any dispatcher{};
  // Register the stage under `name` in the System's registry: it can then be looked up and
  // subscribed to by name. A registered name must be unique; it is freed when the stage stops.
  bool register_name = false;
  // GenStage's demand: :accumulate. Demand is recorded but handle_demand is not called until
  // System::forward_demand(); then the accumulated demands are replayed in order. Typical use:
  // subscribe every consumer of a broadcast producer first, then forward.
  bool accumulate_demand = false;
};

// What a stage's callbacks can ask of the runtime.
class StageContext {
 public:
  virtual std::string_view stage_name() const noexcept = 0;
  // Manual demand: ask a producer for `count` more events on this subscription.
  virtual void ask(SubscriptionId subscription, std::size_t count) = 0;
  // Inside handle_events: the subscription the events came on (GenStage's `from`), for a stage
  // that keeps demand per producer.
  virtual SubscriptionId current_subscription() const noexcept = 0;
  // Leave a subscription; the producer's handle_cancel receives `reason`.
  virtual void cancel(SubscriptionId subscription, ExitReason reason = ExitReason::normal()) = 0;
  // Delivers `message` to this stage's handle_info after `delay` (Process.send_after). Returns
  // an id for cancel_timer.
  virtual std::uint64_t send_after(std::chrono::nanoseconds delay, std::any message) = 0;
  // True when the timer was cancelled before it fired.
  virtual bool cancel_timer(std::uint64_t timer) = 0;
  // Stops this stage once the current callback returns (GenServer's {:stop, reason, state}).
  virtual void stop(ExitReason reason = ExitReason::normal()) = 0;
  // Runs `task` off this stage (Task.start): on the workers, or on threads of its own when it
  // may block. What it returns comes back to handle_info, and so does an exception escaping
  // it, as a std::exception_ptr.
  using TaskKind = sluice::TaskKind;
  virtual void run_task(std::function<std::any()> task, TaskKind kind = TaskKind::cpu) = 0;

 protected:
  ~StageContext() = default;
};

namespace detail {
template <class S>
class StageActor;

class StageBase {
 protected:
  StageBase() = default;
  StageBase(const StageBase&) = default;
  StageBase& operator=(const StageBase&) = default;
  ~StageBase() = default;

  StageContext& context() const noexcept { return *context_; }
  [[noreturn]] std::any unhandled_call(std::any&) const {
    throw std::logic_error("'" + std::string(context_->stage_name()) + "' does not handle calls");
  }

 private:
  template <class S>
  friend class StageActor;
  StageContext* context_ = nullptr;
};
}  // namespace detail

// A source: emits events when its consumers ask for them.
template <class Out>
class Producer : public detail::StageBase {
 public:
  using out_type = Out;
  virtual ~Producer() = default;

  // `demand` more events were asked for than the buffer could serve. Emitting fewer is fine
  // (the rest stays owed); emitting more is buffered up to buffer_size.
  virtual void handle_demand(std::size_t demand, Emitter<Out>& out) = 0;
  virtual void handle_subscribe(const SubscriptionInfo&) {}
  virtual void handle_cancel(const SubscriptionInfo&, const ExitReason&) {}
  // A message sent with System::send_info; events emitted here are dispatched like any other.
  virtual void handle_info(std::any&, Emitter<Out>&) {}
  // System::call; the returned value is the answer. As in GenServer, a stage that does not
  // handle calls fails when called.
  virtual std::any handle_call(std::any& request, Emitter<Out>&) { return unhandled_call(request); }
  virtual void handle_cast(std::any&, Emitter<Out>&) {}
  // The stage stops, for `reason` (GenServer's terminate/2): flush, close, report.
  virtual void terminate(const ExitReason&) {}
};

// A middle stage: receives batches and emits events, only while its consumers have demand.
template <class In, class Out>
class ProducerConsumer : public detail::StageBase {
 public:
  using in_type = In;
  using out_type = Out;
  virtual ~ProducerConsumer() = default;

  virtual void handle_events(std::span<In> events, Emitter<Out>& out) = 0;
  // Consumers asked for `demand` more events than the buffer held. A stage in manual demand
  // mode that emits later than it receives (async_map) asks upstream from here.
  virtual void handle_demand(std::size_t /*demand*/, Emitter<Out>&) {}
  // Called once, when every producer has completed and every event received was handled: the
  // place to emit what the stage still holds (a partial batch).
  virtual void handle_end_of_input(Emitter<Out>&) {}
  // True while events taken in have not all been emitted: the stage does not complete when
  // its input does, but once this turns false.
  virtual bool holds_work() const noexcept { return false; }
  virtual DemandMode handle_subscribe(const SubscriptionInfo&) { return DemandMode::automatic; }
  virtual void handle_cancel(const SubscriptionInfo&, const ExitReason&) {}
  virtual void handle_info(std::any&, Emitter<Out>&) {}
  virtual std::any handle_call(std::any& request, Emitter<Out>&) { return unhandled_call(request); }
  virtual void handle_cast(std::any&, Emitter<Out>&) {}
  // The stage stops, for `reason` (GenServer's terminate/2): flush, close, report.
  virtual void terminate(const ExitReason&) {}
};

// A sink.
template <class In>
class Consumer : public detail::StageBase {
 public:
  using in_type = In;
  virtual ~Consumer() = default;

  virtual void handle_events(std::span<In> events) = 0;
  // True while work it started is unfinished (tasks whose results it waits for): the stage does
  // not complete when its input does, but once this turns false after a message.
  virtual bool holds_work() const noexcept { return false; }
  virtual DemandMode handle_subscribe(const SubscriptionInfo&) { return DemandMode::automatic; }
  virtual void handle_cancel(const SubscriptionInfo&, const ExitReason&) {}
  virtual void handle_info(std::any&) {}
  virtual std::any handle_call(std::any& request) { return unhandled_call(request); }
  virtual void handle_cast(std::any&) {}
  virtual void terminate(const ExitReason&) {}
};

// A GenServer: an actor with no events, only calls, casts and info messages. It runs on the
// same workers, and is registered, monitored and supervised like any stage.
class Server : public detail::StageBase {
 public:
  virtual ~Server() = default;
  virtual std::any handle_call(std::any& request) { return unhandled_call(request); }
  virtual void handle_cast(std::any&) {}
  virtual void handle_info(std::any&) {}
  virtual void terminate(const ExitReason&) {}
};

template <class S>
concept ProducerStage = requires { typename S::out_type; } && !requires { typename S::in_type; } &&
                        std::derived_from<S, Producer<typename S::out_type>>;

// A producer fed by the pipeline's own stages, not from outside (a dead-letter source), says so
// with `static constexpr bool fed_by_pipeline = true;`. A drain does not complete it: it ends
// when its feeders have, so that what they send it while the drain runs is not lost.
template <class S>
concept DrainedSource = ProducerStage<S> && !requires { requires S::fed_by_pipeline; };

template <class S>
concept ProducerConsumerStage =
    requires {
      typename S::in_type;
      typename S::out_type;
    } && std::derived_from<S, ProducerConsumer<typename S::in_type, typename S::out_type>>;

template <class S>
concept ConsumerStage = requires { typename S::in_type; } && !requires { typename S::out_type; } &&
                        std::derived_from<S, Consumer<typename S::in_type>>;

template <class S>
concept ServerStage = std::derived_from<S, Server>;

template <class S>
concept StageType = ProducerStage<S> || ProducerConsumerStage<S> || ConsumerStage<S> || ServerStage<S>;

// Stages that emit events, and stages that receive them.
template <class S>
concept EmittingStage = ProducerStage<S> || ProducerConsumerStage<S>;
template <class S>
concept ReceivingStage = ProducerConsumerStage<S> || ConsumerStage<S>;

// Can `Downstream` subscribe to `Upstream`: do the event types match?
template <class Downstream, class Upstream>
concept SubscribableTo = ReceivingStage<Downstream> && EmittingStage<Upstream> &&
                         std::same_as<typename Downstream::in_type, typename Upstream::out_type>;

}  // namespace sluice
