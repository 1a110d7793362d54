// A producer's buffer for events emitted beyond demand (GenStage's buffer_size/buffer_keep).
#include "support.hpp"

#include <sluice/stages/number_producer.hpp>

#include <doctest/doctest.h>

#include <string>

using namespace sluice;
using Strings = std::vector<std::string>;

namespace {

struct Outcome {
  std::vector<Strings> batches;
  std::uint64_t discarded_stat = 0;
  std::size_t discarded_hook = 0;
};

// Queues a..e and then f, g, h into a producer with buffer_size 5 and no consumer, then
// subscribes a consumer of max 4 / min 0.
Outcome run_buffer_case(BufferKeep keep) {
  ManualScheduler scheduler;
  System system(scheduler);
  Outcome outcome;
  StageOptions options;
  options.name = "queue";
  options.buffer_size = 5;
  options.buffer_keep = keep;
  options.on_discard = [&](std::size_t n) { outcome.discarded_hook += n; };
  auto producer = system.spawn<test::QueueProducer<std::string>>(options);
  system.send_info(producer, Strings{"a", "b", "c", "d", "e"});
  system.send_info(producer, Strings{"f", "g", "h"});
  scheduler.run_until_idle();
  CHECK(producer.stats().buffered == 5);

  auto consumer = system.spawn<test::RecordingConsumer<std::string>>("consumer");
  system.subscribe(consumer, producer, {.max_demand = 4, .min_demand = 0});
  scheduler.run_until_idle();
  outcome.batches = consumer->batches;
  outcome.discarded_stat = producer.stats().discarded;
  system.stop();
  return outcome;
}

}  // namespace

TEST_CASE("buffer_keep first: the incoming excess is dropped; max 4 / min 0 gets [a,b,c,d] then [e]") {
  auto outcome = run_buffer_case(BufferKeep::first);
  REQUIRE(outcome.batches.size() == 2);
  CHECK(outcome.batches[0] == Strings{"a", "b", "c", "d"});
  CHECK(outcome.batches[1] == Strings{"e"});
  CHECK(outcome.discarded_stat == 3);
  CHECK(outcome.discarded_hook == 3);
}

TEST_CASE("buffer_keep last: the oldest events are dropped; max 4 / min 0 gets [d,e,f,g] then [h]") {
  auto outcome = run_buffer_case(BufferKeep::last);
  REQUIRE(outcome.batches.size() == 2);
  CHECK(outcome.batches[0] == Strings{"d", "e", "f", "g"});
  CHECK(outcome.batches[1] == Strings{"h"});
  CHECK(outcome.discarded_stat == 3);
  CHECK(outcome.discarded_hook == 3);
}

namespace {

// Emits `copies` events for each event it takes in: one chunk makes far more than its
// consumers asked for.
class Repeats final : public ProducerConsumer<std::int64_t, std::int64_t> {
 public:
  explicit Repeats(std::size_t copies) : copies_(copies) {}
  void handle_events(std::span<std::int64_t> events, Emitter<std::int64_t>& out) override {
    for (std::int64_t x : events)
      for (std::size_t i = 0; i < copies_; ++i) out.emit(x);
  }

 private:
  std::size_t copies_;
};

}  // namespace

TEST_CASE("buffer_size defaults to 10,000 for a producer, keeping the last, and to no limit for a producer-consumer (GenStage's defaults)") {
  ManualScheduler scheduler;
  System system(scheduler);
  // A producer with no consumer yet keeps the last 10,000 of 10,005 events.
  auto queue = system.spawn<test::QueueProducer<>>("queue");
  system.send_info(queue, test::iota_batch(1, 10'005));
  scheduler.run_until_idle();
  CHECK(queue.stats().buffered == 10'000);
  CHECK(queue.stats().discarded == 5);
  auto late = system.spawn<test::RecordingConsumer<>>("late");
  system.subscribe(late, queue, {.max_demand = 10'000});
  scheduler.run_until_idle();
  REQUIRE_FALSE(late->batches.empty());
  CHECK(late->batches.front().front() == 6);
  // A producer-consumer whose one input event makes 20,000 loses none of them.
  auto producer = system.spawn<stages::NumberProducer>("numbers", 1, 1);
  auto repeats = system.spawn<Repeats>("repeats", 20'000);
  auto consumer = system.spawn<test::RecordingConsumer<>>("consumer");
  system.subscribe(repeats, producer);
  system.subscribe(consumer, repeats);
  scheduler.run_until_idle();
  CHECK(consumer->received() == 20'000);
  CHECK(repeats.stats().discarded == 0);
  system.stop();
}

TEST_CASE("buffered events are served before handle_demand is asked for the rest") {
  ManualScheduler scheduler;
  System system(scheduler);
  auto producer = system.spawn<test::QueueProducer<>>("queue");
  system.send_info(producer, test::iota_batch(1, 3));
  scheduler.run_until_idle();
  auto consumer = system.spawn<test::RecordingConsumer<>>("consumer");
  system.subscribe(consumer, producer, {.max_demand = 10, .min_demand = 0});
  scheduler.run_until_idle();
  REQUIRE(consumer->batches.size() == 1);
  CHECK(consumer->batches[0] == test::iota_batch(1, 3));
  // 10 asked, 3 served from the buffer: handle_demand is asked for the other 7.
  CHECK(producer->demands == std::vector<std::size_t>{7});
  system.stop();
}
