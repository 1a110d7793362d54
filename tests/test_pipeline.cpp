// The pipeline DSL and explicit graph wiring.
#include "support.hpp"

#include <sluice/stages/number_processor.hpp>
#include <sluice/stages/number_producer.hpp>
#include <sluice/stages/sum_consumer.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <ranges>
#include <stdexcept>
#include <string>
#include <thread>

using namespace sluice;
using namespace sluice::stages;

TEST_CASE("DSL: source | via | into ports the seed workload") {
  System system(2);
  auto sum = from<NumberProducer>(system, 1, 100) | via<NumberProcessor>(1000) | into<SumConsumer>();
  system.wait();
  CHECK(sum->count() == 31);
  CHECK(sum->sum() == 10416);
}

TEST_CASE("DSL: map and filter lambdas over a lazy range, with per-step demand options") {
  System system(2);
  std::vector<std::string> seen;
  from(system, std::views::iota(1, 21))                                          //
      | map([](int x) { return x * 3; }, {.max_demand = 4, .min_demand = 1})  //
      | filter([](int x) { return x % 2 == 0; })                              //
      | map([](int x) { return std::to_string(x); })                           //
      | each([&](std::string s) { seen.push_back(std::move(s)); });
  system.wait();
  CHECK(seen == std::vector<std::string>{"6", "12", "18", "24", "30", "36", "42", "48", "54", "60"});
}

TEST_CASE("DSL: fuse runs maps and filters as one stage, with the events the separate steps give") {
  auto run = [](bool fused) {
    System system(2);
    std::vector<std::string> seen;
    auto triple = map([](int x) { return x * 3; });
    auto even = filter([](int x) { return x % 2 == 0; });
    auto text = map([](int x) { return std::to_string(x); });
    auto source = from(system, std::views::iota(1, 2001));
    auto sink = each([&](std::string s) { seen.push_back(std::move(s)); });
    if (fused) {
      source | fuse(triple, even, text).with({.name = "triple_even_text", .max_demand = 7}) | sink;
    } else {
      source | triple | even | text | sink;
    }
    const std::size_t stages = system.running();
    system.wait();
    return std::pair(stages, seen);
  };
  const auto [fused_stages, fused_events] = run(true);
  const auto [separate_stages, separate_events] = run(false);
  CHECK(fused_stages == 3);  // source, the fused step, each
  CHECK(separate_stages == 5);
  REQUIRE(fused_events.size() == 1000);
  CHECK(fused_events.front() == "6");
  CHECK(fused_events.back() == "6000");
  CHECK(fused_events == separate_events);
}

TEST_CASE("DSL: a lambda that throws fails its step; what it wrote into the failing chunk is never sent") {
  // Maps, filters and fused steps write their results straight into the outgoing batch: the
  // slots of a chunk whose lambda threw must go with the failed stage, as emitted events do.
  const auto throw_at = [](std::int64_t x) {
    if (x == 175) throw std::runtime_error("cannot take 175");
  };
  const StepOptions options{.name = "step", .max_demand = 100};  // chunks of 50
  auto run = [&](auto step) {
    System system(2);
    std::vector<std::int64_t> seen;
    from(system, std::views::iota(std::int64_t{1}, std::int64_t{1001})) | std::move(step) |
        each([&](std::int64_t x) { seen.push_back(x); });
    CHECK_THROWS_WITH_AS(system.wait(), "stage 'step' failed: cannot take 175", StageError);
    return seen;
  };
  // factor * [1..150]: three chunks went out before [151..200] failed.
  auto first_150_times = [](std::int64_t factor) {
    std::vector<std::int64_t> values;
    for (std::int64_t x = 1; x <= 150; ++x) values.push_back(factor * x);
    return values;
  };
  CHECK(run(map([&](std::int64_t x) { return throw_at(x), 2 * x; }, options)) == first_150_times(2));
  CHECK(run(filter([&](std::int64_t x) { return throw_at(x), true; }, options)) == first_150_times(1));
  CHECK(run(fuse(map([&](std::int64_t x) { return throw_at(x), 2 * x; }), filter([](std::int64_t) { return true; }))
                .with(options)) == first_150_times(2));
}

TEST_CASE("DSL: maps, filters and fused steps also carry events that have no default constructor") {
  struct Tagged {
    explicit Tagged(int v) : value(v) {}
    int value;
  };
  auto run = [](bool fused) {
    System system(2);
    std::vector<int> seen;
    auto tag = map([](int x) { return Tagged(x); });
    auto odd = filter([](const Tagged& t) { return t.value % 2 == 1; });
    auto source = from(system, std::views::iota(std::int64_t{1}, std::int64_t{11}));
    auto sink = each([&](Tagged t) { seen.push_back(t.value); });
    if (fused) {
      source | fuse(tag, odd) | sink;
    } else {
      source | tag | odd | sink;
    }
    system.wait();
    return seen;
  };
  CHECK(run(false) == std::vector<int>{1, 3, 5, 7, 9});
  CHECK(run(true) == std::vector<int>{1, 3, 5, 7, 9});
}

namespace {

using Owned = std::unique_ptr<std::int64_t>;

// Makes 1..10 as move-only events.
class OwnedNumbers final : public Producer<Owned> {
 public:
  void handle_demand(std::size_t demand, Emitter<Owned>& out) override {
    for (; demand > 0 && next_ <= 10; --demand) out.emit(std::make_unique<std::int64_t>(next_++));
    if (next_ > 10) out.done();
  }

 private:
  std::int64_t next_ = 1;
};

class OwnedSum final : public Consumer<Owned> {
 public:
  void handle_events(std::span<Owned> events) override {
    for (const Owned& event : events) sum += *event;
  }
  std::int64_t sum = 0;
};

}  // namespace

// Events move between stages, as GenStage's are sent: an event type need not be copyable.
TEST_CASE("move-only events travel through stages, the DSL and a partition dispatcher; a broadcast, which copies, refuses them") {
  System system(2);
  auto plain = system.spawn<OwnedSum>("plain");
  system.subscribe(plain, system.spawn<OwnedNumbers>("numbers"));

  std::int64_t doubled_evens = 0;
  from(system, std::views::iota(std::int64_t{1}, std::int64_t{11}))                  //
      | map([](std::int64_t x) { return std::make_unique<std::int64_t>(x); })         //
      | filter([](const Owned& x) { return *x % 2 == 0; })                           //
      | fuse(map([](Owned x) { return *x *= 2, std::move(x); }))                       //
      | each([&](Owned x) { doubled_evens += *x; });

  StageOptions by_parity;
  by_parity.name = "by parity";
  by_parity.dispatcher = dispatch::Partition<Owned>::numbered(
      2, [](const Owned& x) -> std::optional<PartitionKey> { return PartitionKey(static_cast<std::size_t>(*x % 2)); });
  auto split = system.spawn<OwnedNumbers>(by_parity);
  auto evens = system.spawn<OwnedSum>("evens");
  auto odds = system.spawn<OwnedSum>("odds");
  SubscribeOptions zero, one;
  zero.partition = std::size_t{0};
  one.partition = std::size_t{1};
  system.subscribe(evens, split, zero);
  system.subscribe(odds, split, one);

  StageOptions broadcast;
  broadcast.name = "broadcast";
  broadcast.dispatcher = dispatch::Broadcast{};
  CHECK_THROWS_WITH_AS(system.spawn<OwnedNumbers>(broadcast),
                       "a broadcast dispatcher copies every event to every consumer: it cannot take move-only events",
                       std::invalid_argument);
  system.wait();
  CHECK(plain->sum == 55);
  CHECK(doubled_evens == 60);
  CHECK(evens->sum == 30);
  CHECK(odds->sum == 25);
}

namespace {

// Fills two slots, throws, catches it, and emits the event's negation instead.
class CatchesBulkFailure final : public ProducerConsumer<std::int64_t, std::int64_t> {
 public:
  void handle_events(std::span<std::int64_t> events, Emitter<std::int64_t>& out) override {
    for (std::int64_t x : events) {
      try {
        out.emit_bulk(3, [&](std::span<std::int64_t> slots) -> std::size_t {
          slots[0] = slots[1] = x;
          throw std::runtime_error("fill failed");
        });
      } catch (const std::runtime_error&) {
        out.emit(-x);
      }
    }
  }
};

}  // namespace

TEST_CASE("Emitter::emit_bulk: a fill that throws leaves no slot behind, even when the callback catches it") {
  System system(2);
  auto sink = from<NumberProducer>(system, 1, 5) | via<CatchesBulkFailure>() | into<test::RecordingConsumer<>>();
  system.wait();
  CHECK(sink->events() == std::vector<std::int64_t>{-1, -2, -3, -4, -5});
}

TEST_CASE("Emitter::emit_bulk: the batch keeps what came before and exactly the slots the fill filled") {
  // One slot, and one slot left over, take paths of their own (emplace_back, pop_back): every
  // count filled from 0 to max_count, for max_count 0 to 4, after events already emitted, and a
  // fill that throws.
  for (std::size_t max_count = 0; max_count <= 4; ++max_count) {
    for (std::size_t filled = 0; filled <= max_count; ++filled) {
      CAPTURE(max_count);
      CAPTURE(filled);
      detail::Batch<std::int64_t> batch;
      bool done = false;
      Emitter<std::int64_t> out(batch, done);
      out.emit(-1);
      out.emit(-2);
      out.emit_bulk(max_count, [&](std::span<std::int64_t> slots) {
        CHECK(slots.size() == max_count);
        for (std::size_t i = 0; i < filled; ++i) slots[i] = static_cast<std::int64_t>(i);
        return filled;
      });
      std::vector<std::int64_t> expected{-1, -2};
      for (std::size_t i = 0; i < filled; ++i) expected.push_back(static_cast<std::int64_t>(i));
      CHECK(std::vector<std::int64_t>(batch.begin(), batch.end()) == expected);
    }
    // A fill that throws after filling every slot leaves none of them.
    detail::Batch<std::int64_t> batch;
    bool done = false;
    Emitter<std::int64_t> out(batch, done);
    out.emit(-1);
    CHECK_THROWS_AS(out.emit_bulk(max_count,
                                  [](std::span<std::int64_t> slots) -> std::size_t {
                                    std::fill(slots.begin(), slots.end(), 7);
                                    throw std::runtime_error("fill failed");
                                  }),
                    std::runtime_error);
    CHECK(std::vector<std::int64_t>(batch.begin(), batch.end()) == std::vector<std::int64_t>{-1});
  }
}

TEST_CASE("Emitter::emit_all of a whole batch: taken as the outgoing batch when nothing came before, else appended") {
  detail::Batch<std::int64_t> batch;
  bool done = false;
  Emitter<std::int64_t> out(batch, done);
  detail::Batch<std::int64_t> first{1, 2, 3};
  const std::int64_t* first_storage = first.data();
  out.emit_all(std::move(first));
  CHECK(batch.data() == first_storage);  // no copy
  detail::Batch<std::int64_t> second{4, 5};
  out.emit_all(std::move(second));
  CHECK(std::vector<std::int64_t>(batch.begin(), batch.end()) == std::vector<std::int64_t>{1, 2, 3, 4, 5});
}

TEST_CASE("DSL: a sized range source meets a demand its difference type cannot hold, and completes") {
  // iota over int16 counts in int: a demand of 2^32 + 5 must not wrap to 5 or to nothing.
  System system(2);
  std::int64_t count = 0;
  from(system, std::views::iota(std::int16_t{0}, std::int16_t{300})) |
      each([&](std::int16_t) { ++count; }, {.max_demand = (std::size_t{1} << 32) + 5});
  system.wait();
  CHECK(count == 300);
}

TEST_CASE("DSL: a vector source, a filter over strings and a filter over large events give what one by one would") {
  struct Wide {
    std::int64_t key;
    std::int64_t padding[7];
  };
  System system(2);
  std::vector<std::string> words;
  std::vector<std::int64_t> keys;
  from(system, std::vector<std::string>{"a", "bb", "ccc", "dd", "e"}) |
      filter([](const std::string& w) { return w.size() == 2; }) | each([&](std::string w) { words.push_back(std::move(w)); });
  from(system, std::views::iota(0, 10)) | map([](int x) { return Wide{x, {}}; }) |
      filter([](const Wide& w) { return w.key % 3 == 0; }) | each([&](Wide w) { keys.push_back(w.key); });
  system.wait();
  CHECK(words == std::vector<std::string>{"bb", "dd"});
  CHECK(keys == std::vector<std::int64_t>{0, 3, 6, 9});
}

TEST_CASE("DSL: the steps inside fuse take no options; the fused step does, copies included") {
  CHECK_THROWS_AS(fuse(map([](int x) { return x; }, {.max_demand = 5})), std::invalid_argument);
  CHECK_THROWS_AS(fuse(map([](int x) { return x; }), filter([](int) { return true; }, {.copies = 2})), std::invalid_argument);
  System system(2);
  auto sum = from<NumberProducer>(system, 1, 10'000)                                                      //
             | fuse(map([](std::int64_t x) { return x * x; }), filter([](std::int64_t x) { return x < 1000; }))  //
                   .with({.max_demand = 10, .copies = 3})                                                 //
             | into<SumConsumer>();
  const std::size_t stages = system.running();
  system.wait();
  CHECK(stages == 5);  // the source, three copies of the fused step, the sum
  CHECK(sum->count() == 31);
  CHECK(sum->sum() == 10416);
}

TEST_CASE("DSL: an endless range ends when the pipeline is drained") {
  System system(2);
  auto sum = from(system, std::views::iota(std::int64_t{1})) | into<SumConsumer>();
  system.start();
  while (sum.front().stats().events_in < 1000) std::this_thread::yield();
  system.drain();
  system.wait();
  const auto n = sum->count();
  CHECK(n >= 1000);
  CHECK(sum->sum() == n * (n + 1) / 2);
}

TEST_CASE("DSL: copies run a step as parallel stages fed by demand; every event is handled once") {
  System system(2);
  std::mutex mutex;
  std::vector<std::int64_t> seen;
  auto squares = from<NumberProducer>(system, 1, 10'000)                                      //
                 | map([](std::int64_t x) { return x * x; }, {.name = "square", .max_demand = 50, .copies = 3})  //
                 | each([&](std::int64_t x) {
                     std::lock_guard lock(mutex);
                     seen.push_back(x);
                   });
  const std::size_t stages = system.running();
  system.wait();
  CHECK(stages == 5);  // the source, three copies of square, each
  std::sort(seen.begin(), seen.end());
  REQUIRE(seen.size() == 10'000);
  for (std::int64_t i = 0; i < 10'000; ++i) CHECK(seen[static_cast<std::size_t>(i)] == (i + 1) * (i + 1));
  CHECK(squares.size() == 1);
}

TEST_CASE("DSL: copies of a sink each get a share, and names say which copy") {
  // On worker threads a copy slow to send its first ask might find the source done. The
  // ManualScheduler runs the stages in turn: each copy asks long before the source has emitted
  // 100,000 events at 10 an ask, and GenStage's DemandDispatcher serves every ask it has.
  ManualScheduler scheduler;
  System system(scheduler);
  auto sums = from<NumberProducer>(system, 1, 100'000) | into<SumConsumer>().with({.name = "sum", .max_demand = 10, .copies = 2});
  system.wait();
  REQUIRE(sums.size() == 2);
  CHECK(sums[0].name() == "sum.1");
  CHECK(sums[1].name() == "sum.2");
  CHECK(sums[0]->count() > 0);
  CHECK(sums[1]->count() > 0);
  CHECK(sums[0]->count() + sums[1]->count() == 100'000);
  CHECK(sums[0]->sum() + sums[1]->sum() == 100'000ull * 100'001 / 2);
}

// Elixir's Flow subscribes every stage before it forwards demand. A chain built on a System that
// runs already must start the same way, whole: otherwise its source may complete before a copy
// of the next step subscribes, whose subscription then ends with noproc and fails the System.
TEST_CASE("DSL: a chain built on a running System starts only once whole") {
  ManualScheduler scheduler;
  System system(scheduler);
  auto first = from<NumberProducer>(system, 1, 3) | into<SumConsumer>();
  scheduler.run_until_idle();
  REQUIRE(system.running() == 0);  // the System has run: stages now run as soon as they have work

  auto squares = from<NumberProducer>(system, 1, 10) | map([](std::int64_t x) { return x * x; }, {.copies = 2});
  CHECK(scheduler.run_until_idle() == 0);  // nothing of an unfinished chain runs
  auto sums = squares | into<SumConsumer>().with({.copies = 2});
  system.wait();  // throws if any stage failed
  CHECK(first->sum() == 6);
  CHECK(sums[0]->count() + sums[1]->count() == 10);
  CHECK(sums[0]->sum() + sums[1]->sum() == 385);
}

TEST_CASE("DSL: an unfinished chain on a running System starts once its last Flow is gone") {
  ManualScheduler scheduler;
  System system(scheduler);
  auto first = from<NumberProducer>(system, 1, 3) | into<SumConsumer>();
  scheduler.run_until_idle();
  detail::ActorRef squares;
  {
    auto flow = from<NumberProducer>(system, 1, 10) | map([](std::int64_t x) { return x * x; });
    squares = flow.stages().front();
    CHECK(scheduler.run_until_idle() == 0);
  }
  scheduler.run_until_idle();
  CHECK(squares->stats().snapshot().events_in == 10);  // nothing consumes it: the squares wait in its buffer
  system.stop();
}

TEST_CASE("DSL: a chain whose building throws stops the stages it had spawned, so wait() returns") {
  // The filter's options are refused after the source and the map were spawned: left to run,
  // the map would wait for a consumer for ever.
  ManualScheduler scheduler;
  System system(scheduler);
  CHECK_THROWS_WITH_AS(from<NumberProducer>(system, 1, 10) | map([](std::int64_t x) { return x * x; }) |
                           filter([](std::int64_t) { return true; }, {.max_demand = 100, .min_demand = 100}) |
                           into<SumConsumer>(),
                       "min_demand must lie in [0, 99] (max_demand - 1), got 100", std::invalid_argument);
  system.wait();
  CHECK(system.running() == 0);
}

TEST_CASE("DSL: copies must lie in [1, defaults::max_copies], and a range source refuses the options it has no use for") {
  ManualScheduler scheduler;
  System system(scheduler);
  auto identity = [](std::int64_t x) { return x; };
  CHECK_THROWS_WITH_AS(from<NumberProducer>(system, 1, 10) | map(identity, {.copies = 0}) | into<SumConsumer>(),
                       "copies must lie in [1, 1024], got 0", std::invalid_argument);
  CHECK_THROWS_WITH_AS(from<NumberProducer>(system, 1, 10) | map(identity, {.copies = 1025}) | into<SumConsumer>(),
                       "copies must lie in [1, 1024], got 1025", std::invalid_argument);
  CHECK_THROWS_AS(from(system, std::views::iota(std::int64_t{1}, std::int64_t{11}), {.max_demand = 5}), std::invalid_argument);
  CHECK_THROWS_AS(from(system, std::views::iota(std::int64_t{1}, std::int64_t{11}), {.copies = 2}), std::invalid_argument);
  auto named = from(system, std::views::iota(std::int64_t{1}, std::int64_t{11}), {.name = "numbers", .buffer_size = 5}) | into<SumConsumer>();
  system.wait();
  CHECK(named->count() == 10);
}

// Emits 1..n at its first demand, whatever the demand, and is done: what demand does not take
// goes to its buffer.
struct EmitsAllAtOnce final : Producer<std::int64_t> {
  explicit EmitsAllAtOnce(std::int64_t n) : n(n) {}
  void handle_demand(std::size_t, Emitter<std::int64_t>& out) override {
    if (n == 0) throw std::runtime_error("nothing to emit");
    for (std::int64_t x = 1; x <= n; ++x) out.emit(x);
    out.done();
  }
  std::int64_t n;
};

TEST_CASE("DSL: source<S>(args).with(options) starts a chain at a user Producer with a name and buffer of its own") {
  ManualScheduler scheduler;
  System system(scheduler);
  // buffer_size 3, keep first: of 1..10 emitted beyond a demand of 2, 1 and 2 meet it, 3..5 wait
  // in the buffer and 6..10 are discarded.
  const auto numbers = from(system, source<EmitsAllAtOnce>(10).with({.name = "numbers", .buffer_size = 3, .buffer_keep = BufferKeep::first}));
  REQUIRE(numbers.stages().size() == 1);
  CHECK(numbers.stages().front()->name() == "numbers");
  auto sum = numbers | into<SumConsumer>().with({.max_demand = 2});
  system.wait();
  CHECK(sum->count() == 5);
  CHECK(sum->sum() == 15);
  CHECK(numbers.stages().front()->stats().snapshot().discarded == 5);

  // An error names the source.
  from(system, source<EmitsAllAtOnce>(0).with({.name = "empty"})) | into<SumConsumer>();
  CHECK_THROWS_WITH_AS(system.wait(), "stage 'empty' failed: nothing to emit", StageError);
}

TEST_CASE("DSL: a source takes only name, buffer_size and buffer_keep") {
  ManualScheduler scheduler;
  System system(scheduler);
  CHECK_THROWS_WITH_AS(from(system, source<NumberProducer>(1, 10).with({.max_demand = 5})),
                       "a source takes only name, buffer_size and buffer_keep: max_demand, min_demand and hand_off belong to "
                       "the step that consumes it, and copies of a source would each emit everything",
                       std::invalid_argument);
  CHECK_THROWS_AS(from(system, source<NumberProducer>(1, 10).with({.copies = 2})), std::invalid_argument);
  CHECK_THROWS_AS(from(system, source<NumberProducer>(1, 10).with({.hand_off = HandOff::at_once})), std::invalid_argument);
}

TEST_CASE("DSL: steps of one kind are numbered in their chain, so that an error names the step") {
  ManualScheduler scheduler;
  System system(scheduler);
  auto sum = from<NumberProducer>(system, 1, 10)                                                   //
             | map([](std::int64_t x) { return x + 1; })                                          //
             | map([](std::int64_t x) -> std::int64_t { return x == 5 ? throw std::runtime_error("bad 5") : x; })  //
             | into<SumConsumer>();
  CHECK_THROWS_WITH_AS(system.wait(), "stage 'map#2' failed: bad 5", StageError);
}

TEST_CASE("DSL: wait() starts an unfinished chain that is still held") {
  ManualScheduler scheduler;
  System system(scheduler);
  auto first = from<NumberProducer>(system, 1, 3) | into<SumConsumer>();
  scheduler.run_until_idle();
  auto flow = from(system, std::views::iota(0, 0)) | map([](int x) { return x; });
  system.wait();  // the empty source completes, and so does the map: nothing is left running
  CHECK(system.running() == 0);
}

TEST_CASE("DSL: chains built one after another on a started System each deliver every event") {
  System system(2);
  system.start();
  constexpr int chains = 50;
  std::atomic<std::int64_t> total{0};
  for (int chain = 0; chain < chains; ++chain) {
    from(system, std::views::iota(std::int64_t{1}, std::int64_t{11}))               //
        | map([](std::int64_t x) { return x * x; }, {.max_demand = 2, .copies = 3})  //
        | each([&](std::int64_t x) { total += x; }, {.copies = 2});
  }
  system.wait();  // throws if any stage failed (noproc, for one that subscribed too late)
  CHECK(total == chains * 385);
}

TEST_CASE("graph wiring: fan-in, one consumer on several producers, completes when all complete") {
  System system(2);
  auto low = system.spawn<NumberProducer>("low", 1, 1000);
  auto high = system.spawn<NumberProducer>("high", 1001, 3000);
  auto sum = system.spawn<SumConsumer>("sum");
  system.subscribe(sum, low);
  system.subscribe(sum, high);
  system.wait();
  CHECK(sum->count() == 3000);
  CHECK(sum->sum() == 3000ull * 3001 / 2);
}

TEST_CASE("graph wiring: fan-out, several consumers on one producer share its events by demand") {
  System system(2);
  auto numbers = system.spawn<NumberProducer>("numbers", 1, 50'000);
  auto left = system.spawn<SumConsumer>("left");
  auto right = system.spawn<SumConsumer>("right");
  system.subscribe(left, numbers, {.max_demand = 100});
  system.subscribe(right, numbers, {.max_demand = 100});
  system.wait();
  CHECK(left->count() + right->count() == 50'000);
  CHECK(left->sum() + right->sum() == 50'000ull * 50'001 / 2);
}

TEST_CASE("DSL: a chain continues from an existing stage") {
  System system(2);
  auto numbers = system.spawn<NumberProducer>("numbers", 1, 10);
  auto sum = from(system, numbers) | map([](std::int64_t x) { return 2 * x; }) | into<SumConsumer>();
  system.wait();
  CHECK(sum->sum() == 110);
}
