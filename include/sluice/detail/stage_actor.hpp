#pragma once
// A user stage wrapped in an actor: the GenStage protocol (subscriptions, demand, buffering,
// completion, cancellation) around the user's callbacks.
#include <sluice/detail/actor.hpp>
#include <sluice/detail/batch_pool.hpp>
#include <sluice/detail/dispatcher.hpp>
#include <sluice/detail/event_buffer.hpp>
#include <sluice/detail/messages.hpp>
#include <sluice/detail/timer_service.hpp>
#include <sluice/stage.hpp>

#include <algorithm>
#include <chrono>
#include <deque>
#include <exception>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace sluice::detail {

// The input type of a producer and the output type of a consumer.
struct NoEvents {};

template <class S>
struct input_of {
  using type = NoEvents;
};
template <ReceivingStage S>
struct input_of<S> {
  using type = typename S::in_type;
};
template <class S>
struct output_of {
  using type = NoEvents;
};
template <EmittingStage S>
struct output_of<S> {
  using type = typename S::out_type;
};

template <class S>
class StageActor final : public ActorCore, public Inlet<typename input_of<S>::type>, private StageContext {
 public:
  using In = typename input_of<S>::type;
  using Out = typename output_of<S>::type;

  template <class... Args>
  StageActor(Scheduler& scheduler, StageHost& host, StageOptions options, Args&&... args)
      : ActorCore(scheduler, host, std::move(options.name)),
        options_(std::move(options)),
        dispatcher_(make_dispatcher<Out>(options_.dispatcher)),
        buffer_(options_.buffer_size.value_or(ProducerConsumerStage<S> ? defaults::unlimited_buffer : defaults::buffer_size),
                options_.buffer_keep),
        accumulating_(options_.accumulate_demand),
        stage_(std::forward<Args>(args)...) {
    static_cast<StageBase&>(stage_).context_ = this;
  }

  S& stage() noexcept { return stage_; }
  const StageOptions& options() const noexcept { return options_; }

  bool post(Control&& message) override { return deliver(Message{std::move(message)}); }

  // Before anyone else has the stage: it queues its messages until release().
  void hold() {
    mailbox_.hold();
    held_.store(true, std::memory_order_release);
  }

  // Kept for the end of the message being handled only while nothing waits in the mailbox: a
  // message the consumer sent earlier must still come first (messages between two stages keep
  // their order, as between two Erlang processes).
  // Flattened, so that the push is inlined (GCC left it out of line: 33 instructions an event
  // at max_demand 1, by bench/instructions.sh); the queued case stays out of line.
  [[gnu::flatten]] void ask_beneath(SubscriptionId id, std::size_t count) override {
    if (mailbox_.quiet()) {
      asks_beneath_.push_back(Ask{id, count});
    } else {
      queue_ask(id, count);
    }
  }

  // HandOff::at_once (`at_once` set): when the sender is a stage running on this thread, on the
  // same scheduler, and this consumer is idle, it runs here and now instead of being queued and
  // scheduled, as Akka's fused stages pass elements by a call. The sender takes its turn as the scheduler
  // would, so it still runs alone, and handles its messages in the order they came.
  //
  // The slice keeps the turn until it ends (KeptTurns), so the next batch is taken at once too
  // with no claim. A kept stage that was sent messages meanwhile takes the batch after them: it
  // is queued behind them, and they all wait for the slice's end.
  void post_events(SubscriptionId id, Batch<In>& events, BatchPool<In>* pool, bool at_once) override {
    if (at_once && may_hand_off()) {
      KeptTurns& kept = running_here->kept;
      const bool held_here = kept.holds(*this);
      // A kept turn is idle with nothing left to do (asks, messages) and the stage not running
      // beneath the sender (sending to itself).
      const bool kept_idle = held_here && asks_beneath_.empty() && mailbox_.quiet() && !runs_beneath_caller(*this);
      if (kept_idle || (!held_here && mailbox_.try_claim())) {
        // Whatever the stage did with them (it may have stopped meanwhile), the events were
        // delivered: the producer's vector is emptied, and it is all that is touched after the
        // run (the stage may have gone idle, to run elsewhere or be freed).
        struct EmptiedAfter {
          Batch<In>& events;
          ~EmptiedAfter() { events.clear(); }
        } emptied{events};
        HandedOff<In> handed{id, events, pool};
        run_handed_off(handed, held_here || kept.add(*this));
        return;
      }
    }
    deliver(Message{Events<In>{id, std::exchange(events, {}), pool}});
  }

  bool run_slice() override {
    std::size_t budget = scheduler_.throughput();
    KeptTurns kept;  // given back when the slice ends, after this stage's own turn
    RunningGuard running(*this, scheduler_, budget, kept);
    if (!asks_beneath_.empty()) take_asks_beneath();  // left by the last turn's budget
    return drain();
  }

  void let_go_turn() override {
    if (!asks_beneath_.empty() || mailbox_.finish_slice(false)) scheduler_.schedule(*this);
  }

 private:
  using Message = std::variant<Control, Events<In>>;
  static constexpr bool emits = EmittingStage<S>;
  static constexpr bool receives = ReceivingStage<S>;
  // The functions an event passes through are marked always_inline: GCC left them out of line,
  // and their calls were a tenth of the instructions per event at max_demand 1
  // (bench/instructions.sh).
  // A stage that declares no handle_demand of its own names the base's: its member pointer
  // then has the base's type.
  static constexpr bool overrides_handle_demand = !requires {
    { &S::handle_demand } -> std::same_as<void (ProducerConsumer<In, Out>::*)(std::size_t, Emitter<Out>&)>;
  };

  [[gnu::noinline]] void queue_ask(SubscriptionId id, std::size_t count) { deliver(Message{Control{Ask{id, count}}}); }

  // Handles messages while the turn's budget lasts; true when messages remain.
  bool drain() {
    return ActorCore::drain(
        mailbox_, running_here->budget, [this] { return stopped_; }, [this](Message& message) { handle_message(message); },
        [this] { return !asks_beneath_.empty(); });
  }

  // A kept turn's messages, while the budget lasts; the turn stays taken when they run out.
  void drain_kept() {
    std::size_t& budget = running_here->budget;
    while (budget > 0 && !stopped_) {
      Message* message = mailbox_.next_kept();
      if (message == nullptr) return;
      --budget;
      handle_message(*message);
    }
  }

  bool may_hand_off() const noexcept {
    const RunningFrame* sender = running_here;
    return sender != nullptr && sender->depth < defaults::max_hand_off_depth && sender->scheduler == &scheduler_;
  }

  // Runs this stage, whose turn the caller took, on the batch, and then on its mailbox while the
  // turn's budget lasts (a turn the slice keeps, on what came while it was kept): the stages a
  // slice runs at once share its throughput(), so that a slice stays bounded however deep the
  // hand-offs go. The batch itself is part of the sender's message.
  [[gnu::always_inline]] void run_handed_off(HandedOff<In>& events, bool keep) {
    if (host_.measures_busy_time()) [[unlikely]] {
      run_handed_off_timed(events, keep);
    } else if (handle_handed_off(events, keep)) {
      scheduler_.schedule(*this);
    }
  }

  // The sender's busy time leaves out the consumers it ran at once.
  [[gnu::noinline]] void run_handed_off_timed(HandedOff<In>& events, bool keep) {
    RunningFrame& sender = *running_here;
    const auto started = std::chrono::steady_clock::now();
    const bool more = handle_handed_off(events, keep);
    // Past a drain that went idle the stage may run elsewhere, or be freed: only the sender's
    // frame is touched.
    sender.handed_off_ns += elapsed_ns(started);
    if (more) scheduler_.schedule(*this);
  }

  // True when the stage must be scheduled, for messages or asks left. False when it went idle,
  // and then the caller must not touch it (another worker may run it, or free it), or when the
  // slice keeps its turn.
  [[gnu::always_inline]] bool handle_handed_off(HandedOff<In>& events, bool keep) {
    RunningFrame& sender = *running_here;
    RunningGuard running(*this, scheduler_, sender.budget, sender.kept);
    handle_message(events);
    if (keep && !mailbox_.quiet()) drain_kept();
    // A stage that stopped closes its mailbox now, and is kept no more.
    if (keep && stopped_) sender.kept.remove(*this);
    return (!keep || stopped_) && drain();
  }

  // One message, from the mailbox (Message) or handed off (HandedOff<In>), and then the asks it
  // drew from consumers it handed batches to.
  template <class M>
  [[gnu::always_inline]] void handle_message(M& message) {
    handle_one(message);
    if (!asks_beneath_.empty()) take_asks_beneath();
  }

  // Busy time is measured only when monitored: otherwise a message skips the clock and its tests.
  template <class M>
  [[gnu::always_inline]] void handle_one(M& message) {
    if (host_.measures_busy_time()) [[unlikely]] {
      handle_timed(message);
    } else {
      handle_guarded(message);
    }
  }

  // Timed per message, while this thread still owns the stage; consumers it ran at once count
  // as their own busy time, not this stage's.
  template <class M>
  [[gnu::noinline]] void handle_timed(M& message) {
    const auto started = std::chrono::steady_clock::now();
    const std::uint64_t handed_off_before = running_here->handed_off_ns;
    handle_guarded(message);
    stats_.add_busy(elapsed_ns(started) - (running_here->handed_off_ns - handed_off_before));
  }

  // A message's callbacks, and what follows them; a stage whose callback throws stops with the
  // stage's name and the exception's message.
  template <class M>
  [[gnu::always_inline]] void handle_guarded(M& message) {
    if (stopped_) {
      if constexpr (std::is_same_v<M, Message>) handle_after_stop(message);
      return;
    }
    try {
      if constexpr (std::is_same_v<M, Message>) {
        std::visit([this](auto& m) { handle(m); }, message);
      } else {
        handle(message);
      }
      if (stop_requested_) terminate(*std::exchange(stop_requested_, std::nullopt));
      // Nothing ends before an upstream completes or the output is done: the usual message
      // skips the call.
      if (!stopped_ && (completed_upstream_ > 0 || output_done_)) settle();
      record_demand();
    } catch (const std::exception& e) {
      terminate(ExitReason::error(name_, e.what()));
    } catch (...) {
      terminate(ExitReason::error(name_, "unknown exception"));
    }
  }

  // The asks of consumers that ran beneath the message just handled, each as a message of its
  // own and ahead of the mailbox (they keep a chain handed off at once moving), with those that
  // handling them draws in turn. Any left when the turn's budget runs out keep the stage
  // scheduled, and its next turn starts with them. Out of line: inlined, it made GCC stop
  // inlining the mailbox on the queued path (bench/instructions.sh).
  [[gnu::noinline]] void take_asks_beneath() {
    std::size_t& budget = running_here->budget;
    std::size_t next = 0;
    for (; next < asks_beneath_.size() && budget > 0 && !stopped_; ++next) {
      --budget;
      Ask ask = asks_beneath_[next];  // a copy: handling it may append to the vector
      handle_one(ask);
    }
    // All of them taken, the usual case: a clear, not an erase that moves what follows.
    if (stopped_ || next == asks_beneath_.size()) {
      asks_beneath_.clear();
    } else {
      asks_beneath_.erase(asks_beneath_.begin(), asks_beneath_.begin() + static_cast<std::ptrdiff_t>(next));
    }
  }

  static std::uint64_t elapsed_ns(std::chrono::steady_clock::time_point started) {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started).count());
  }

  // One subscription to a producer, seen from this consumer.
  struct Upstream {
    SubscriptionId id;
    ActorRef producer;  // null for a name nobody had registered
    SubscribeOptions options;
    std::size_t min_demand;   // options.effective_min_demand(), resolved once: read on every batch
    std::size_t pending = 0;  // asked for and not yet received
    bool manual = false;
    bool cancelling = false;  // cancelled by this stage; the producer's answer ends it
  };

  // Demand, for monitoring (sluice run --metrics), after each message, while this thread owns
  // the stage: relaxed atomic stores.
  [[gnu::always_inline]] void record_demand() {
    std::size_t asked = 0;
    for (const auto& upstream : upstream_) asked += upstream.pending;
    if constexpr (ProducerConsumerStage<S>) {
      stats_.set_demand(downstream_demand_, asked);
    } else {
      stats_.set_demand(owed_demand_, asked);
    }
  }

  // Queues the message, or, once this stage has stopped for good, answers for it on the
  // sender's thread (handle_after_stop reads nothing that changes).
  bool deliver(Message&& message) {
    if (enqueue(mailbox_, std::move(message))) return true;
    handle_after_stop(message);
    return false;
  }

  void handle(Control& control) {
    std::visit([this](auto& m) { handle(m); }, control);
  }

  // --- consumer side -------------------------------------------------------------------------

  void handle(SubscribeTo& m) {
    if constexpr (receives) {
      // Recorded first: handle_subscribe may already ask (manual demand) on this subscription.
      upstream_.push_back(Upstream{m.id, m.producer, m.options, m.options.effective_min_demand()});
      if (m.tell_producer && m.producer != nullptr) m.producer->post(Subscribe{ActorRef(this), m.id, m.options});
      const SubscriptionInfo info{m.id, PeerRole::producer, peer_name(m.producer.get()), m.options};
      const bool manual = stage_.handle_subscribe(info) == DemandMode::manual;
      Upstream* upstream = find_upstream(m.id);
      if (upstream == nullptr) return;  // cancelled from handle_subscribe
      upstream->manual = manual;
      // GenStage's refill rule, step 1: ask for max_demand on subscribing.
      if (!manual && m.producer != nullptr) {
        upstream->pending += m.options.max_demand;
        m.producer->post(Ask{m.id, m.options.max_demand});
      }
    }
  }

  [[gnu::always_inline]] void handle(Events<In>& m) { receive(m); }
  [[gnu::always_inline]] void handle(HandedOff<In>& m) { receive(m); }

  // A batch from the mailbox (Events) or handed off at once (HandedOff).
  template <class M>
  [[gnu::always_inline]] void receive(M& m) {
    if constexpr (receives) {
      stats_.add_in(m.events.size());
      if constexpr (ProducerConsumerStage<S>) {
        // A producer-consumer takes a batch only while its consumers have demand (GenStage's
        // producer_consumer queue, take_pc_events): otherwise the batch waits, and so does the
        // upstream refill.
        if (downstream_demand_ == 0 || !waiting_.empty()) {
          waiting_.push_back(owned(m));
          return;
        }
      }
      consume(m);
    }
  }

  // Handles a batch in chunks of at most max_demand - min_demand events, refilling demand after
  // each chunk once it falls to min_demand (GenStage's refill rule, steps 2-4); the chunk size is
  // fixed as the batch is taken, as GenStage splits it. A manual subscription's batch, or one
  // whose subscription has ended, is one chunk, as in GenStage. A callback that cancels the
  // subscription still gets the rest of the batch in the same chunks (and batches already on
  // their way: GenStage's cancel is a message, and what the producer sent before it still
  // arrives). One that stops the stage, or ends its output, gets nothing more, from this batch
  // or any later one. A producer-consumer takes the whole batch even if its consumers' demand
  // runs out on the way, as GenStage checks demand before each batch, not each chunk: what it
  // emits beyond that demand waits in its buffer.
  template <class M>
  [[gnu::always_inline]] void consume(M& m) {
    std::span<In> events(m.events);
    Upstream* upstream = find_upstream(m.id);
    const std::size_t chunk =
        upstream != nullptr && !upstream->manual ? upstream->options.max_demand - upstream->min_demand : events.size();
    std::size_t offset = 0;
    while (offset < events.size() && !stopped_ && !stop_requested_ && !output_done_) {
      // A callback may have changed the subscriptions since the last chunk.
      if (offset > 0) upstream = find_upstream(m.id);
      const std::size_t count = std::min(chunk, events.size() - offset);
      const std::size_t refill = upstream ? account_received(*upstream, count) : 0;
      handling_from_ = m.id;
      deliver_chunk(events.subspan(offset, count));
      offset += count;
      if (refill > 0) {
        if (Upstream* still = find_upstream(m.id)) {
          // A batch handed off at once came from a producer mid-message beneath this stage.
          if constexpr (std::is_same_v<M, HandedOff<In>>) {
            still->producer->ask_beneath(m.id, refill);
          } else {
            still->producer->post(Ask{m.id, refill});
          }
        }
      }
    }
    // The pool is the producer's, alive while this stage's subscription to it holds it. A
    // batch handed off at once is the producer's vector, emptied once the hand-off returns
    // (post_events).
    if constexpr (std::is_same_v<M, Events<In>>) {
      if (m.pool != nullptr && find_upstream(m.id) != nullptr) m.pool->release(std::move(m.events));
    }
  }

  // A batch that must outlive the message: one handed off at once leaves the producer's vector.
  static Events<In>&& owned(Events<In>& m) noexcept { return std::move(m); }
  static Events<In> owned(HandedOff<In>& m) { return Events<In>{m.id, std::exchange(m.events, {}), m.pool}; }

  // Returns how many events to ask for once the chunk has been handled.
  static std::size_t account_received(Upstream& upstream, std::size_t count) {
    upstream.pending -= std::min(upstream.pending, count);
    if (upstream.manual || upstream.cancelling || upstream.pending > upstream.min_demand) return 0;
    const std::size_t refill = upstream.options.max_demand - upstream.pending;
    upstream.pending = upstream.options.max_demand;
    return refill;
  }

  [[gnu::always_inline]] void deliver_chunk(std::span<In> chunk) {
    if constexpr (ProducerConsumerStage<S>) {
      emitting([&](Emitter<Out>& out) { stage_.handle_events(chunk, out); });
    } else if constexpr (ConsumerStage<S>) {
      stage_.handle_events(chunk);
    }
  }

  // What waits, in order: batches while downstream demand lasts (GenStage's take_pc_events), and
  // the end of a subscription as soon as no batch waits ahead of it. GenStage waits for demand
  // for that too; here a producer-consumer learns that its producer went, and completes, even if
  // its consumers never ask again.
  void take_waiting() {
    while (!waiting_.empty() && !stopped_) {
      if (auto* batch = std::get_if<Events<In>>(&waiting_.front())) {
        if (downstream_demand_ == 0) return;
        Events<In> taken = std::move(*batch);
        waiting_.pop_front();
        consume(taken);
      } else {
        const EndedUpstream ended = std::move(std::get<EndedUpstream>(waiting_.front()));
        waiting_.pop_front();
        end_subscription(ended.upstream, ended.undelivered, ended.reason);
      }
    }
  }

  void handle(Down& m) {
    if constexpr (receives) {
      auto upstream = std::find_if(upstream_.begin(), upstream_.end(), [&](auto& u) { return u.id == m.id; });
      if (upstream == upstream_.end()) return;
      Upstream gone = std::move(*upstream);
      upstream_.erase(upstream);
      // Batches waiting for downstream demand have arrived: only the rest never will.
      std::size_t waiting = 0;
      for (const auto& entry : waiting_)
        if (const auto* batch = std::get_if<Events<In>>(&entry); batch != nullptr && batch->id == gone.id)
          waiting += batch->events.size();
      const std::size_t undelivered = gone.pending - std::min(gone.pending, waiting);
      if constexpr (ProducerConsumerStage<S>) {
        // GenStage's schedule_cancel: the batches that came before the producer went are handled
        // first, and then its handle_cancel and cancel mode.
        if (!waiting_.empty()) {
          waiting_.push_back(EndedUpstream{std::move(gone), undelivered, m.reason});
          return;
        }
      }
      end_subscription(gone, undelivered, m.reason);
    }
  }

  // A subscription whose producer went: the stage hears why, and its cancel mode says whether it
  // stops.
  void end_subscription(const Upstream& gone, std::size_t undelivered, const ExitReason& reason) {
    const SubscriptionInfo info{gone.id, PeerRole::producer, peer_name(gone.producer.get()), gone.options, undelivered};
    stage_.handle_cancel(info, reason);
    switch (gone.options.cancel) {
      case CancelMode::permanent:
        if (reason.kind == ExitReason::Kind::normal) {
          ++completed_upstream_;
        } else {
          terminate(reason);
        }
        break;
      case CancelMode::transient:
        if (reason.is_abnormal()) terminate(reason);
        break;
      case CancelMode::temporary:
        break;
    }
  }

  // --- producer side -------------------------------------------------------------------------

  void handle(Subscribe& m) {
    if constexpr (emits) {
      auto* inlet = dynamic_cast<Inlet<Out>*>(m.consumer.get());
      if (inlet == nullptr) {
        m.consumer->post(Down{m.id, refusal(*m.consumer, "the event types do not match")});
        return;
      }
      const std::string refused = dispatcher_->subscribe(ConsumerSlot<Out>{m.id, m.consumer, inlet}, m.options);
      if (!refused.empty()) {
        m.consumer->post(Down{m.id, refusal(*m.consumer, refused)});
        return;
      }
      stage_.handle_subscribe(SubscriptionInfo{m.id, PeerRole::consumer, m.consumer->name(), m.options});
    }
  }

  // The consumer's subscription failed, not this producer: the reason names the consumer, which
  // stops with it under a permanent or transient subscription.
  ExitReason refusal(const ActorCore& consumer, const std::string& why) const {
    return ExitReason::error(consumer.name(), "its subscription to '" + name_ + "' was refused: " + why);
  }

  [[gnu::always_inline]] void handle(Ask& m) {
    if constexpr (emits) {
      const std::size_t forwarded = dispatcher_->ask(m.id, m.count);
      if (dispatcher_->has_tally()) [[unlikely]] count_tally(0);
      produce(forwarded);
    }
  }

  // Serves demand the dispatcher forwarded: from the buffer first, then by the stage.
  [[gnu::always_inline]] void produce(std::size_t forwarded) {
    // The usual case, an empty buffer, skips the call.
    const std::size_t demand = buffer_.empty() ? forwarded : serve_from_buffer(forwarded);
    if (demand == 0 || output_done_) return;
    if constexpr (ProducerStage<S>) {
      if (accumulating_) {
        accumulated_.push_back(demand);
        return;
      }
      demand_of_producer(demand);
    } else {
      downstream_demand_ += demand;
      if (!waiting_.empty()) take_waiting();
      // A stage that keeps the base's handle_demand (which does nothing) is not called.
      if constexpr (overrides_handle_demand) {
        if (!stopped_) emitting([&](Emitter<Out>& out) { stage_.handle_demand(demand, out); });
      }
    }
  }

  void handle(ForwardDemand&) {
    if constexpr (ProducerStage<S>) {
      accumulating_ = false;
      for (std::size_t demand : std::exchange(accumulated_, {})) {
        if (stopped_ || output_done_) break;
        demand_of_producer(demand);
      }
    }
  }

  // The demand events that met none stood for goes to handle_demand again: it is still owed.
  void handle(MakeUp& m) {
    if constexpr (ProducerStage<S>) {
      if (!output_done_) emitting([&](Emitter<Out>& out) { stage_.handle_demand(m.count, out); });
    }
  }

  // Hands demand to a producer's handle_demand; it is owed until emitted (for the stats).
  [[gnu::always_inline]] void demand_of_producer(std::size_t demand) {
    owed_demand_ += demand;
    emitting([&](Emitter<Out>& out) { stage_.handle_demand(demand, out); });
  }

  void handle(Cancel& m) {
    if constexpr (emits) {
      const auto consumers = dispatcher_->consumers();
      auto slot = std::find_if(consumers.begin(), consumers.end(), [&](auto& c) { return c.id == m.id; });
      if (slot == consumers.end()) return;
      const std::size_t forwarded = dispatcher_->cancel(m.id);
      if (dispatcher_->has_tally()) count_tally(0);
      // GenStage's producer_cancel tells the consumer back, after the events sent before: its
      // own handle_cancel and cancel mode run then (a stopped consumer drops the answer).
      slot->actor->post(Down{m.id, m.reason});
      stage_.handle_cancel(SubscriptionInfo{m.id, PeerRole::consumer, slot->actor->name(), {}}, m.reason);
      if (!dispatcher_->has_consumers() && options_.complete_when_unsubscribed && !m.reason.is_abnormal()) {
        terminate(ExitReason::normal());
        return;
      }
      produce(forwarded);
    }
  }

  void handle(Complete&) {
    if constexpr (ProducerStage<S>) output_done_ = drained_ = true;
  }

  // --- any stage -----------------------------------------------------------------------------

  void handle(Stop& m) { terminate(m.reason); }

  // Runs a callback, with an emitter for the stages that emit.
  template <class Callback>
  auto with_emitter_if_any(Callback&& callback) {
    if constexpr (emits) {
      return emitting([&](Emitter<Out>& out) { return callback(out); });
    } else {
      return callback();
    }
  }

  void handle(Info& m) {
    with_emitter_if_any([&](auto&... out) { stage_.handle_info(m.payload, out...); });
  }

  void handle(Cast& m) {
    with_emitter_if_any([&](auto&... out) { stage_.handle_cast(m.message, out...); });
  }

  void handle(Call& m) {
    try {
      m.reply->answer(with_emitter_if_any([&](auto&... out) { return stage_.handle_call(m.request, out...); }));
    } catch (const std::exception& e) {
      // The caller hears why, and the stage fails as a GenServer would.
      m.reply->fail("'" + name_ + "' failed handling the call: " + e.what());
      throw;
    } catch (...) {
      // Anything else thrown fails the call too, rather than leaving the caller to time out.
      m.reply->fail("'" + name_ + "' failed handling the call: unknown exception");
      throw;
    }
  }

  void handle(Monitor& m) { add_monitor(std::move(m.watcher)); }

  void handle(ChildExit&) {}

  void handle_after_stop(Message& message) {
    if (auto* control = std::get_if<Control>(&message)) {
      // GenStage: subscribing to a stage that is gone ends the subscription with :noproc.
      if (auto* subscribe = std::get_if<Subscribe>(control)) {
        subscribe->consumer->post(Down{subscribe->id, ExitReason::noproc(name_)});
      }
      // A subscription this consumer will never take up: a producer the System told lets it go
      // (one told of nothing ignores the cancel).
      auto* subscribe_to = std::get_if<SubscribeTo>(control);
      if (subscribe_to != nullptr && !subscribe_to->tell_producer && subscribe_to->producer != nullptr) {
        subscribe_to->producer->post(Cancel{subscribe_to->id, ExitReason::shutdown()});
      }
      if (auto* call = std::get_if<Call>(control)) call->reply->fail("no such stage '" + name_ + "'");
      if (auto* monitor = std::get_if<Monitor>(control)) {
        monitor->watcher->post(Info{StageDown{name_, ExitReason::noproc(name_)}});
      }
    }
  }

  // --- emitting ------------------------------------------------------------------------------

  // Runs `callback(out)` and then dispatches what it emitted.
  template <class Callback>
  [[gnu::always_inline]] auto emitting(Callback&& callback) {
    if (out_batch_.capacity() == 0) out_batch_ = pool_.acquire();
    Emitter<Out> out(out_batch_, done_requested_);
    if constexpr (std::is_void_v<decltype(callback(out))>) {
      callback(out);
      end_emit();
    } else {
      auto result = callback(out);
      end_emit();
      return result;
    }
  }

  [[gnu::always_inline]] void end_emit() {
    if (!out_batch_.empty()) {
      if (output_done_) [[unlikely]] {
        emitted_after_end();
        return;
      }
      const std::size_t emitted = out_batch_.size();
      const std::size_t sent = dispatch(out_batch_);
      if constexpr (ProducerConsumerStage<S>) downstream_demand_ -= std::min(downstream_demand_, sent);
      if constexpr (ProducerStage<S>) {
        owed_demand_ -= std::min(owed_demand_, sent);
        // A producer-consumer makes up for such events as it goes, since its consumers' demand
        // stays; a producer is asked again, in a message of its own so that it yields between,
        // for no more than it still owes (it may have emitted beyond demand).
        const std::size_t met_none = std::min(emitted - out_batch_.size() - sent, owed_demand_);
        if (met_none > 0) post(MakeUp{met_none});
      }
      if (!out_batch_.empty()) buffer_events(out_batch_);
    }
    if (done_requested_ && !output_done_) {
      output_done_ = true;
      if constexpr (ProducerConsumerStage<S>) {
        // A producer-consumer that is done takes no more input.
        for (auto& upstream : upstream_)
          if (upstream.producer != nullptr) upstream.producer->post(Cancel{upstream.id, ExitReason::normal()});
        upstream_.clear();
        waiting_.clear();
      }
    }
  }

  // Events emitted once the output has ended. A drained source was stopped from outside, and may
  // not know it (a producer emitting from handle_info): what it emits is counted as discarded,
  // as a drain sends nothing new. Otherwise the stage itself said no more events come (done(),
  // or a producer-consumer whose input ended with no work held): that is a bug in the stage,
  // which fails, naming itself (handle_guarded), rather than send what its consumers no longer
  // expect.
  void emitted_after_end() {
    const std::size_t count = out_batch_.size();
    out_batch_.clear();
    if (drained_ && !done_requested_) {
      count_discarded(count);
      return;
    }
    throw std::logic_error("emitted " + std::to_string(count) + (count == 1 ? " event" : " events") +
                           (done_requested_ ? " after done()" : " after its input ended and holds_work() said it held none"));
  }

  [[gnu::always_inline]] std::size_t dispatch(Batch<Out>& batch) {
    const std::size_t sent = dispatcher_->dispatch(batch, pool_);
    if (dispatcher_->has_tally()) [[unlikely]] {
      count_tally(sent);
    } else {
      stats_.add_out(sent);
    }
    // A broadcast consumer's selector rejected events: GenStage credits them back by asking
    // itself on that consumer's behalf.
    if (dispatcher_->has_credits())
      for (const auto& [id, count] : dispatcher_->take_credits()) post(Ask{id, count});
    return sent;
  }

  // Events out are those delivered: `sent` met demand, but some of them may wait in the
  // dispatcher, which may also have delivered others, or dropped some.
  void count_tally(std::size_t sent) {
    const auto tally = dispatcher_->take_tally();
    stats_.add_out(sent - tally.held + tally.delivered);
    if (tally.discarded > 0) count_discarded(tally.discarded);
  }

  void buffer_events(Batch<Out>& events) {
    const std::size_t discarded = buffer_.push(events);
    stats_.set_buffered(buffer_.size());
    if (discarded > 0) count_discarded(discarded);
  }

  void count_discarded(std::size_t discarded) {
    stats_.add_discarded(discarded);
    if (options_.on_discard) options_.on_discard(discarded);
  }

  // Serves demand from the buffer first (GenStage's take_from_buffer); returns what is left.
  // Only events that met demand count: those a partition hash drops leave the buffer without
  // meeting any, so the buffer is served until the demand is met or it runs dry.
  std::size_t serve_from_buffer(std::size_t demand) {
    while (demand > 0 && !buffer_.empty()) {
      Batch<Out> batch = pool_.acquire();
      buffer_.take(std::min(demand, buffer_.size()), batch);
      demand -= std::min(demand, dispatch(batch));
      // Demand just grew by at least what was taken, so every taken event normally found a
      // consumer; whatever did not keeps its place at the head of the buffer.
      if (!batch.empty()) {
        buffer_.push_front(batch);
        break;
      }
      pool_.release(std::move(batch));
    }
    stats_.set_buffered(buffer_.size());
    return demand;
  }

  // --- completion ----------------------------------------------------------------------------

  // After each message: has the input run dry, and has everything owed been delivered?
  void settle() {
    if constexpr (receives) {
      if (upstream_.empty() && completed_upstream_ > 0 && waiting_.empty()) {
        if constexpr (ConsumerStage<S>) {
          if (!stage_.holds_work()) terminate(ExitReason::normal());
          return;
        } else {
          if (!input_ended_) {
            input_ended_ = true;
            emitting([&](Emitter<Out>& out) { stage_.handle_end_of_input(out); });
          }
          if (!stage_.holds_work()) output_done_ = true;
        }
      }
    }
    if constexpr (emits) {
      if (output_done_ && buffer_.empty() && !dispatcher_->holds_events()) {
        dispatcher_->drop_unclaimed();
        if (dispatcher_->has_tally()) count_tally(0);
        terminate(ExitReason::normal());
      }
    }
  }

  void terminate(ExitReason reason) {
    if (stopped_) return;
    stopped_ = true;
    try {
      stage_.terminate(reason);
    } catch (const std::exception& e) {
      if (!reason.is_abnormal()) reason = ExitReason::error(name_, std::string("in terminate: ") + e.what());
    } catch (...) {
      // Nothing may escape: the stage must still tell its peers, and a stage handed a batch at
      // once would otherwise throw into its producer's slice.
      if (!reason.is_abnormal()) reason = ExitReason::error(name_, "in terminate: unknown exception");
    }
    if constexpr (emits) {
      // Each consumer hears of it, and is forgotten: a stopped stage holds no handle to a peer.
      for (const auto& consumer : dispatcher_->consumers()) {
        consumer.actor->post(Down{consumer.id, reason});
        dispatcher_->cancel(consumer.id);
      }
      buffer_.clear();
      out_batch_ = Batch<Out>();
    }
    if constexpr (receives) {
      for (const auto& upstream : upstream_)
        if (upstream.producer != nullptr) upstream.producer->post(Cancel{upstream.id, reason});
      upstream_.clear();
      waiting_.clear();
    }
    notify_stopped(reason);
  }

  // --- StageContext --------------------------------------------------------------------------

  std::string_view stage_name() const noexcept override { return name_; }

  void ask(SubscriptionId id, std::size_t count) override {
    Upstream* upstream = find_upstream(id);
    if (upstream == nullptr) return;
    // Counted even on a subscription to nobody: its noproc then gives the ask back as
    // undelivered, for the stage to ask elsewhere.
    upstream->pending += count;
    if (upstream->producer != nullptr) upstream->producer->post(Ask{id, count});
  }

  SubscriptionId current_subscription() const noexcept override { return handling_from_; }

  // GenStage's cancel is a round trip: the producer forgets the consumer and answers, after the
  // events it sent before, which still arrive and are handled (with no refill). The answer ends
  // the subscription as a producer's exit would (end_subscription): handle_cancel hears the
  // reason, and the cancel mode applies, so leaving a permanent subscription normally counts as
  // its completion (a `take` stage ends this way) and leaving it with an error stops the stage.
  // A subscription to a name nobody held ends with the noproc already on its way.
  void cancel(SubscriptionId id, ExitReason reason) override {
    Upstream* upstream = find_upstream(id);
    if (upstream == nullptr || upstream->cancelling) return;
    upstream->cancelling = true;
    if (upstream->producer != nullptr) upstream->producer->post(Cancel{id, std::move(reason)});
  }

  std::uint64_t send_after(std::chrono::nanoseconds delay, std::any message) override {
    auto shared = std::make_shared<std::any>(std::move(message));
    return host_.timers().schedule_after(delay, [self = ActorRef(this), shared] { self->post(Info{std::move(*shared)}); });
  }

  bool cancel_timer(std::uint64_t timer) override { return host_.timers().cancel(timer); }

  void stop(ExitReason reason) override { stop_requested_ = std::move(reason); }

  void run_task(std::function<std::any()> task, TaskKind kind) override {
    auto run = [self = ActorRef(this), task = std::move(task)] {
      std::any result;
      try {
        result = task();
      } catch (...) {
        result = std::current_exception();
      }
      self->post(Info{std::move(result)});
    };
    if (kind == TaskKind::blocking) {
      scheduler_.run_blocking(std::move(run));
    } else {
      scheduler_.run_task(std::move(run));
    }
  }

  static std::string_view peer_name(const ActorCore* peer) noexcept {
    return peer != nullptr ? std::string_view(peer->name()) : std::string_view();
  }

  Upstream* find_upstream(SubscriptionId id) {
    for (auto& upstream : upstream_)
      if (upstream.id == id) return &upstream;
    return nullptr;
  }

  Mailbox<Message> mailbox_;
  std::vector<Ask> asks_beneath_;  // the running turn's alone
  StageOptions options_;
  bool stopped_ = false;
  std::optional<ExitReason> stop_requested_;  // by the stage itself, through StageContext::stop

  // Consumer side.
  std::vector<Upstream> upstream_;
  std::size_t completed_upstream_ = 0;
  SubscriptionId handling_from_ = 0;  // the subscription of the chunk handle_events has
  // Producer-consumers: what waits for downstream demand, in arrival order (GenStage's
  // producer_consumer queue): batches, and the ends of subscriptions whose producers went after
  // sending them.
  struct EndedUpstream {
    Upstream upstream;
    std::size_t undelivered;
    ExitReason reason;
  };
  using Waiting = std::variant<Events<In>, EndedUpstream>;
  std::deque<Waiting> waiting_;
  std::size_t downstream_demand_ = 0;       // producer-consumers: demand not yet met
  bool input_ended_ = false;                // producer-consumers: handle_end_of_input was called
  std::size_t owed_demand_ = 0;             // producers: demand handed to handle_demand, not yet met

  // Producer side.
  std::unique_ptr<Dispatcher<Out>> dispatcher_;
  EventBuffer<Out> buffer_;
  BatchPool<Out> pool_;
  Batch<Out> out_batch_;
  bool done_requested_ = false;  // set through Emitter::done()
  bool output_done_ = false;     // no more events will be emitted
  bool drained_ = false;         // output_done_ by System::drain(), not by the stage
  bool accumulating_;            // GenStage's demand: :accumulate
  std::vector<std::size_t> accumulated_;

  S stage_;
};

}  // namespace sluice::detail
