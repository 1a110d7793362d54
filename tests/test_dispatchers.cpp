// Dispatchers: how a producer hands events to several consumers. The first cases drive the
// dispatchers directly, as GenStage's own dispatcher tests do; the rest go through stages.
#include "support.hpp"

#include <sluice/detail/dispatcher.hpp>
#include <sluice/stages/number_producer.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <string>

using namespace sluice;
using detail::Batch;
using detail::BatchPool;
using detail::ConsumerSlot;

namespace {

template <class T>
struct RecordingInlet final : detail::Inlet<T> {
  void post_events(SubscriptionId, Batch<T>& events, BatchPool<T>*, bool at_once) override {
    batches.emplace_back(events.begin(), events.end());
    events.clear();  // an inlet takes every event it is offered
    offered_at_once.push_back(at_once);
  }
  std::vector<std::vector<T>> batches;
  std::vector<bool> offered_at_once;  // per batch: whether it could be taken at once
};

using Strings = std::vector<std::string>;

Batch<std::string> batch_of(Strings events) { return Batch<std::string>(events.begin(), events.end()); }
Strings rest_of(const Batch<std::string>& batch) { return Strings(batch.begin(), batch.end()); }

}  // namespace

TEST_CASE("demand dispatcher: consumers with demand 3 and 2, [a..e] -> [a,b,c] and [d,e]; a further [a,b,c] is all left over") {
  detail::DemandDispatcher<std::string> dispatcher({});
  BatchPool<std::string> pool;
  RecordingInlet<std::string> first, second;
  dispatcher.subscribe(ConsumerSlot<std::string>{1, {}, &first}, {});
  dispatcher.subscribe(ConsumerSlot<std::string>{2, {}, &second}, {});
  CHECK(dispatcher.ask(1, 3) == 3);
  CHECK(dispatcher.ask(2, 2) == 2);
  auto batch = batch_of({"a", "b", "c", "d", "e"});
  CHECK(dispatcher.dispatch(batch, pool) == 5);
  CHECK(first.batches == std::vector<Strings>{{"a", "b", "c"}});
  CHECK(second.batches == std::vector<Strings>{{"d", "e"}});
  auto more = batch_of({"a", "b", "c"});
  CHECK(dispatcher.dispatch(more, pool) == 0);
  CHECK(rest_of(more) == Strings{"a", "b", "c"});
}

TEST_CASE("demand dispatcher: demands 3 and 3, [a,b], [c,d], [e,f,g] -> [a,b] first, [c,d] second, then [e] and [f], [g] left over") {
  detail::DemandDispatcher<std::string> dispatcher({});
  BatchPool<std::string> pool;
  RecordingInlet<std::string> first, second;
  dispatcher.subscribe(ConsumerSlot<std::string>{1, {}, &first}, {});
  dispatcher.subscribe(ConsumerSlot<std::string>{2, {}, &second}, {});
  dispatcher.ask(1, 3);
  dispatcher.ask(2, 3);
  auto ab = batch_of({"a", "b"});
  auto cd = batch_of({"c", "d"});
  auto efg = batch_of({"e", "f", "g"});
  dispatcher.dispatch(ab, pool);
  dispatcher.dispatch(cd, pool);
  dispatcher.dispatch(efg, pool);
  CHECK(first.batches == std::vector<Strings>{{"a", "b"}, {"e"}});
  CHECK(second.batches == std::vector<Strings>{{"c", "d"}, {"f"}});
  CHECK(rest_of(efg) == Strings{"g"});
}

TEST_CASE("demand dispatcher, one consumer: an unknown subscription's ask is ignored; a batch within demand goes whole, one beyond it leaves the rest") {
  // The one-consumer path is the usual one: a batch within demand goes as it is, and may be
  // taken at once (HandOff::at_once); a slice of a larger batch never is, since the producer
  // still holds the rest.
  for (const HandOff hand_off : {HandOff::queued, HandOff::at_once}) {
    CAPTURE(static_cast<int>(hand_off));
    detail::DemandDispatcher<std::string> dispatcher({});
    BatchPool<std::string> pool;
    RecordingInlet<std::string> only;
    dispatcher.subscribe(ConsumerSlot<std::string>{1, {}, &only}, {.hand_off = hand_off});
    CHECK(dispatcher.ask(99, 5) == 0);
    CHECK(dispatcher.ask(1, 3) == 3);
    auto ab = batch_of({"a", "b"});
    CHECK(dispatcher.dispatch(ab, pool) == 2);
    auto cde = batch_of({"c", "d", "e"});
    CHECK(dispatcher.dispatch(cde, pool) == 1);
    CHECK(rest_of(cde) == Strings{"d", "e"});
    CHECK(only.batches == std::vector<Strings>{{"a", "b"}, {"c"}});
    CHECK(only.offered_at_once == std::vector<bool>{hand_off == HandOff::at_once, false});
    // The unknown subscription's 5 were never counted: 0 left, so nothing more goes.
    CHECK(dispatcher.dispatch(cde, pool) == 0);
  }
}

TEST_CASE("demand dispatcher: a cancelled consumer's demand is not forwarded twice") {
  detail::DemandDispatcher<std::string> dispatcher({});
  RecordingInlet<std::string> first, second;
  dispatcher.subscribe(ConsumerSlot<std::string>{1, {}, &first}, {});
  dispatcher.subscribe(ConsumerSlot<std::string>{2, {}, &second}, {});
  CHECK(dispatcher.ask(1, 10) == 10);
  CHECK(dispatcher.cancel(1) == 0);
  // The 10 already forwarded for the departed consumer cover the next 10 asked.
  CHECK(dispatcher.ask(2, 4) == 0);
  CHECK(dispatcher.ask(2, 10) == 4);
}

TEST_CASE("broadcast: asks of 3 and 2 -> upstream sees 2 and [a,b] goes to both; ask 2 more -> upstream sees 1; [c,d] -> both get [c], [d] left over") {
  detail::BroadcastDispatcher<std::string> dispatcher;
  BatchPool<std::string> pool;
  RecordingInlet<std::string> first, second;
  dispatcher.subscribe(ConsumerSlot<std::string>{1, {}, &first}, {});
  dispatcher.subscribe(ConsumerSlot<std::string>{2, {}, &second}, {});
  CHECK(dispatcher.ask(1, 3) == 0);
  CHECK(dispatcher.ask(2, 2) == 2);
  auto ab = batch_of({"a", "b"});
  CHECK(dispatcher.dispatch(ab, pool) == 2);
  CHECK(first.batches == std::vector<Strings>{{"a", "b"}});
  CHECK(second.batches == std::vector<Strings>{{"a", "b"}});
  CHECK(dispatcher.ask(2, 2) == 1);
  auto cd = batch_of({"c", "d"});
  CHECK(dispatcher.dispatch(cd, pool) == 1);
  CHECK(first.batches.back() == Strings{"c"});
  CHECK(second.batches.back() == Strings{"c"});
  CHECK(rest_of(cd) == Strings{"d"});
}

TEST_CASE("broadcast: a late subscriber owes the demand already forwarded (starts at -waiting)") {
  detail::BroadcastDispatcher<std::string> dispatcher;
  RecordingInlet<std::string> first, second;
  dispatcher.subscribe(ConsumerSlot<std::string>{1, {}, &first}, {});
  CHECK(dispatcher.ask(1, 10) == 10);
  dispatcher.subscribe(ConsumerSlot<std::string>{2, {}, &second}, {});
  CHECK(dispatcher.ask(2, 10) == 0);  // its first 10 are the 10 already on their way
  CHECK(dispatcher.ask(1, 5) == 0);
  CHECK(dispatcher.ask(2, 5) == 5);
}

TEST_CASE("broadcast: selectors 'starts with pre' and 'starts with pref' get 3 and 2 of [pref-1234, pref-5678, pre0000, foo0000]") {
  detail::BroadcastDispatcher<std::string> dispatcher;
  BatchPool<std::string> pool;
  RecordingInlet<std::string> pre, pref;
  using Selector = std::function<bool(const std::string&)>;
  SubscribeOptions pre_options, pref_options;
  pre_options.selector = Selector([](const std::string& s) { return s.starts_with("pre"); });
  pref_options.selector = Selector([](const std::string& s) { return s.starts_with("pref"); });
  dispatcher.subscribe(ConsumerSlot<std::string>{1, {}, &pre}, pre_options);
  dispatcher.subscribe(ConsumerSlot<std::string>{2, {}, &pref}, pref_options);
  dispatcher.ask(1, 10);
  dispatcher.ask(2, 10);
  auto events = batch_of({"pref-1234", "pref-5678", "pre0000", "foo0000"});
  CHECK(dispatcher.dispatch(events, pool) == 4);
  CHECK(pre.batches == std::vector<Strings>{{"pref-1234", "pref-5678", "pre0000"}});
  CHECK(pref.batches == std::vector<Strings>{{"pref-1234", "pref-5678"}});
  // Rejected events are credited back to each consumer's demand.
  auto credits = dispatcher.take_credits();
  std::sort(credits.begin(), credits.end());
  CHECK(credits == std::vector<std::pair<SubscriptionId, std::size_t>>{{1, 1}, {2, 2}});
}

TEST_CASE("partition: odd/even, multiples of 3 dropped, each asking 4, 1..12 -> even [2,4,8,10], odd [1,5,7,11], [12] left over") {
  using Key = dispatch::Partition<std::int64_t>::Key;
  auto odd_or_even = [](const std::int64_t& x) -> Key {
    if (x % 3 == 0) return std::nullopt;
    return PartitionKey(std::string(x % 2 == 0 ? "even" : "odd"));
  };
  auto policy = dispatch::Partition<std::int64_t>::named({"odd", "even"}, odd_or_even);
  std::size_t keyed = 0;
  bool batched = false;
  SUBCASE("a key per event") {}
  SUBCASE("the keys of a batch at once (hash_batch), which the dispatcher uses instead") {
    batched = true;
    policy.hash = [](const std::int64_t&) -> Key { throw std::logic_error("hash_batch must be used"); };
    policy.hash_batch = [odd_or_even, &keyed](std::span<const std::int64_t> events, std::vector<Key>& keys) {
      keyed += events.size();
      for (const std::int64_t x : events) keys.push_back(odd_or_even(x));
    };
  }
  detail::PartitionDispatcher<std::int64_t> dispatcher(policy);
  BatchPool<std::int64_t> pool;
  RecordingInlet<std::int64_t> odd, even;
  SubscribeOptions odd_options, even_options;
  odd_options.partition = std::string("odd");
  even_options.partition = std::string("even");
  CHECK(dispatcher.subscribe(ConsumerSlot<std::int64_t>{1, {}, &odd}, odd_options).empty());
  CHECK(dispatcher.subscribe(ConsumerSlot<std::int64_t>{2, {}, &even}, even_options).empty());
  dispatcher.ask(1, 4);
  dispatcher.ask(2, 4);
  Batch<std::int64_t> events;
  for (std::int64_t i = 1; i <= 12; ++i) events.push_back(i);
  // 8 events met demand; the 3 dropped left the batch without meeting any.
  CHECK(dispatcher.dispatch(events, pool) == 8);
  CHECK(even.batches == std::vector<std::vector<std::int64_t>>{{2, 4, 8, 10}});
  CHECK(odd.batches == std::vector<std::vector<std::int64_t>>{{1, 5, 7, 11}});
  CHECK(std::vector<std::int64_t>(events.begin(), events.end()) == std::vector<std::int64_t>{12});
  // Keys only for what the demand could take: 8 events, then 2 more for the 2 of them dropped
  // (3 and 6), then 1 for the 9 dropped among those; 12 is left unkeyed.
  if (batched) CHECK(keyed == 11);
  // The event left over is keyed when it goes out: 12 is dropped, at no cost in demand.
  dispatcher.ask(1, 1);
  CHECK(dispatcher.dispatch(events, pool) == 0);
  CHECK(events.empty());
  CHECK(odd.batches.size() == 1);
  CHECK(even.batches.size() == 1);
}

TEST_CASE("partition: a hash_batch that gives fewer keys than events is a clear error") {
  auto policy = dispatch::Partition<std::int64_t>::numbered(2, {});
  policy.hash_batch = [](std::span<const std::int64_t>, std::vector<dispatch::Partition<std::int64_t>::Key>& keys) {
    keys.emplace_back(PartitionKey(std::size_t{0}));
  };
  detail::PartitionDispatcher<std::int64_t> dispatcher(policy);
  BatchPool<std::int64_t> pool;
  RecordingInlet<std::int64_t> zero;
  SubscribeOptions options;
  options.partition = PartitionKey(std::size_t{0});
  REQUIRE(dispatcher.subscribe(ConsumerSlot<std::int64_t>{1, {}, &zero}, options).empty());
  dispatcher.ask(1, 4);
  Batch<std::int64_t> events{1, 2};
  CHECK_THROWS_WITH_AS(dispatcher.dispatch(events, pool), "the partition's hash_batch must give one key per event",
                       std::logic_error);
  // Nothing was sent or taken.
  CHECK(zero.batches.empty());
  CHECK(events.size() == 2);
}

TEST_CASE("partition: events beyond a partition's demand wait for that partition") {
  auto policy = dispatch::Partition<std::int64_t>::numbered(2, [](const std::int64_t& x) -> std::optional<PartitionKey> {
    return PartitionKey(static_cast<std::size_t>(x % 2));
  });
  detail::PartitionDispatcher<std::int64_t> dispatcher(policy);
  BatchPool<std::int64_t> pool;
  RecordingInlet<std::int64_t> evens, odds;
  SubscribeOptions even_options, odd_options;
  even_options.partition = std::size_t{0};
  odd_options.partition = std::size_t{1};
  dispatcher.subscribe(ConsumerSlot<std::int64_t>{1, {}, &evens}, even_options);
  dispatcher.subscribe(ConsumerSlot<std::int64_t>{2, {}, &odds}, odd_options);
  dispatcher.ask(1, 1);
  dispatcher.ask(2, 3);
  Batch<std::int64_t> events{2, 4, 6, 1};
  CHECK(dispatcher.dispatch(events, pool) == 4);
  CHECK(evens.batches == std::vector<std::vector<std::int64_t>>{{2}});
  CHECK(odds.batches == std::vector<std::vector<std::int64_t>>{{1}});
  dispatcher.ask(1, 5);  // the waiting 4 and 6 come first
  CHECK(evens.batches.back() == std::vector<std::int64_t>{4, 6});
}

TEST_CASE("partition errors: missing, already taken and out-of-range partitions refuse the subscription clearly") {
  auto policy = dispatch::Partition<std::int64_t>::numbered(2, [](const std::int64_t& x) -> std::optional<PartitionKey> {
    return PartitionKey(static_cast<std::size_t>(x % 2));
  });
  auto run = [&](std::vector<SubscribeOptions> subscriptions) -> std::string {
    ManualScheduler scheduler;
    System system(scheduler);
    StageOptions options;
    options.name = "numbers";
    options.dispatcher = policy;
    auto producer = system.spawn<stages::NumberProducer>(options, 0);  // endless
    const char* names[] = {"first", "second"};
    for (std::size_t i = 0; i < subscriptions.size(); ++i) {
      auto consumer = system.spawn<test::RecordingConsumer<>>(names[i]);
      system.subscribe(consumer, producer, subscriptions[i]);
    }
    try {
      system.wait();
    } catch (const StageError& error) {
      return error.what();
    }
    return "no error";
  };
  SubscribeOptions none, zero, five;
  zero.partition = std::size_t{0};
  five.partition = std::size_t{5};
  // The refused consumer stops, named, and not the producer, which had done nothing wrong.
  CHECK(run({none}) ==
        "stage 'first' failed: its subscription to 'numbers' was refused: subscribing to a producer with a partition dispatcher "
        "needs a partition (one of [0, 1])");
  CHECK(run({five}) == "stage 'first' failed: its subscription to 'numbers' was refused: partition 5 does not exist: it must be one of [0, 1]");
  CHECK(run({zero, zero}) == "stage 'second' failed: its subscription to 'numbers' was refused: partition 0 is already taken by 'first'");
}

TEST_CASE("partition errors: a hash that returns an unknown partition fails the producer, naming it") {
  ManualScheduler scheduler;
  System system(scheduler);
  StageOptions options;
  options.name = "numbers";
  options.dispatcher = dispatch::Partition<std::int64_t>::numbered(
      2, [](const std::int64_t& x) -> std::optional<PartitionKey> { return PartitionKey(static_cast<std::size_t>(x % 3)); });
  auto producer = system.spawn<stages::NumberProducer>(options, 0, 100);
  SubscribeOptions zero;
  zero.partition = std::size_t{0};
  auto consumer = system.spawn<test::RecordingConsumer<>>("consumer");
  system.subscribe(consumer, producer, zero);
  CHECK_THROWS_WITH_AS(system.wait(), "stage 'numbers' failed: the partition hash returned unknown partition 2 (the partitions are [0, 1])",
                       StageError);
}

TEST_CASE("broadcast through stages: max_demand 10 and 20 both get the same 10 events; handle_demand(10) is called exactly once") {
  // GenStage's recipe for broadcast: start the producer accumulating demand, subscribe every
  // consumer, then forward.
  ManualScheduler scheduler;
  System system(scheduler);
  StageOptions options;
  options.name = "producer";
  options.dispatcher = dispatch::Broadcast{};
  options.accumulate_demand = true;
  auto producer = system.spawn<test::CountingProducer>(options);
  auto small = system.spawn<test::RecordingConsumer<>>("small");
  auto large = system.spawn<test::RecordingConsumer<>>("large");
  system.subscribe(small, producer, {.max_demand = 10});
  system.subscribe(large, producer, {.max_demand = 20});
  scheduler.run_until_idle();
  CHECK(producer->demands.empty());
  system.forward_demand(producer);
  // Step until the first 10 events were delivered to both, before any refill is served.
  while (small->received() < 10 || large->received() < 10) REQUIRE(scheduler.run_once());
  CHECK(producer->demands == std::vector<std::size_t>{10});
  CHECK(small->batches.front().front() == 0);
  CHECK(small->received() == 10);
  CHECK(large->received() == 10);
  auto flatten = [](const std::vector<test::Batch>& batches) {
    test::Batch all;
    for (const auto& batch : batches) all.insert(all.end(), batch.begin(), batch.end());
    return all;
  };
  CHECK(flatten(small->batches) == test::iota_batch(0, 9));
  CHECK(flatten(large->batches) == test::iota_batch(0, 9));
  system.stop();
}

// GenStage, broadcast_dispatcher.ex subscribe/3: a consumer already subscribed is refused
// ({:error, :already_subscribed}), and gen_stage.ex cancels the new subscription with that
// reason. Its first subscription goes on: accepted twice, it would get every event twice.
TEST_CASE("broadcast: a consumer subscribing twice is refused the second time, naming it; its first subscription delivers each event once") {
  const std::string refused = "stage 'C' failed: its subscription to 'producer' was refused: 'C' is already subscribed";
  ManualScheduler scheduler;
  System system(scheduler);
  StageOptions options;
  options.name = "producer";
  options.dispatcher = dispatch::Broadcast{};
  auto producer = system.spawn<test::QueueProducer<>>(options);
  auto consumer = system.spawn<test::RecordingConsumer<>>("C");
  SUBCASE("permanent: the consumer fails with the refusal") {
    system.subscribe(consumer, producer, {.max_demand = 10});
    system.subscribe(consumer, producer, {.max_demand = 10});
    CHECK_THROWS_WITH_AS(system.wait(), refused.c_str(), StageError);
  }
  SUBCASE("temporary: the consumer hears of the refusal and goes on with the first subscription") {
    const SubscribeOptions temporary{.max_demand = 10, .cancel = CancelMode::temporary};
    system.subscribe(consumer, producer, temporary);
    system.subscribe(consumer, producer, temporary);
    scheduler.run_until_idle();
    system.send_info(producer, std::vector<std::int64_t>{1, 2, 3});
    scheduler.run_until_idle();
    CHECK(consumer->events() == test::Batch{1, 2, 3});
    REQUIRE(consumer->cancels.size() == 1);
    CHECK(consumer->cancels.front().describe() == refused);
    system.stop();
  }
}

TEST_CASE("partition through a producer-consumer: events the hash drops meet no demand, so the stage goes on") {
  // 9 of every 10 events are dropped. Counted as delivered, they would use up the consumers'
  // demand of 2000 after 200 events had arrived, too few for either to ask again: a stall.
  ManualScheduler scheduler;
  System system(scheduler);
  auto producer = system.spawn<stages::NumberProducer>("numbers", 1, 10000);
  StageOptions options;
  options.name = "tens";
  options.dispatcher = dispatch::Partition<std::int64_t>::numbered(2, [](const std::int64_t& x) -> std::optional<PartitionKey> {
    if (x % 10 != 0) return std::nullopt;
    return PartitionKey(static_cast<std::size_t>(x / 10 % 2));
  });
  auto middle = system.spawn<test::Identity>(options);
  system.subscribe(middle, producer);
  SubscribeOptions zero, one;
  zero.partition = std::size_t{0};
  one.partition = std::size_t{1};
  auto evens = system.spawn<test::RecordingConsumer<>>("evens");
  auto odds = system.spawn<test::RecordingConsumer<>>("odds");
  system.subscribe(evens, middle, zero);
  system.subscribe(odds, middle, one);
  system.wait();
  CHECK(evens->received() == 500);
  CHECK(odds->received() == 500);
  CHECK(middle.stats().events_out == 1000);
}

namespace {

// Options of a stage whose events go to partition 0 when even and 1 when odd, or nowhere when
// `drops` says so.
StageOptions by_parity(std::string name, bool (*drops)(std::int64_t) = nullptr) {
  StageOptions options;
  options.name = std::move(name);
  options.dispatcher = dispatch::Partition<std::int64_t>::numbered(2, [drops](const std::int64_t& x) -> std::optional<PartitionKey> {
    if (drops != nullptr && drops(x)) return std::nullopt;
    return PartitionKey(static_cast<std::size_t>(x % 2));
  });
  return options;
}

// Subscribes `evens` to partition 0 of `producer` and `odds` to partition 1, asking 10 at a time.
template <class Producer, class Evens, class Odds>
void subscribe_by_parity(System& system, Producer& producer, Evens& evens, Odds& odds) {
  SubscribeOptions zero{.max_demand = 10}, one{.max_demand = 10};
  zero.partition = std::size_t{0};
  one.partition = std::size_t{1};
  system.subscribe(evens, producer, zero);
  system.subscribe(odds, producer, one);
}

// Cancels its subscription, normally, once it has its first batch: a consumer that leaves.
class LeavesAfterFirstBatch final : public Consumer<std::int64_t> {
 public:
  DemandMode handle_subscribe(const SubscriptionInfo& info) override {
    subscription_ = info.id;
    return DemandMode::automatic;
  }
  void handle_events(std::span<std::int64_t> events) override {
    received += events.size();
    context().cancel(subscription_, ExitReason::normal());
  }
  std::size_t received = 0;

 private:
  SubscriptionId subscription_{};
};

}  // namespace

TEST_CASE("partition: events for a partition whose consumer left cost the others no demand, and do not hold up completion") {
  // The evens' consumer leaves after its first batch; later even events wait in its partition
  // for a consumer that may come. Counted against demand, they would starve the odds' consumer
  // (half of what it asks for would go to the evens' queue); held for, they would keep the
  // done stage from completing.
  ManualScheduler scheduler;
  System system(scheduler);
  auto numbers = system.spawn<stages::NumberProducer>("numbers", 1, 100);
  auto producer = system.spawn<test::Identity>(by_parity("parity"));
  system.subscribe(producer, numbers);
  auto evens = system.spawn<LeavesAfterFirstBatch>("evens");
  auto odds = system.spawn<test::RecordingConsumer<>>("odds");
  subscribe_by_parity(system, producer, evens, odds);
  scheduler.run_until_idle();
  CHECK(evens->received > 0);
  CHECK(odds->received() == 50);
  CHECK(system.running() == 0);
}

TEST_CASE("partition on a producer: events the hash drops are made up by handle_demand, so the consumers get the rest") {
  // A third of 1..999 is dropped. Had the producer not been asked again for the events that met
  // no demand, both consumers would wait for them with demand outstanding: a stall.
  ManualScheduler scheduler;
  System system(scheduler);
  auto producer = system.spawn<stages::NumberProducer>(
      by_parity("numbers", [](std::int64_t x) { return x % 3 == 0; }), 1, 999);
  auto evens = system.spawn<test::RecordingConsumer<>>("evens");
  auto odds = system.spawn<test::RecordingConsumer<>>("odds");
  subscribe_by_parity(system, producer, evens, odds);
  scheduler.run_until_idle();
  CHECK(evens->received() == 333);
  CHECK(odds->received() == 333);
  CHECK(system.running() == 0);
}

namespace {

// Emits twice what it is asked for, consecutive integers from 1, and records each demand.
class EmitsDouble final : public Producer<std::int64_t> {
 public:
  void handle_demand(std::size_t demand, Emitter<std::int64_t>& out) override {
    demands.push_back(demand);
    for (std::size_t i = 0; i < 2 * demand; ++i) out.emit(next_++);
  }
  std::vector<std::size_t> demands;

 private:
  std::int64_t next_ = 1;
};

}  // namespace

TEST_CASE("partition on a producer: it is asked again only for demand its events left unmet") {
  // The evens' consumer asks for 5; it emits 1..10. 1, 5 and 7 wait for the odds' consumer
  // (subscribed, with no demand yet), 2 and 4 go out, 3 and 6 are dropped, and 8..10 go to the
  // buffer: the 5 asked for upstream were all taken, so handle_demand must not be asked again
  // for the two dropped events.
  ManualScheduler scheduler;
  System system(scheduler);
  auto producer = system.spawn<EmitsDouble>(by_parity("numbers", [](std::int64_t x) { return x % 3 == 0; }));
  auto evens = system.spawn<test::RecordingConsumer<>>("evens", DemandMode::manual);
  auto odds = system.spawn<test::RecordingConsumer<>>("odds", DemandMode::manual);
  subscribe_by_parity(system, producer, evens, odds);
  scheduler.run_until_idle();
  system.send_info(evens, std::size_t{5});
  scheduler.run_until_idle();
  CHECK(producer->demands == std::vector<std::size_t>{5});
  CHECK(evens->batches == std::vector<test::Batch>{{2, 4}});
  CHECK(producer.stats().buffered == 3);
  system.stop();
}

TEST_CASE("partition: a partition nobody consumes keeps the last 10,000 of its events; a done producer leaves them, all counted as discarded") {
  ManualScheduler scheduler;
  System system(scheduler);
  auto producer = system.spawn<stages::NumberProducer>(by_parity("numbers"), 1, 30'000);
  auto evens = system.spawn<test::RecordingConsumer<>>("evens");
  SubscribeOptions zero;
  zero.partition = std::size_t{0};
  system.subscribe(evens, producer, zero);
  scheduler.run_until_idle();
  CHECK(evens->received() == 15'000);
  CHECK(producer.stats().events_out == 15'000);
  CHECK(producer.stats().discarded == 15'000);
  CHECK(system.running() == 0);
}

namespace {

// A producer whose events come by info (a vector of them), with the partitions of by_parity,
// that stays up when its consumers leave.
StageOptions parity_that_stays(std::string name) {
  StageOptions options = by_parity(std::move(name));
  options.complete_when_unsubscribed = false;
  return options;
}

// Asks by hand: info std::size_t{n} asks for n; info "leave" cancels the subscription.
class AsksOrLeaves final : public Consumer<std::int64_t> {
 public:
  DemandMode handle_subscribe(const SubscriptionInfo& info) override {
    subscription_ = info.id;
    return DemandMode::manual;
  }
  void handle_events(std::span<std::int64_t> events) override { received.insert(received.end(), events.begin(), events.end()); }
  void handle_info(std::any& message) override {
    if (const auto* count = std::any_cast<std::size_t>(&message)) {
      context().ask(subscription_, *count);
    } else {
      context().cancel(subscription_, ExitReason::normal());
    }
  }
  test::Batch received;

 private:
  SubscriptionId subscription_{};
};

}  // namespace

// GenStage, gen_stage.ex dispatch_events/3: with no consumers the events go to the producer's
// buffer without reaching the dispatcher, and the next consumer gets them from there.
TEST_CASE("broadcast: events emitted while no consumer is subscribed wait in the buffer for the next one") {
  ManualScheduler scheduler;
  System system(scheduler);
  StageOptions options;
  options.name = "producer";
  options.dispatcher = dispatch::Broadcast{};
  options.complete_when_unsubscribed = false;
  auto producer = system.spawn<test::QueueProducer<>>(options);
  auto first = system.spawn<LeavesAfterFirstBatch>("first");
  system.subscribe(first, producer, {.max_demand = 10});
  scheduler.run_until_idle();
  system.send_info(producer, std::vector<std::int64_t>{0, 1, 2});
  scheduler.run_until_idle();
  REQUIRE(first->received == 3);
  system.send_info(producer, std::vector<std::int64_t>{3, 4, 5});  // nobody subscribed
  scheduler.run_until_idle();
  CHECK(producer.stats().buffered == 3);
  CHECK(producer.stats().events_out == 3);
  auto second = system.spawn<test::RecordingConsumer<>>("second", DemandMode::manual);
  system.subscribe(second, producer, {.max_demand = 10});
  scheduler.run_until_idle();
  system.send_info(second, std::size_t{10});
  scheduler.run_until_idle();
  CHECK(second->events() == test::Batch{3, 4, 5});
  CHECK(producer.stats().events_out == 6);
  system.stop();
}

// The same rule for a partition dispatcher: queued there, with no partition consumed, the
// events would meet no demand, and the producer would be asked again for the demand its
// departed consumer left, and again, while it had events to give.
TEST_CASE("partition: events emitted while no partition has a consumer wait in the buffer, and the producer is not asked again") {
  ManualScheduler scheduler;
  System system(scheduler);
  auto producer = system.spawn<test::QueueProducer<>>(parity_that_stays("producer"));
  auto evens = system.spawn<LeavesAfterFirstBatch>("evens");
  SubscribeOptions zero{.max_demand = 10};
  zero.partition = std::size_t{0};
  system.subscribe(evens, producer, zero);
  scheduler.run_until_idle();
  system.send_info(producer, std::vector<std::int64_t>{2, 4});
  scheduler.run_until_idle();
  REQUIRE(evens->received == 2);
  system.send_info(producer, std::vector<std::int64_t>{6, 8, 1});  // nobody subscribed
  scheduler.run_until_idle();
  CHECK(producer->demands == std::vector<std::size_t>{10});
  CHECK(producer.stats().buffered == 3);
  CHECK(producer.stats().discarded == 0);
  auto later = system.spawn<test::RecordingConsumer<>>("later", DemandMode::manual);
  system.subscribe(later, producer, zero);
  scheduler.run_until_idle();
  system.send_info(later, std::size_t{10});
  scheduler.run_until_idle();
  CHECK(later->events() == test::Batch{6, 8});
  system.stop();
}

// events_out counts events delivered to consumers: those waiting in a partition's queue count
// when they are delivered, and those lost with a departed consumer count as discarded.
TEST_CASE("partition stats: queued events count as out when delivered, and as discarded when their consumer leaves") {
  ManualScheduler scheduler;
  System system(scheduler);
  auto producer = system.spawn<test::QueueProducer<>>(parity_that_stays("producer"));
  auto evens = system.spawn<AsksOrLeaves>("evens");
  SubscribeOptions zero{.max_demand = 10}, one{.max_demand = 10};
  zero.partition = std::size_t{0};
  one.partition = std::size_t{1};
  system.subscribe(evens, producer, zero);
  scheduler.run_until_idle();
  system.send_info(evens, std::size_t{1});
  scheduler.run_until_idle();
  // 2 goes out; 4 and 6 met demand and wait for the evens' consumer; 1 waits for a consumer of
  // odd numbers.
  system.send_info(producer, std::vector<std::int64_t>{2, 4, 6, 1});
  scheduler.run_until_idle();
  CHECK(evens->received == test::Batch{2});
  CHECK(producer.stats().events_out == 1);
  auto odds = system.spawn<test::RecordingConsumer<>>("odds", DemandMode::manual);
  system.subscribe(odds, producer, one);
  scheduler.run_until_idle();
  system.send_info(odds, std::size_t{3});
  scheduler.run_until_idle();
  CHECK(odds->events() == test::Batch{1});
  CHECK(producer.stats().events_out == 2);
  system.send_info(evens, std::size_t{1});
  scheduler.run_until_idle();
  CHECK(evens->received == test::Batch{2, 4});
  CHECK(producer.stats().events_out == 3);
  system.send_info(evens, std::string("leave"));
  scheduler.run_until_idle();
  CHECK(producer.stats().events_out == 3);
  CHECK(producer.stats().discarded == 1);  // 6, lost with the evens' consumer
  system.stop();
}

TEST_CASE("partition: buffered events the hash drops meet no demand, so the buffer serves the rest") {
  // 1..10 wait in the producer's buffer; the consumer of even numbers asks for 4. Serving 4
  // from the buffer sends 2 and 4 and drops 1 and 3: the buffer goes on until 6 and 8 are sent.
  ManualScheduler scheduler;
  System system(scheduler);
  StageOptions options;
  options.name = "queue";
  options.dispatcher = dispatch::Partition<std::int64_t>::numbered(1, [](const std::int64_t& x) -> std::optional<PartitionKey> {
    if (x % 2 != 0) return std::nullopt;
    return PartitionKey(std::size_t{0});
  });
  auto producer = system.spawn<test::QueueProducer<>>(options);
  SubscribeOptions evens;
  evens.partition = std::size_t{0};
  auto consumer = system.spawn<test::RecordingConsumer<>>("consumer", DemandMode::manual);
  system.subscribe(consumer, producer, evens);
  scheduler.run_until_idle();
  system.send_info(producer, test::iota_batch(1, 10));
  scheduler.run_until_idle();
  system.send_info(consumer, std::size_t{4});
  scheduler.run_until_idle();
  CHECK(consumer->events() == std::vector<std::int64_t>{2, 4, 6, 8});
  CHECK(producer->demands.empty());  // the buffer met it all
  system.stop();
}

TEST_CASE("accumulate, then forward: accumulated demands are replayed in order") {
  ManualScheduler scheduler;
  System system(scheduler);
  StageOptions options;
  options.name = "queue";
  options.accumulate_demand = true;
  auto producer = system.spawn<test::QueueProducer<>>(options);
  auto consumer = system.spawn<test::RecordingConsumer<>>("consumer", DemandMode::manual);
  system.subscribe(consumer, producer);
  scheduler.run_until_idle();
  system.send_info(consumer, std::size_t{3});
  system.send_info(consumer, std::size_t{5});
  system.send_info(consumer, std::size_t{2});
  scheduler.run_until_idle();
  CHECK(producer->demands.empty());
  system.forward_demand(producer);
  scheduler.run_until_idle();
  CHECK(producer->demands == std::vector<std::size_t>{3, 5, 2});
  system.send_info(consumer, std::size_t{7});
  scheduler.run_until_idle();
  CHECK(producer->demands == std::vector<std::size_t>{3, 5, 2, 7});
  CHECK(producer.stats().demand_owed == 17);  // the replayed demands are owed like the last
  system.stop();
}

TEST_CASE("demand dispatcher through stages: shuffle_demands_on_first_dispatch still delivers every event once") {
  System system(2);
  StageOptions options;
  options.name = "numbers";
  options.dispatcher = dispatch::Demand{.shuffle_demands_on_first_dispatch = true};
  auto producer = system.spawn<stages::NumberProducer>(options, 1, 10'000);
  auto left = system.spawn<test::RecordingConsumer<>>("left");
  auto right = system.spawn<test::RecordingConsumer<>>("right");
  system.subscribe(left, producer, {.max_demand = 10});
  system.subscribe(right, producer, {.max_demand = 10});
  system.wait();
  CHECK(left->received() + right->received() == 10'000);
}
