// The demand protocol, exactly GenStage's. Each case names the rule it pins down; all run on
// the deterministic ManualScheduler, one message per step.
#include "support.hpp"

#include <sluice/stages/number_producer.hpp>

#include <doctest/doctest.h>

#include <random>

using namespace sluice;
using sluice::stages::NumberProducer;
using sluice::test::Batch;
using sluice::test::iota_batch;
using sluice::test::RecordingConsumer;

namespace {

// Runs NumberProducer(0..last) into a recording consumer with the given options; returns the
// batches and the number of slices that ran.
std::pair<std::vector<Batch>, std::size_t> run_numbers(SubscribeOptions options, std::int64_t last) {
  ManualScheduler scheduler;
  System system(scheduler);
  auto producer = system.spawn<NumberProducer>("numbers", 0, last);
  auto consumer = system.spawn<RecordingConsumer<>>("consumer");
  system.subscribe(consumer, producer, options);
  const std::size_t slices = scheduler.run_until_idle();
  system.wait();
  return {consumer->batches, slices};
}

// The first `take` batches. The refill rule is the same whether batches are queued or handed
// off at once: both are run, and must agree.
std::vector<Batch> batches_for(SubscribeOptions options, std::int64_t last, std::size_t take) {
  options.hand_off = HandOff::queued;
  auto batches = run_numbers(options, last).first;
  options.hand_off = HandOff::at_once;
  CHECK(run_numbers(options, last).first == batches);
  if (batches.size() > take) batches.resize(take);
  return batches;
}

// Logs each handle_demand and handle_info, and emits 0, 1, 2 on demand.
struct LoggingProducer final : Producer<std::int64_t> {
  void handle_demand(std::size_t demand, Emitter<std::int64_t>& out) override {
    log.push_back("demand " + std::to_string(demand));
    for (std::size_t i = 0; i < demand && next < 3; ++i) out.emit(next++);
  }
  void handle_info(std::any&, Emitter<std::int64_t>&) override { log.push_back("info"); }
  std::vector<std::string> log;
  std::int64_t next = 0;
};

// Sends its producer an info message from handle_info, and from handle_events if `on_events`.
struct InformsProducer final : Consumer<std::int64_t> {
  void handle_events(std::span<std::int64_t>) override {
    if (on_events) inform();
  }
  void handle_info(std::any&) override { inform(); }
  void inform() { system->send_info(*producer, 0); }
  bool on_events = true;
  System* system = nullptr;
  detail::ActorCore* producer = nullptr;
};

// A LoggingProducer and an InformsProducer subscribed to it at max_demand 1, handed off at once.
std::pair<StageRef<LoggingProducer>, StageRef<InformsProducer>> informing_pair(System& system, bool informs_on_events) {
  auto producer = system.spawn<LoggingProducer>("producer");
  auto consumer = system.spawn<InformsProducer>("consumer");
  consumer->on_events = informs_on_events;
  consumer->system = &system;
  consumer->producer = &producer.core();
  system.subscribe(consumer, producer, {.max_demand = 1, .min_demand = 0, .hand_off = HandOff::at_once});
  return {producer, consumer};
}

}  // namespace

TEST_CASE("subscription options: max_demand defaults to 1000 and min_demand to max_demand / 2") {
  SubscribeOptions options;
  CHECK(options.max_demand == 1000);
  CHECK(options.effective_min_demand() == 500);
  options.max_demand = 7;
  CHECK(options.effective_min_demand() == 3);
}

TEST_CASE("subscription options: out-of-range values name the option, its value and the allowed range") {
  SubscribeOptions zero_max;
  zero_max.max_demand = 0;
  CHECK_THROWS_WITH_AS(zero_max.validate(), "max_demand must be at least 1, got 0", std::invalid_argument);

  SubscribeOptions min_too_big;
  min_too_big.max_demand = 100;
  min_too_big.min_demand = 100;
  CHECK_THROWS_WITH_AS(min_too_big.validate(), "min_demand must lie in [0, 99] (max_demand - 1), got 100",
                       std::invalid_argument);

  ManualScheduler scheduler;
  System system(scheduler);
  auto producer = system.spawn<NumberProducer>("numbers", 0, 10);
  auto consumer = system.spawn<RecordingConsumer<>>("consumer");
  CHECK_THROWS_AS(system.subscribe(consumer, producer, min_too_big), std::invalid_argument);
}

TEST_CASE("refill rule: defaults give batches [0..499], [500..999]") {
  auto batches = batches_for({}, 2999, 4);
  REQUIRE(batches.size() == 4);
  CHECK(batches[0] == iota_batch(0, 499));
  CHECK(batches[1] == iota_batch(500, 999));
  CHECK(batches[2] == iota_batch(1000, 1499));
  CHECK(batches[3] == iota_batch(1500, 1999));
}

TEST_CASE("refill rule: max 100 / min 80 gives batches of 20") {
  auto batches = batches_for({.max_demand = 100, .min_demand = 80}, 999, 6);
  REQUIRE(batches.size() == 6);
  for (std::int64_t i = 0; i < 6; ++i) CHECK(batches[static_cast<std::size_t>(i)] == iota_batch(20 * i, 20 * i + 19));
}

TEST_CASE("refill rule: max 100 / min 20 gives [0..79], [80..99], [100..179], [180..259]") {
  auto batches = batches_for({.max_demand = 100, .min_demand = 20}, 999, 4);
  REQUIRE(batches.size() == 4);
  CHECK(batches[0] == iota_batch(0, 79));
  CHECK(batches[1] == iota_batch(80, 99));
  CHECK(batches[2] == iota_batch(100, 179));
  CHECK(batches[3] == iota_batch(180, 259));
}

TEST_CASE("refill rule: max 1 / min 0 gives one event per batch") {
  auto batches = batches_for({.max_demand = 1, .min_demand = 0}, 99, 100);
  REQUIRE(batches.size() == 100);
  for (std::int64_t i = 0; i < 100; ++i) CHECK(batches[static_cast<std::size_t>(i)] == Batch{i});
}

TEST_CASE("refill rule: a finite producer's events all arrive, in order, and completion ends the consumer") {
  auto batches = batches_for({.max_demand = 7, .min_demand = 2}, 1000, 100000);
  Batch all;
  for (auto& batch : batches) all.insert(all.end(), batch.begin(), batch.end());
  CHECK(all == iota_batch(0, 1000));
}

TEST_CASE("refill rule: max 1000 / min 750 fed 3 messages of 100 asks 1000, then nothing, nothing, then 300") {
  ManualScheduler scheduler;
  System system(scheduler);
  auto producer = system.spawn<test::QueueProducer<>>("queue");
  auto consumer = system.spawn<RecordingConsumer<>>("consumer");
  system.subscribe(consumer, producer, {.max_demand = 1000, .min_demand = 750});
  scheduler.run_until_idle();
  CHECK(producer->demands == std::vector<std::size_t>{1000});

  for (int message = 0; message < 3; ++message) {
    system.send_info(producer, iota_batch(100 * message, 100 * message + 99));
    scheduler.run_until_idle();
    CHECK(consumer->batches.size() == static_cast<std::size_t>(message + 1));
    if (message < 2) CHECK(producer->demands == std::vector<std::size_t>{1000});
  }
  CHECK(producer->demands == std::vector<std::size_t>{1000, 300});
  system.stop();
}

TEST_CASE("refill rule: the ask happens after handle_events returns") {
  // A consumer that sees, inside handle_events, how much its producer had been asked for.
  struct Probe final : Consumer<std::int64_t> {
    explicit Probe(const std::vector<std::size_t>* demands) : demands_(demands) {}
    void handle_events(std::span<std::int64_t>) override { seen.push_back(demands_->size()); }
    const std::vector<std::size_t>* demands_;
    std::vector<std::size_t> seen;
  };
  ManualScheduler scheduler;
  System system(scheduler);
  auto producer = system.spawn<test::QueueProducer<>>("queue");
  auto consumer = system.spawn<Probe>("probe", &producer->demands);
  system.subscribe(consumer, producer, {.max_demand = 4, .min_demand = 0});
  scheduler.run_until_idle();
  system.send_info(producer, iota_batch(0, 3));
  scheduler.run_until_idle();
  // During handle_events only the initial ask had been made; the refill came after.
  CHECK(consumer->seen == std::vector<std::size_t>{1});
  CHECK(producer->demands == std::vector<std::size_t>{4, 4});
  system.stop();
}

TEST_CASE("manual demand: nothing is asked automatically; ask(50) gives [0..49], ask(50) gives [50..99]") {
  ManualScheduler scheduler;
  System system(scheduler);
  auto producer = system.spawn<NumberProducer>("numbers", 0, 999);
  auto consumer = system.spawn<RecordingConsumer<>>("consumer", DemandMode::manual);
  system.subscribe(consumer, producer);
  scheduler.run_until_idle();
  CHECK(consumer->batches.empty());
  system.send_info(consumer, std::size_t{50});
  scheduler.run_until_idle();
  REQUIRE(consumer->batches.size() == 1);
  CHECK(consumer->batches[0] == iota_batch(0, 49));
  system.send_info(consumer, std::size_t{50});
  scheduler.run_until_idle();
  REQUIRE(consumer->batches.size() == 2);
  CHECK(consumer->batches[1] == iota_batch(50, 99));
  system.stop();
}

namespace {

// Numbers 0..59 through an identity producer-consumer to a recording consumer, on a scheduler
// stepped by hand; run_until_blocked() holds the consumer back once it has its first batch.
struct ThroughMiddle {
  ManualScheduler scheduler;
  System system{scheduler};
  StageRef<NumberProducer> producer = system.spawn<NumberProducer>("numbers", 0, 59);
  StageRef<test::Identity> middle = system.spawn<test::Identity>("identity");
  StageRef<RecordingConsumer<>> consumer = system.spawn<RecordingConsumer<>>("consumer");

  void run_until_blocked() {
    scheduler.run_until_idle_except(
        [this](const detail::ActorCore& stage) { return &stage == &consumer.core() && !consumer->batches.empty(); });
  }
};

}  // namespace

TEST_CASE("a producer-consumer works only while its downstream has demand") {
  // max 10 / min 8 upstream of a consumer of max 10 / min 5 that blocks after its first batch:
  // the producer-consumer handles the 10 events the consumer asked for, and nothing more. The
  // batches it cannot work on wait, whether they came through its mailbox or were handed to it
  // at once (then they leave the producer's vector to wait).
  for (const HandOff hand_off : {HandOff::queued, HandOff::at_once}) {
    CAPTURE(static_cast<int>(hand_off));
    ThroughMiddle chain;
    chain.system.subscribe(chain.middle, chain.producer, {.max_demand = 10, .min_demand = 8, .hand_off = hand_off});
    chain.system.subscribe(chain.consumer, chain.middle, {.max_demand = 10, .min_demand = 5});
    chain.run_until_blocked();
    CHECK(chain.consumer->batches.size() == 1);
    CHECK(chain.middle->handled == 10);
    CHECK(chain.middle.stats().events_in <= 20);  // its own upstream demand stays bounded by its max_demand
    chain.run_until_blocked();
    CHECK(chain.middle->handled == 10);
    // Let go, the consumer gets every event in order: none of those that waited was lost.
    chain.scheduler.run_until_idle();
    CHECK(chain.consumer->events() == test::iota_batch(0, 59));
  }
}

namespace {

// Records the demand its consumers make: the runtime skips the call only for a stage that keeps
// the base's handle_demand.
class DemandRecorder final : public ProducerConsumer<std::int64_t, std::int64_t> {
 public:
  void handle_events(std::span<std::int64_t>, Emitter<std::int64_t>&) override {}
  void handle_demand(std::size_t demand, Emitter<std::int64_t>&) override { demands.push_back(demand); }
  std::vector<std::size_t> demands;
};

}  // namespace

TEST_CASE("a producer-consumer's own handle_demand hears each demand of its consumers") {
  ManualScheduler scheduler;
  System system(scheduler);
  auto middle = system.spawn<DemandRecorder>("middle");
  auto consumer = system.spawn<RecordingConsumer<>>("consumer", DemandMode::manual);
  system.subscribe(consumer, middle, {.max_demand = 10, .min_demand = 5});
  scheduler.run_until_idle();
  system.send_info(consumer, std::size_t{3});
  system.send_info(consumer, std::size_t{4});
  scheduler.run_until_idle();
  CHECK(middle->demands == std::vector<std::size_t>{3, 4});
}

TEST_CASE("a producer-consumer checks its consumers' demand before each batch, not each chunk, and buffers what a batch makes beyond it") {
  // GenStage's take_pc_events takes a batch from a producer-consumer's queue only while its
  // consumers have demand, and then the whole batch, chunk after chunk; what it emits beyond
  // that demand waits in its buffer. A batch of 30 in chunks of 5, for a consumer of max 5 /
  // min 0 that blocks after its first batch (having asked for 5 and 5 more): the middle stage
  // handles all 30, sends 10 and buffers 20, and the 30 events its chunks' refills brought wait
  // unhandled. The same when the batch is handed to it at once.
  for (const HandOff hand_off : {HandOff::queued, HandOff::at_once}) {
    CAPTURE(static_cast<int>(hand_off));
    ThroughMiddle chain;
    // The consumer's demand is there first, so that the middle stage is idle when the batch
    // comes, and takes it at once if it may.
    chain.system.subscribe(chain.consumer, chain.middle, {.max_demand = 5, .min_demand = 0});
    chain.scheduler.run_until_idle();
    chain.system.subscribe(chain.middle, chain.producer, {.max_demand = 30, .min_demand = 25, .hand_off = hand_off});
    chain.run_until_blocked();
    CHECK(chain.middle->handled == 30);
    CHECK(chain.middle.stats().buffered == 20);
    CHECK(chain.middle.stats().events_in == 60);
    chain.scheduler.run_until_idle();
    CHECK(chain.consumer->events() == test::iota_batch(0, 59));
  }
}

TEST_CASE("a manual subscription's batch reaches handle_events whole, not in chunks") {
  // GenStage's consumer_receive cuts only automatic subscriptions' batches into chunks of
  // max_demand - min_demand; a manual one's batch is handed whole ({events, 0}). A consumer of
  // max 10 that asks for 50 gets one call with the 50.
  ManualScheduler scheduler;
  System system(scheduler);
  auto producer = system.spawn<NumberProducer>("numbers", 0);
  auto consumer = system.spawn<RecordingConsumer<>>("consumer", DemandMode::manual);
  system.subscribe(consumer, producer, {.max_demand = 10});
  scheduler.run_until_idle();
  system.send_info(consumer, std::size_t{50});
  scheduler.run_until_idle();
  CHECK(consumer->batches == std::vector<Batch>{iota_batch(0, 49)});
  system.stop();
}

namespace {

// Passes events on until it meets `last`, which it drops, and then ends its output
// (Emitter::done), as a stage whose event failed with on_error: stop does.
class DoneAt final : public ProducerConsumer<std::int64_t, std::int64_t> {
 public:
  explicit DoneAt(std::int64_t last) : last_(last) {}
  void handle_events(std::span<std::int64_t> events, Emitter<std::int64_t>& out) override {
    ++calls;
    for (std::int64_t x : events) {
      if (x == last_) {
        out.done();
        return;
      }
      out.emit(x);
    }
  }
  std::size_t calls = 0;

 private:
  std::int64_t last_;
};

// Records what it receives, and leaves its first subscription when it sees `last` (it stays
// subscribed to any other).
class CancelAt final : public Consumer<std::int64_t> {
 public:
  explicit CancelAt(std::int64_t last) : last_(last) {}
  DemandMode handle_subscribe(const SubscriptionInfo& info) override {
    subscriptions.push_back(info.id);
    return DemandMode::automatic;
  }
  void handle_events(std::span<std::int64_t> events) override {
    for (std::int64_t x : events) {
      received.push_back(x);
      if (x == last_) context().cancel(subscriptions.front());
    }
  }
  Batch received;
  std::vector<SubscriptionId> subscriptions;

 private:
  std::int64_t last_;
};

}  // namespace

TEST_CASE("a producer-consumer that ends its output mid-batch is given nothing more") {
  // GenStage cuts a batch into chunks on arrival, and a stage that stops in one chunk handles
  // no later chunk: sluice's done() ends the output the same way. At max 10 / min 5, batch
  // [0..9] is chunks [0..4] and [5..9]; done at 3 leaves [5..9] unhandled.
  ManualScheduler scheduler;
  System system(scheduler);
  auto producer = system.spawn<NumberProducer>("numbers", 0);
  auto middle = system.spawn<DoneAt>("done_at", 3);
  auto consumer = system.spawn<RecordingConsumer<>>("consumer");
  system.subscribe(middle, producer, {.max_demand = 10, .min_demand = 5});
  system.subscribe(consumer, middle);
  scheduler.run_until_idle();
  CHECK(consumer->batches == std::vector<Batch>{iota_batch(0, 2)});
  CHECK(middle->calls == 1);
  system.stop();
}

TEST_CASE("a consumer that cancels still gets the rest of the batch, and what was on its way, as in GenStage") {
  // GenStage's cancel is a message to the producer: the events it sent before they reach it
  // still arrive. At max 10 / min 5 the refill after chunk [0..4] brings [10..14], sent before
  // the producer sees the cancel made at 7; another subscription keeps the consumer running.
  ManualScheduler scheduler;
  System system(scheduler);
  auto numbers = system.spawn<NumberProducer>("numbers", 0);
  auto idle = system.spawn<test::QueueProducer<>>("idle");
  auto consumer = system.spawn<CancelAt>("consumer", 7);
  system.subscribe(consumer, numbers, {.max_demand = 10, .min_demand = 5});
  system.subscribe(consumer, idle);
  scheduler.run_until_idle();
  CHECK(consumer->received == iota_batch(0, 14));
  CHECK(numbers.stats().events_out == 15);  // and nothing after the cancel
  system.stop();
}

namespace {

// Passes events on, and records its chunks and what handle_cancel is told was never delivered.
class RecordsUndelivered final : public ProducerConsumer<std::int64_t, std::int64_t> {
 public:
  void handle_events(std::span<std::int64_t> events, Emitter<std::int64_t>& out) override {
    chunks.push_back(events.size());
    out.emit_all(events);
  }
  void handle_cancel(const SubscriptionInfo& info, const ExitReason&) override { undelivered.push_back(info.undelivered); }
  std::vector<std::size_t> chunks;
  std::vector<std::size_t> undelivered;
};

}  // namespace

TEST_CASE("a producer-consumer hears that its producer went only after the batches it sent; undelivered counts only what never came") {
  // GenStage's schedule_cancel: a producer-consumer holding batches runs handle_cancel for their
  // producer after them. Asked for 20, the producer sends its 15 events and completes. They wait
  // in the producer-consumer (its consumer has asked for nothing yet), and so does the end of
  // the subscription. Once demand comes the batch is handled whole, as GenStage hands on a batch
  // whose producer has gone (send_pc_events), and then handle_cancel hears that 5 never came.
  ManualScheduler scheduler;
  System system(scheduler);
  auto producer = system.spawn<NumberProducer>("numbers", 0, 14);
  auto middle = system.spawn<RecordsUndelivered>("middle");
  auto consumer = system.spawn<RecordingConsumer<>>("consumer", DemandMode::manual);
  system.subscribe(middle, producer, {.max_demand = 20});
  system.subscribe(consumer, middle);
  scheduler.run_until_idle();
  CHECK(middle->undelivered.empty());
  system.send_info(consumer, std::size_t{15});
  system.wait();
  CHECK(middle->chunks == std::vector<std::size_t>{15});
  CHECK(middle->undelivered == std::vector<std::size_t>{5});
  CHECK(consumer->received() == 15);
}

TEST_CASE("Reactive Streams 1.1: a producer never sends more than the outstanding demand (randomised)") {
  // Manual-demand consumers ask random amounts at random times; the producer emits random
  // amounts, often beyond demand. After every single message, each consumer must have
  // received no more than it asked for (rule 1.1); what it was not sent waits in the buffer
  // (GenStage's buffer_size, 10,000 here, is never reached).
  class RandomProducer final : public Producer<std::int64_t> {
   public:
    explicit RandomProducer(std::uint32_t seed) : random_(seed) {}
    void handle_demand(std::size_t, Emitter<std::int64_t>& out) override { emit_some(out); }
    void handle_info(std::any&, Emitter<std::int64_t>& out) override { emit_some(out); }
    std::int64_t emitted() const { return next_; }

   private:
    void emit_some(Emitter<std::int64_t>& out) {
      for (auto n = std::uniform_int_distribution<int>(0, 40)(random_); n > 0; --n) out.emit(next_++);
    }
    std::mt19937 random_;
    std::int64_t next_ = 0;
  };

  for (std::uint32_t seed = 1; seed <= 20; ++seed) {
    CAPTURE(seed);
    std::mt19937 random(seed);
    ManualScheduler scheduler;
    System system(scheduler);
    auto producer = system.spawn<RandomProducer>("random", seed);
    std::vector<StageRef<RecordingConsumer<>>> consumers;
    std::vector<std::size_t> asked;
    for (int i = 0; i < 3; ++i) {
      consumers.push_back(system.spawn<RecordingConsumer<>>("consumer", DemandMode::manual));
      system.subscribe(consumers.back(), producer);
      asked.push_back(0);
    }
    scheduler.run_until_idle();
    for (int step = 0; step < 400; ++step) {
      const auto action = std::uniform_int_distribution<int>(0, 3)(random);
      if (action < 3) {
        const auto n = static_cast<std::size_t>(std::uniform_int_distribution<int>(0, 30)(random));
        asked[static_cast<std::size_t>(action)] += n;
        system.send_info(consumers[static_cast<std::size_t>(action)], n);
      } else {
        system.send_info(producer, 0);
      }
      const auto slices = std::uniform_int_distribution<int>(0, 6)(random);
      for (int s = 0; s < slices && scheduler.run_once(); ++s) {
        for (std::size_t c = 0; c < consumers.size(); ++c) REQUIRE(consumers[c]->received() <= asked[c]);
      }
    }
    scheduler.run_until_idle();  // every message handled: the stats are settled
    std::size_t delivered = 0;
    for (std::size_t c = 0; c < consumers.size(); ++c) {
      CHECK(consumers[c]->received() <= asked[c]);
      delivered += consumers[c]->received();
    }
    // Nothing is lost: what was not delivered is still buffered.
    const auto stats = producer.stats();
    CHECK(delivered == stats.events_out);
    CHECK(delivered + stats.buffered == static_cast<std::uint64_t>(producer->emitted()));
    CHECK(stats.discarded == 0);
    system.stop();
  }
}

TEST_CASE("HandOff::at_once: an idle, only consumer takes each batch inside its producer's slice, not in one of its own") {
  // 10 events at max_demand 1: queued, each one-event batch costs the consumer a slice of its
  // own; handed off, none does, and its asks are handled in the producer's slice too (they are
  // made beneath it). The batches are the same.
  const SubscribeOptions queued{.max_demand = 1, .min_demand = 0};
  SubscribeOptions at_once = queued;
  at_once.hand_off = HandOff::at_once;
  const auto [queued_batches, queued_slices] = run_numbers(queued, 9);
  const auto [handed_batches, handed_slices] = run_numbers(at_once, 9);
  CHECK(handed_batches == queued_batches);
  REQUIRE(handed_batches.size() == 10);
  CHECK(queued_slices - handed_slices == 10);
}

TEST_CASE("HandOff::at_once: the asks of consumers run at once still yield to the turn's budget, and none is lost") {
  // A producer, an identity producer-consumer and a consumer, all at max_demand 1 and handed
  // off at once: every ask is made beneath the stage it asks, so without the budget the whole
  // stream would run in one slice. ManualScheduler(n) allows n messages a slice (asks count as
  // messages), so 200 events take at least 200 / n slices; every event still arrives, in order.
  for (const std::size_t throughput : {1, 2, 3, 4}) {
    CAPTURE(throughput);
    ManualScheduler scheduler(throughput);
    System system(scheduler);
    auto producer = system.spawn<NumberProducer>("numbers", 0, 199);
    auto identity = system.spawn<test::Identity>("identity");
    auto consumer = system.spawn<RecordingConsumer<>>("consumer");
    const SubscribeOptions at_once{.max_demand = 1, .min_demand = 0, .hand_off = HandOff::at_once};
    system.subscribe(identity, producer, at_once);
    system.subscribe(consumer, identity, at_once);
    const std::size_t slices = scheduler.run_until_idle();
    system.wait();
    CHECK(slices >= 200 / throughput);
    std::vector<Batch> expected;
    for (std::int64_t i = 0; i < 200; ++i) expected.push_back({i});
    CHECK(consumer->batches == expected);
    CHECK(identity->handled == 200);
  }
}

TEST_CASE("HandOff::at_once: an ask comes after what its consumer sent the producer before (as between two processes)") {
  // The consumer, run at once, sends its producer an info message and then, handle_events
  // done, asks again. Erlang keeps the order of messages between two processes: the producer
  // handles the info before the ask's handle_demand, even though the ask is made beneath it.
  ManualScheduler scheduler;
  System system(scheduler);
  const auto [producer, consumer] = informing_pair(system, true);
  scheduler.run_until_idle();
  const std::vector<std::string> expected{"demand 1", "info", "demand 1", "info", "demand 1", "info", "demand 1"};
  CHECK(producer->log == expected);
  system.stop();
}

TEST_CASE("HandOff::at_once: an ask comes after what its consumer sent before, even in the producer's backlog") {
  // The consumer's first ask and then an info it sends from handle_info are both in the
  // producer's backlog when its slice begins. The ask makes the producer emit, the consumer runs
  // at once and asks again: that ask waits for the info, which the consumer sent first.
  ManualScheduler scheduler(defaults::max_throughput);
  System system(scheduler);
  const auto [producer, consumer] = informing_pair(system, false);
  system.send_info(consumer, 0);
  // The consumer's slice alone: it subscribes (asking for 1), then sends its info.
  scheduler.run_until_idle_except([&](const detail::ActorCore& stage) { return &stage == &producer.core(); });
  CHECK(producer->log.empty());
  scheduler.run_until_idle();
  const std::vector<std::string> expected{"demand 1", "info", "demand 1", "demand 1", "demand 1"};
  CHECK(producer->log == expected);
  system.stop();
}
namespace {

// Emits 0, 1, 2 at max_demand 1; before each event after the first it casts the event's number
// to the consumer, or calls the consumer with it. The first event is handed off at once, so the
// producer's slice keeps the consumer's turn when the second demand comes.
struct MessagesThenEmits final : Producer<std::int64_t> {
  void handle_demand(std::size_t, Emitter<std::int64_t>& out) override {
    if (next > 0 && calls) {
      answers.push_back(std::any_cast<std::int64_t>(system->call(*consumer, next)));
    } else if (next > 0) {
      system->cast(*consumer, next);
    }
    out.emit(next++);
    if (next == 3) out.done();
  }
  System* system = nullptr;
  detail::ActorCore* consumer = nullptr;
  bool calls = false;
  std::vector<std::int64_t> answers;
  std::int64_t next = 0;
};

struct LogsEverything final : Consumer<std::int64_t> {
  void handle_events(std::span<std::int64_t> events) override { log.push_back("events " + std::to_string(events[0])); }
  void handle_cast(std::any& message) override { log.push_back("cast " + std::to_string(std::any_cast<std::int64_t>(message))); }
  std::any handle_call(std::any& request) override { return std::any_cast<std::int64_t>(request) * 10; }
  std::vector<std::string> log;
};

// Runs the pair to the end on a ManualScheduler whose slices hold the second demand too; the
// stages outlive the System through their handles.
std::pair<StageRef<MessagesThenEmits>, StageRef<LogsEverything>> run_messaging_pair(bool calls) {
  ManualScheduler scheduler(defaults::max_throughput);
  System system(scheduler);
  auto producer = system.spawn<MessagesThenEmits>("producer");
  auto consumer = system.spawn<LogsEverything>("consumer");
  producer->system = &system;
  producer->consumer = &consumer.core();
  producer->calls = calls;
  system.subscribe(consumer, producer, {.max_demand = 1, .min_demand = 0, .hand_off = HandOff::at_once});
  scheduler.run_until_idle();
  system.wait();
  return {producer, consumer};
}

}  // namespace

TEST_CASE("HandOff::at_once: a consumer whose turn the slice keeps takes what it was sent first, then the batch") {
  // Messages between two processes keep their order: the cast of 1 comes before the event 1,
  // though the producer's slice holds the consumer's turn and could hand the event over at once.
  const auto [producer, consumer] = run_messaging_pair(false);
  const std::vector<std::string> expected{"events 0", "cast 1", "events 1", "cast 2", "events 2"};
  CHECK(consumer->log == expected);
}

TEST_CASE("HandOff::at_once: a call to the consumer whose turn the slice keeps is answered") {
  // The caller's slice keeps the consumer's turn; waiting for the answer, it must give the turn
  // back, or the consumer never runs (OTP: a call to any other process is answered).
  const auto [producer, consumer] = run_messaging_pair(true);
  CHECK(producer->answers == std::vector<std::int64_t>{10, 20});
  const std::vector<std::string> expected{"events 0", "events 1", "events 2"};
  CHECK(consumer->log == expected);
}

TEST_CASE("HandOff::at_once: an async_stream iterated inside the slice gives kept turns back, so its tasks can call them") {
  // On the second demand the producer's slice keeps the consumer's turn, and the producer waits
  // on a stream whose task calls that consumer from a thread of its own. The call is answered
  // only if the wait gave the turn back first.
  struct StreamsOnSecondDemand final : Producer<std::int64_t> {
    void handle_demand(std::size_t, Emitter<std::int64_t>& out) override {
      if (next == 1) {
        auto call_consumer = [this](std::int64_t x) {
          return std::any_cast<std::int64_t>(system->call(*consumer, x, std::chrono::seconds(2)));
        };
        for (auto& result : async_stream(std::vector<std::int64_t>{next}, call_consumer,
                                         {.max_concurrency = 1, .kind = TaskKind::blocking})) {
          answers.push_back(result.ok() ? result.value() : -1);
        }
      }
      out.emit(next++);
      if (next == 3) out.done();
    }
    System* system = nullptr;
    detail::ActorCore* consumer = nullptr;
    std::vector<std::int64_t> answers;
    std::int64_t next = 0;
  };
  System system(2);
  auto producer = system.spawn<StreamsOnSecondDemand>("producer");
  auto consumer = system.spawn<LogsEverything>("consumer");
  producer->system = &system;
  producer->consumer = &consumer.core();
  system.subscribe(consumer, producer, {.max_demand = 1, .min_demand = 0, .hand_off = HandOff::at_once});
  system.wait();
  CHECK(producer->answers == std::vector<std::int64_t>{10});
  const std::vector<std::string> expected{"events 0", "events 1", "events 2"};
  CHECK(consumer->log == expected);
}

TEST_CASE("HandOff::at_once: a consumer that stops while its turn is kept stops for good, and is freed") {
  // The consumer stops itself at its third event, inside the slice that keeps its turn: its
  // mailbox closes then, and it lets go of its hold on itself, so that it is freed once nothing
  // else holds it. A token it holds shows when it is.
  struct StopsAtThree final : Consumer<std::int64_t> {
    explicit StopsAtThree(std::shared_ptr<std::size_t> received) : received_(std::move(received)) {}
    void handle_events(std::span<std::int64_t> events) override {
      *received_ += events.size();
      if (*received_ == 3) context().stop();
    }
    std::shared_ptr<std::size_t> received_;
  };
  auto received = std::make_shared<std::size_t>(0);
  {
    ManualScheduler scheduler(defaults::max_throughput);
    System system(scheduler);
    auto producer = system.spawn<NumberProducer>("numbers");
    system.subscribe(system.spawn<StopsAtThree>("consumer", received), producer,
                     {.max_demand = 1, .min_demand = 0, .hand_off = HandOff::at_once});
    scheduler.run_until_idle();
    system.wait();
    CHECK(system.running() == 0);
  }
  CHECK(*received == 3);
  CHECK(received.use_count() == 1);
}

TEST_CASE("HandOff::at_once: a kept stage that sends to itself gets the batch after the message it is handling") {
  // The stage is fed at once, so the slice keeps its turn, and it consumes its own output at
  // once too. Handling 0 of the batch [0, 10], it emits 1 to itself: 1 is a later message, so it
  // comes after 10 (Erlang's order), not inside the handling of [0, 10].
  struct Feedback final : ProducerConsumer<std::int64_t, std::int64_t> {
    void handle_events(std::span<std::int64_t> events, Emitter<std::int64_t>& out) override {
      for (std::int64_t x : events) {
        log.push_back(x);
        if (x == 0) out.emit(1);
      }
    }
    std::vector<std::int64_t> log;
  };
  ManualScheduler scheduler;
  System system(scheduler);
  auto producer = system.spawn<test::QueueProducer<>>("queue");
  auto feedback = system.spawn<Feedback>("feedback");
  system.subscribe(feedback, producer, {.max_demand = 2, .min_demand = 1, .hand_off = HandOff::at_once});  // chunks of 1
  system.subscribe(feedback, feedback, {.hand_off = HandOff::at_once});
  scheduler.run_until_idle();
  system.send_info(producer, std::vector<std::int64_t>{0, 10});
  scheduler.run_until_idle();
  CHECK(feedback->log == std::vector<std::int64_t>{0, 10, 1});
  system.stop();
}

TEST_CASE("HandOff::at_once is not honoured with several consumers: the producer reaches each without waiting on one") {
  // With two consumers the producer dispatches to both in one go, so neither runs inside its
  // slice: the slices are the same as when queued.
  auto slices_with = [](HandOff hand_off) {
    ManualScheduler scheduler;
    System system(scheduler);
    auto producer = system.spawn<NumberProducer>("numbers", 0, 99);
    auto first = system.spawn<RecordingConsumer<>>("first");
    auto second = system.spawn<RecordingConsumer<>>("second");
    const SubscribeOptions options{.max_demand = 10, .min_demand = 0, .hand_off = hand_off};
    system.subscribe(first, producer, options);
    system.subscribe(second, producer, options);
    const std::size_t slices = scheduler.run_until_idle();
    system.wait();
    CHECK(first->received() + second->received() == 100);
    return slices;
  };
  CHECK(slices_with(HandOff::at_once) == slices_with(HandOff::queued));
}

TEST_CASE("a call to a stage running beneath the caller fails at once with calling_self (OTP's calling_self)") {
  // A consumer handed a batch at once runs inside its producer's slice: a call back to the
  // producer, or to itself, could never be answered, and says so instead of timing out.
  struct CallsUpstream final : Consumer<std::int64_t> {
    CallsUpstream(System* system, detail::ActorCore* producer) : system_(system), producer_(producer) {}
    void handle_events(std::span<std::int64_t>) override {
      for (detail::ActorCore* target : {producer_, self}) {
        try {
          system_->call(*target, 0);
        } catch (const CallError& error) {
          kinds.push_back(error.kind());
          messages.emplace_back(error.what());
        }
      }
    }
    System* system_;
    detail::ActorCore* producer_;
    detail::ActorCore* self = nullptr;
    std::vector<CallError::Kind> kinds;
    std::vector<std::string> messages;
  };
  ManualScheduler scheduler;
  System system(scheduler);
  auto producer = system.spawn<test::CountingProducer>("numbers");
  auto consumer = system.spawn<CallsUpstream>("caller", &system, &producer.core());
  consumer->self = &consumer.core();
  system.subscribe(consumer, producer, {.max_demand = 1, .min_demand = 0, .hand_off = HandOff::at_once});
  while (consumer->kinds.empty() && scheduler.run_once()) {
  }
  REQUIRE(consumer->kinds.size() == 2);
  CHECK(consumer->kinds[0] == CallError::Kind::calling_self);
  CHECK(consumer->kinds[1] == CallError::Kind::calling_self);
  CHECK(consumer->messages[0] == "call to 'numbers' from a stage it is running (on the same thread): it cannot answer");
  system.stop();
}

TEST_CASE("HandOff::at_once: a slice and the consumer it runs at once share one budget of mailbox messages") {
  // ManualScheduler(4): the producer's slice handles its own message (1 of 4), hands the batch
  // off, and the consumer then handles 3 of the 5 messages it sent itself before it yields.
  struct CastsToItself final : Consumer<std::int64_t> {
    void handle_events(std::span<std::int64_t>) override {
      for (int i = 0; i < 5; ++i) system->cast(*self, i);
    }
    void handle_cast(std::any&) override { ++casts; }
    System* system = nullptr;
    detail::ActorCore* self = nullptr;
    int casts = 0;
  };
  ManualScheduler scheduler(4);
  System system(scheduler);
  auto producer = system.spawn<test::QueueProducer<>>("queue");
  auto consumer = system.spawn<CastsToItself>("consumer");
  consumer->system = &system;
  consumer->self = &consumer.core();
  system.subscribe(consumer, producer, {.max_demand = 10, .min_demand = 5, .hand_off = HandOff::at_once});
  scheduler.run_until_idle();
  system.send_info(producer, std::vector<std::int64_t>{7});
  REQUIRE(scheduler.run_once());
  CHECK(consumer->casts == 3);
  CHECK(scheduler.ready() == 1);  // the consumer, queued again for the other 2
  scheduler.run_until_idle();
  CHECK(consumer->casts == 5);
  system.stop();
}
