// The actor runtime on real oneTBB workers: completion, failure, scale, scheduling fairness.
#include "support.hpp"

#include <sluice/detail/timer_service.hpp>
#include <sluice/stages/number_processor.hpp>
#include <sluice/stages/number_producer.hpp>
#include <sluice/stages/sum_consumer.hpp>

#include <doctest/doctest.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <future>
#include <latch>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace sluice;
using namespace sluice::stages;

// Scheduling a stage cannot fail (README, "The runtime"): its mailbox counts it as scheduled
// already, so a schedule() that threw would leave it never to run again. Declared on the base,
// it binds every scheduler: an override may not drop the noexcept.
static_assert(noexcept(std::declval<Scheduler&>().schedule(std::declval<detail::ActorCore&>())));

namespace {

std::uint64_t sum_of_squares(std::uint64_t k) { return k * (k + 1) * (2 * k + 1) / 6; }

class ThrowOn final : public ProducerConsumer<std::int64_t, std::int64_t> {
 public:
  explicit ThrowOn(std::int64_t bad) : bad_(bad) {}
  void handle_events(std::span<std::int64_t> events, Emitter<std::int64_t>& out) override {
    for (auto x : events) {
      if (x == bad_) throw std::runtime_error("cannot handle " + std::to_string(x));
      out.emit(x);
    }
  }

 private:
  std::int64_t bad_;
};

// Counts its own destruction, and sums what it receives.
class FreedSink final : public Consumer<std::int64_t> {
 public:
  explicit FreedSink(int* freed) : freed_(freed) {}
  ~FreedSink() override {
    if (freed_ != nullptr) ++*freed_;
  }
  void handle_events(std::span<std::int64_t> events) override {
    for (auto x : events) sum += x;
  }
  std::int64_t sum = 0;

 private:
  int* freed_;
};

}  // namespace

TEST_CASE("seed workload: NumberProducer -> NumberProcessor -> SumConsumer sums the 31 squares below 1000") {
  System system(2);
  auto numbers = system.spawn<NumberProducer>("numbers", 1, 100);
  auto squares = system.spawn<NumberProcessor>("square", 1000);
  auto sum = system.spawn<SumConsumer>("sum");
  system.subscribe(squares, numbers);
  system.subscribe(sum, squares);
  system.wait();
  CHECK(sum->count() == 31);
  CHECK(sum->sum() == sum_of_squares(31));
  CHECK(system.running() == 0);
}

TEST_CASE("the seed stages' loops: the filter keeps exactly the squares a signed comparison keeps, wrapped ones included; the fill counts up; the sum wraps") {
  // keep_squares_below compares as unsigned with the sign bits flipped; this pins that it agrees
  // with `square < limit` on negative limits, squares that wrap negative (|x| >= 2^32), and the
  // extremes, and that it may square in place.
  constexpr std::int64_t int64_min = std::numeric_limits<std::int64_t>::min();
  constexpr std::int64_t int64_max = std::numeric_limits<std::int64_t>::max();
  const std::vector<std::int64_t> values{0, 1, -1, 31, 32, -32, 3'037'000'499, 3'037'000'500, std::int64_t{1} << 32,
                                         (std::int64_t{1} << 32) + 1, 6'074'001'000, int64_min, int64_max, -7};
  for (const std::int64_t limit : {int64_min, std::int64_t{-5}, std::int64_t{0}, std::int64_t{1}, std::int64_t{1000},
                                   std::int64_t{1} << 62, int64_max}) {
    CAPTURE(limit);
    std::vector<std::int64_t> expected;
    for (const std::int64_t x : values) {
      const auto square = static_cast<std::int64_t>(static_cast<std::uint64_t>(x) * static_cast<std::uint64_t>(x));
      if (square < limit) expected.push_back(square);
    }
    std::vector<std::int64_t> apart(values.size());  // as handle_events calls it: into the outgoing batch
    apart.resize(NumberProcessor::keep_squares_below(values, apart.data(), limit));
    CHECK(apart == expected);
    std::vector<std::int64_t> in_place = values;
    in_place.resize(NumberProcessor::keep_squares_below(in_place, in_place.data(), limit));
    CHECK(in_place == expected);
  }
  std::vector<std::int64_t> slots(5);
  NumberProducer::fill_from(slots, -2);
  CHECK(slots == std::vector<std::int64_t>{-2, -1, 0, 1, 2});
  CHECK(SumConsumer::add_all(10, slots) == 10);
  CHECK(SumConsumer::add_all(0, std::vector<std::int64_t>{int64_max, int64_max, 2}) == 0);  // modulo 2^64
}

TEST_CASE("busy time is measured only once the System is asked to, and then for every stage that ran") {
  // Handed off at once, the consumers run inside their producers' messages, and are timed apart.
  for (const HandOff hand_off : {HandOff::queued, HandOff::at_once}) {
    CAPTURE(static_cast<int>(hand_off));
    auto busy_ns = [hand_off](bool measured) {
      System system(2);
      if (measured) system.measure_busy_time();
      auto numbers = system.spawn<NumberProducer>("numbers", 1, 100'000);
      auto squares = system.spawn<NumberProcessor>("square", 1000);
      auto sum = system.spawn<SumConsumer>("sum");
      system.subscribe(squares, numbers, {.hand_off = hand_off});
      system.subscribe(sum, squares, {.hand_off = hand_off});
      system.wait();
      return std::vector<std::uint64_t>{numbers.stats().busy_ns, squares.stats().busy_ns, sum.stats().busy_ns};
    };
    CHECK(busy_ns(false) == std::vector<std::uint64_t>{0, 0, 0});
    for (const std::uint64_t ns : busy_ns(true)) CHECK(ns > 0);
  }
}

TEST_CASE("completion flows downstream: a finite stream ends every stage of a long run") {
  System system;
  auto numbers = system.spawn<NumberProducer>("numbers", 1, 1'000'000);
  auto squares = system.spawn<NumberProcessor>("square", std::int64_t{1} << 62);
  auto sum = system.spawn<SumConsumer>("sum");
  system.subscribe(squares, numbers);
  system.subscribe(sum, squares);
  system.wait();
  CHECK(sum->count() == 1'000'000);
  CHECK(sum->sum() == sum_of_squares(1'000'000));
  CHECK(numbers.stats().events_out == 1'000'000);
  CHECK(squares.stats().events_in == 1'000'000);
}

TEST_CASE("a stage error names the stage and the exception's message, and stops the pipeline") {
  System system(2);
  auto numbers = system.spawn<NumberProducer>("numbers", 1);  // endless: only the failure ends it
  auto faulty = system.spawn<ThrowOn>("faulty", 4242);
  auto sum = system.spawn<SumConsumer>("sum");
  system.subscribe(faulty, numbers);
  system.subscribe(sum, faulty);
  try {
    system.wait();
    FAIL("wait() should have thrown");
  } catch (const StageError& error) {
    CHECK(error.stage() == "faulty");
    CHECK(std::string(error.what()) == "stage 'faulty' failed: cannot handle 4242");
  }
  CHECK(system.running() == 0);
  // Every chunk of 500 before the failing event's, [4001..4500], reached the sink; the events
  // the failing chunk emitted before it threw were never sent.
  CHECK(sum->sum() == 4000ull * 4001 / 2);
}

TEST_CASE("10,000 stages in one process: a chain of 10,000 identity producer-consumers") {
  constexpr int chain_length = 10'000;
  constexpr std::int64_t events = 20'000;
  System system(2);
  auto numbers = system.spawn<NumberProducer>("numbers", 1, events);
  StageRef<test::Identity> previous;
  for (int i = 0; i < chain_length; ++i) {
    auto stage = system.spawn<test::Identity>("identity-" + std::to_string(i));
    if (previous) {
      system.subscribe(stage, previous);
    } else {
      system.subscribe(stage, numbers);
    }
    previous = stage;
  }
  auto sum = system.spawn<SumConsumer>("sum");
  system.subscribe(sum, previous);
  system.wait();
  CHECK(sum->count() == static_cast<std::uint64_t>(events));
  CHECK(sum->sum() == static_cast<std::uint64_t>(events * (events + 1) / 2));
  CHECK(previous->handled == static_cast<std::size_t>(events));
}

TEST_CASE("a terminate() that throws turns a normal stop into an error naming the stage, whatever it throws") {
  // GenServer: an exit from terminate/2 replaces a normal reason. Anything thrown is caught, so
  // that the stage still tells its peers (and a consumer handed a batch at once never throws
  // into its producer's slice).
  // The third case stops inside handle_events, so terminate() runs while the sink is handed a
  // batch at once, inside the producer's slice: the error is still the sink's.
  enum class Case { standard, other, other_handed_off };
  struct ThrowsOnTerminate final : Consumer<std::int64_t> {
    explicit ThrowsOnTerminate(Case which) : which_(which) {}
    void handle_events(std::span<std::int64_t> events) override {
      if (which_ == Case::other_handed_off && events.front() == 3) context().stop();
    }
    void terminate(const ExitReason&) override {
      if (which_ == Case::standard) throw std::runtime_error("disk full");
      throw 42;
    }
    Case which_;
  };
  for (const Case which : {Case::standard, Case::other, Case::other_handed_off}) {
    System system(2);
    auto numbers = system.spawn<NumberProducer>("numbers", 1, 10);
    auto sink = system.spawn<ThrowsOnTerminate>("sink", which);
    system.subscribe(sink, numbers, {.max_demand = 1, .min_demand = 0, .hand_off = HandOff::at_once});
    try {
      system.wait();
      FAIL("wait() should have thrown");
    } catch (const StageError& error) {
      CHECK(error.stage() == "sink");
      CHECK(std::string(error.what()) == (which == Case::standard ? "stage 'sink' failed: in terminate: disk full"
                                                                  : "stage 'sink' failed: in terminate: unknown exception"));
    }
  }
}

TEST_CASE("HandOff::at_once on the workers: a chain of mixed demands delivers every event, in order") {
  // Batches handed off at once into producer-consumers whose own consumers ask for less than
  // they get, so that some wait for demand (they then outlive the producer's dispatch), and
  // a chain longer than defaults::max_hand_off_depth, so that some are queued after all.
  constexpr std::int64_t events = 20'000;
  System system(2);
  auto numbers = system.spawn<NumberProducer>("numbers", 1, events);
  const SubscribeOptions wide{.max_demand = 10, .min_demand = 0, .hand_off = HandOff::at_once};
  const SubscribeOptions narrow{.max_demand = 1, .min_demand = 0, .hand_off = HandOff::at_once};
  StageRef<test::Identity> previous;
  for (int i = 0; i < 6; ++i) {
    auto stage = system.spawn<test::Identity>("identity-" + std::to_string(i));
    const SubscribeOptions& options = i % 2 == 0 ? wide : narrow;
    if (previous) {
      system.subscribe(stage, previous, options);
    } else {
      system.subscribe(stage, numbers, options);
    }
    previous = stage;
  }
  struct InOrder final : Consumer<std::int64_t> {
    void handle_events(std::span<std::int64_t> batch) override {
      for (auto x : batch) in_order = in_order && x == ++last;
    }
    std::int64_t last = 0;
    bool in_order = true;
  };
  auto sink = system.spawn<InOrder>("sink");
  system.subscribe(sink, previous, {.max_demand = 3, .min_demand = 1, .hand_off = HandOff::at_once});
  system.wait();
  CHECK(sink->last == events);
  CHECK(sink->in_order);
  CHECK(previous->handled == static_cast<std::size_t>(events));
}

TEST_CASE("a stage woken behind a long slice is run by another worker: the run-next slot keeps chains local, not serial") {
  // One broadcast slice wakes both consumers; the first runs next on the same worker. Each
  // holds its worker until the other has run, so both finish only if the other worker takes
  // the second while the first still runs (it may wait defaults::steal_delay first).
  struct Rendezvous final : Consumer<std::int64_t> {
    explicit Rendezvous(std::atomic<int>* arrived) : arrived_(arrived) {}
    void handle_events(std::span<std::int64_t>) override {
      arrived_->fetch_add(1);
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (arrived_->load() < 2 && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
      met = arrived_->load() == 2;
    }
    std::atomic<int>* arrived_;
    bool met = false;
  };
  System system(2);
  std::atomic<int> arrived{0};
  StageOptions broadcast;
  broadcast.name = "one";
  broadcast.dispatcher = dispatch::Broadcast{};
  auto one = system.spawn<NumberProducer>(broadcast, 1, 1);
  auto first = system.spawn<Rendezvous>("first", &arrived);
  auto second = system.spawn<Rendezvous>("second", &arrived);
  system.subscribe(first, one);
  system.subscribe(second, one);
  system.wait();
  CHECK(first->met);
  CHECK(second->met);
}

TEST_CASE("a stage that waits on an async_stream hands its run-next stage to another worker, so a task can call it") {
  // The waiter's cast wakes the callee into the waiter's run-next slot, which runs only after
  // the waiter's slice. The waiter then waits on a stream whose task calls the callee from a
  // thread of its own: as before a System::call, the wait must first hand the slot to another
  // worker, or the task's call is never answered.
  struct Callee final : Consumer<std::int64_t> {
    void handle_events(std::span<std::int64_t>) override {}
    void handle_cast(std::any&) override { ++casts; }
    std::any handle_call(std::any& request) override { return std::any_cast<std::int64_t>(request) * 10; }
    int casts = 0;
  };
  struct CastsThenStreams final : Consumer<std::int64_t> {
    void handle_events(std::span<std::int64_t>) override {}
    void handle_cast(std::any&) override {
      system->cast(*callee, std::any(1));
      auto call_callee = [this](std::int64_t x) {
        return std::any_cast<std::int64_t>(system->call(*callee, x, std::chrono::seconds(10)));
      };
      for (auto& result : async_stream(std::vector<std::int64_t>{2}, call_callee,
                                       {.max_concurrency = 1, .kind = TaskKind::blocking})) {
        answers.push_back(result.ok() ? result.value() : -1);
      }
    }
    std::any handle_call(std::any&) override { return answers; }
    System* system = nullptr;
    detail::ActorCore* callee = nullptr;
    std::vector<std::int64_t> answers;
  };
  System system(2);
  auto callee = system.spawn<Callee>("callee");
  auto waiter = system.spawn<CastsThenStreams>("waiter");
  waiter->system = &system;
  waiter->callee = &callee.core();
  system.start();
  // Answered: the callee is all but surely idle by the time the waiter's cast wakes it. (Should
  // its slice not have ended yet, the cast only queues, and the test passes without the slot.)
  CHECK(std::any_cast<std::int64_t>(system.call(callee, std::any(std::int64_t{0}))) == 0);
  system.cast(waiter, std::any(0));
  // Queued behind the cast, so answered once the stream has ended.
  CHECK(std::any_cast<std::vector<std::int64_t>>(system.call(waiter, std::any(0), std::chrono::seconds(30))) ==
        std::vector<std::int64_t>{20});
  system.stop();
  system.wait();
  CHECK(callee->casts == 1);
}

// A stage that maps each batch through an async_stream of `task`, iterated in its callback.
template <auto task>
struct StreamsEachBatch final : ProducerConsumer<std::int64_t, std::int64_t> {
  void handle_events(std::span<std::int64_t> events, Emitter<std::int64_t>& out) override {
    for (auto& result : async_stream(events, task, {.max_concurrency = 2, .timeout = std::chrono::hours(1)}))
      out.emit(result.value());
  }
};

std::int64_t square_now(std::int64_t x) { return x * x; }

Task<std::int64_t> square_later(std::int64_t x) {
  co_await sleep_for(std::chrono::microseconds(100));
  co_return x * x;
}

// A CPU task that sleeps on a stream of its own: x squared by a coroutine task.
std::int64_t square_in_nested_stream(std::int64_t x) {
  std::vector<std::int64_t> one{x};
  std::int64_t square = 0;
  for (auto& result : async_stream(one, square_later, {.timeout = std::chrono::hours(1)})) square = result.value();
  return square;
}

// Squares 1..4000 through Stage, in batches of 4 handed on at once, and checks the sum.
template <class Stage>
void check_squares_through() {
  System system(2);
  auto sum = from<NumberProducer>(system, 1, 4000) |
             via<Stage>().with({.max_demand = 4, .min_demand = 0, .hand_off = HandOff::at_once}) |
             into<SumConsumer>().with({.hand_off = HandOff::at_once});
  system.wait();
  CHECK(sum->count() == 4000);
  CHECK(sum->sum() == 4000ull * 4001 * 8001 / 6);
}

TEST_CASE("tasks of a stream iterated in a stage's callback run while the stage waits, though oneTBB counts its worker busy") {
  // The stage's worker sleeps on the stream, and oneTBB still counts it busy: with no other
  // work in the process it wakes no worker for the arena's tasks. CPU tasks used to wait for
  // the starvation fallback, a whole timeout (an hour here), and a coroutine's resumption for
  // ever: the test hangs until ctest's timeout. Batches handed on at once keep the System's
  // arena empty while the stage waits, and each batch is a new stream, whose CPU tasks are not
  // yet measured short enough to run on the waiting thread. Whether a worker happens to be
  // awake varies: without a stand-in, the CPU case hung in 6 of 8 runs.
  SUBCASE("CPU tasks") { check_squares_through<StreamsEachBatch<square_now>>(); }
  SUBCASE("coroutine tasks") { check_squares_through<StreamsEachBatch<square_later>>(); }
  // The stage's stand-in runs a CPU task that sleeps on a stream in turn: that stream's
  // resumptions need a stand-in of their own (with one stand-in in all, this hung in 5 of 5
  // runs of a program doing the same).
  SUBCASE("CPU tasks that each iterate a coroutine stream") {
    check_squares_through<StreamsEachBatch<square_in_nested_stream>>();
  }
}

TEST_CASE("coroutine streams nested in the CPU tasks of a stream on the main thread run: each thread asleep on one has a stand-in") {
  // The main thread is no oneTBB worker, but the CPU tasks run on one (and on stand-ins), and
  // each sleeps on its own stream in turn, up to four at once: with one stand-in in all, the
  // resumptions of the streams found no thread (5 of 5 runs hung).
  std::vector<std::int64_t> input(400);
  std::iota(input.begin(), input.end(), std::int64_t{1});
  std::int64_t sum = 0;
  for (auto& result : async_stream(input, square_in_nested_stream, {.max_concurrency = 4, .timeout = std::chrono::hours(1)}))
    sum += result.value();
  CHECK(sum == std::int64_t{400} * 401 * 801 / 6);
}

// Polls `holds` until it does, for 10 s at most: the tests below fail rather than hang when a
// stage never runs.
template <class Holds>
bool eventually(Holds holds) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!holds() && std::chrono::steady_clock::now() < give_up) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return holds();
}

// On every cast it gets, casts to `peer` (itself, for a stage that keeps itself busy), and on the
// first also to `wake`.
struct Caster final : Consumer<std::int64_t> {
  void handle_events(std::span<std::int64_t>) override {}
  void handle_cast(std::any&) override {
    casts.fetch_add(1);
    system->cast(*peer, std::any(0));
    if (wake != nullptr) system->cast(*std::exchange(wake, nullptr), std::any(0));
  }
  System* system = nullptr;
  detail::ActorCore* peer = nullptr;
  detail::ActorCore* wake = nullptr;
  std::atomic<std::uint64_t> casts{0};
};

// Raises its flag when cast to.
struct CastFlag final : Consumer<std::int64_t> {
  void handle_events(std::span<std::int64_t>) override {}
  void handle_cast(std::any&) override { cast.store(true); }
  std::atomic<bool> cast{false};
};

TEST_CASE("on one worker, a stage woken from outside runs while an endless chain keeps the worker busy") {
  // Once a task waits in oneTBB's FIFO queue (this message, a timer's, a stop), the chain's
  // continuation goes behind it there, not to the worker's own deque, which oneTBB runs first:
  // a chain spawning there starved every task enqueued from outside for as long as the stream
  // ran.
  struct Flags final : Consumer<std::int64_t> {
    Flags(std::atomic<bool>* on_events, std::atomic<bool>* on_info) : on_events_(on_events), on_info_(on_info) {}
    void handle_events(std::span<std::int64_t>) override { on_events_->store(true); }
    void handle_info(std::any&) override { on_info_->store(true); }
    std::atomic<bool>* on_events_;
    std::atomic<bool>* on_info_;
  };
  for (const std::size_t max_demand : {std::size_t{1000}, std::size_t{1}}) {
    CAPTURE(max_demand);
    System system(1);
    const StepOptions demand{.max_demand = max_demand};
    std::atomic<bool> flowing{false};
    std::atomic<bool> unused{false};
    std::atomic<bool> pinged{false};
    from<NumberProducer>(system, std::int64_t{1}) | via<NumberProcessor>(std::int64_t{1} << 62).with(demand) |
        into<Flags>(&flowing, &unused).with(demand);
    auto other = system.spawn<Flags>("other", &unused, &pinged);
    system.start();
    while (!flowing.load()) std::this_thread::yield();
    system.send_info(other, std::any(1));
    CHECK(eventually([&] { return pinged.load(); }));
    system.stop();
    system.wait();
  }
}

TEST_CASE("on one worker, a stage that keeps sending itself messages yields to stages woken from inside and outside") {
  // Its slices always end with messages left, so each yields after its budget (32 messages). With
  // nothing waiting in oneTBB's queue it stays on the worker, behind the stage it woke (X); once
  // a message from outside has woken Y, the next yield goes behind Y's task in oneTBB's queue.
  System system(1);
  auto busy = system.spawn<Caster>("busy");
  auto x = system.spawn<CastFlag>("x");
  auto y = system.spawn<CastFlag>("y");
  busy->system = &system;
  busy->peer = &busy.core();
  busy->wake = &x.core();
  system.start();
  system.cast(busy, std::any(0));
  CHECK(eventually([&] { return x->cast.load(); }));
  // Well past its first slices, so that the stage has yielded with nothing waiting.
  CHECK(eventually([&] { return busy->casts.load() >= 1000; }));
  system.cast(y, std::any(0));
  CHECK(eventually([&] { return y->cast.load(); }));
  system.stop();
  system.wait();
}

TEST_CASE("on one worker, a stage queued behind an endless ping-pong between two stages still runs") {
  // A and B cast to each other forever, each waking the other into the run-next slot; X, woken
  // by A's first cast behind B, waits in the worker's own queue, where only the worker itself or
  // that queue's helper task can take it. A chain with nothing waiting in oneTBB's queue keeps
  // its worker past 64 slices, so the helper must count as waiting there: the chain then yields
  // to it, and it runs X.
  System system(1);
  auto a = system.spawn<Caster>("a");
  auto b = system.spawn<Caster>("b");
  auto x = system.spawn<CastFlag>("x");
  a->system = b->system = &system;
  a->peer = &b.core();
  b->peer = &a.core();
  a->wake = &x.core();
  system.start();
  system.cast(a, std::any(0));
  CHECK(eventually([&] { return x->cast.load(); }));
  system.stop();
  system.wait();
}

// Sanitizers hold freed memory back (ASan's quarantine), so resident memory says nothing there.
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
TEST_CASE("a chain at max_demand 1 on one worker runs in flat memory: wakes beyond the run-next slot pile up nothing") {
  // Each event wakes the consumer (run next) and the producer (queued behind it) on the same
  // worker, which never returns to oneTBB's deque meanwhile. A task per wake used to pile up
  // there, about 250 bytes an event (260 MiB for these events).
  struct ResidentPeak final : Consumer<std::int64_t> {
    void handle_events(std::span<std::int64_t> events) override {
      count += events.size();
      if (count % 50'000 == 0) peak = std::max(peak, resident_bytes());
    }
    static std::size_t resident_bytes() {
      std::ifstream statm("/proc/self/statm");
      std::size_t size = 0;
      std::size_t resident = 0;
      statm >> size >> resident;
      return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    }
    std::size_t count = 0;
    std::size_t peak = 0;
  };
  constexpr std::int64_t events = 1'000'000;
  const std::size_t before = ResidentPeak::resident_bytes();
  System system(1);
  const StepOptions one_at_a_time{.max_demand = 1};
  auto sink = from<NumberProducer>(system, std::int64_t{1}, events) | via<NumberProcessor>(std::int64_t{1} << 62).with(one_at_a_time) |
              into<ResidentPeak>().with(one_at_a_time);
  system.wait();
  REQUIRE(sink->count == static_cast<std::size_t>(events));
  REQUIRE(sink->peak > 0);
  CHECK(sink->peak < before + 32 * 1024 * 1024);
}
#endif

TEST_CASE("a busy stage yields after a bounded number of messages, so others run in between") {
  // Two consumers with many queued messages, on a scheduler with a slice of 4 messages: their
  // slices interleave instead of one draining its whole mailbox first.
  struct Logger final : Consumer<std::int64_t> {
    Logger(std::vector<int>* log, int id) : log_(log), id_(id) {}
    void handle_events(std::span<std::int64_t>) override {}
    void handle_info(std::any&) override { log_->push_back(id_); }
    std::vector<int>* log_;
    int id_;
  };
  ManualScheduler scheduler(4);
  System system(scheduler);
  std::vector<int> log;
  auto first = system.spawn<Logger>("first", &log, 1);
  auto second = system.spawn<Logger>("second", &log, 2);
  for (int i = 0; i < 12; ++i) system.send_info(first, i);
  for (int i = 0; i < 12; ++i) system.send_info(second, i);
  scheduler.run_until_idle();
  CHECK(log == std::vector<int>{1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 1, 1, 2, 2, 2, 2});
  system.stop();
}

TEST_CASE("a stage's callbacks never run concurrently, and its messages are handled in order") {
  // Four producers feed one consumer on two workers; the consumer checks it is never entered
  // twice at once and that each producer's events arrive in order.
  struct Checker final : Consumer<std::int64_t> {
    void handle_events(std::span<std::int64_t> events) override {
      if (inside.exchange(true)) overlapped = true;
      for (auto x : events) {
        const auto producer = static_cast<std::size_t>(x % 4);
        if (x <= last[producer]) out_of_order = true;
        last[producer] = x;
        ++count;
      }
      inside = false;
    }
    std::atomic<bool> inside{false};
    bool overlapped = false;
    bool out_of_order = false;
    std::int64_t last[4] = {-1, -1, -1, -1};
    std::int64_t count = 0;
  };
  struct Strided final : Producer<std::int64_t> {
    explicit Strided(std::int64_t offset) : next(offset) {}
    void handle_demand(std::size_t demand, Emitter<std::int64_t>& out) override {
      for (; demand > 0 && next < 200'000; --demand, next += 4) out.emit(next);
      if (next >= 200'000) out.done();
    }
    std::int64_t next;
  };
  System system(2);
  auto checker = system.spawn<Checker>("checker");
  for (std::int64_t i = 0; i < 4; ++i) {
    auto producer = system.spawn<Strided>("strided-" + std::to_string(i), i);
    system.subscribe(checker, producer, {.max_demand = 50});
  }
  system.wait();
  CHECK_FALSE(checker->overlapped);
  CHECK_FALSE(checker->out_of_order);
  CHECK(checker->count == 200'000);
}

TEST_CASE("a callback may itself run a oneTBB algorithm, in the System's arena: a parallel_for over its batch") {
  // oneTBB users parallelise a heavy step inside it. Four chains run side by side, so that the
  // workers are busy with slices while the loops spread. Three workers, so that the System's
  // arena (three slots) differs from the default one (one per core) seen from inside the loop.
  struct ParallelSquares final : ProducerConsumer<std::int64_t, std::int64_t> {
    explicit ParallelSquares(std::atomic<bool>* outside_arena) : outside_arena_(outside_arena) {}
    void handle_events(std::span<std::int64_t> events, Emitter<std::int64_t>& out) override {
      std::vector<std::int64_t> squares(events.size());
      oneapi::tbb::parallel_for(std::size_t{0}, events.size(), [&](std::size_t i) {
        if (oneapi::tbb::this_task_arena::max_concurrency() != 3) outside_arena_->store(true);
        squares[i] = events[i] * events[i];
      });
      for (std::int64_t square : squares) out.emit(square);
    }
    std::atomic<bool>* outside_arena_;
  };
  constexpr std::int64_t events = 50'000;
  std::atomic<bool> outside_arena{false};
  System system(3);
  std::vector<StageRef<SumConsumer>> sums;
  for (int chain = 0; chain < 4; ++chain) {
    auto numbers = system.spawn<NumberProducer>("numbers-" + std::to_string(chain), 1, events);
    auto squares = system.spawn<ParallelSquares>("squares-" + std::to_string(chain), &outside_arena);
    auto sum = system.spawn<SumConsumer>("sum-" + std::to_string(chain));
    system.subscribe(squares, numbers, {.max_demand = 64});
    system.subscribe(sum, squares);
    sums.push_back(sum);
  }
  system.wait();
  for (const auto& sum : sums) {
    CHECK(sum->count() == static_cast<std::uint64_t>(events));
    CHECK(sum->sum() == sum_of_squares(events));
  }
  CHECK_FALSE(outside_arena.load());
  CHECK(system.running() == 0);
}

TEST_CASE("drain: sources stop, and every event already emitted reaches the sink") {
  System system(2);
  auto numbers = system.spawn<NumberProducer>("numbers", 1);  // endless
  auto sum = system.spawn<SumConsumer>("sum");
  system.subscribe(sum, numbers, {.max_demand = 100});
  system.start();
  while (sum.stats().events_in == 0) std::this_thread::yield();
  system.drain();
  system.wait();
  const auto emitted = numbers.stats().events_out;
  CHECK(sum->count() == emitted);
  CHECK(sum->sum() == emitted * (emitted + 1) / 2);
}

TEST_CASE("drain: a source that emits on its own (handle_info) after the drain has what it emits counted as discarded") {
  // 1..3 wait in its buffer for demand when the drain comes; 4 comes after it.
  ManualScheduler scheduler;
  System system(scheduler);
  auto ticker = system.spawn<test::QueueProducer<>>("ticker");
  auto consumer = system.spawn<test::RecordingConsumer<>>("consumer", DemandMode::manual);
  system.subscribe(consumer, ticker);
  system.send_info(ticker, std::vector<std::int64_t>{1, 2, 3});
  scheduler.run_until_idle();
  system.drain();
  system.send_info(ticker, std::vector<std::int64_t>{4});
  scheduler.run_until_idle();
  system.send_info(consumer, std::size_t{10});
  system.wait();
  CHECK(consumer->events() == test::Batch{1, 2, 3});
  CHECK(ticker.stats().discarded == 1);
}

namespace {

// Spawns a stage from its callback, the first time it is called, and blocks that first call
// until told to go on: a stage spawned by a callback still running when stop() came.
class SpawnsLate final : public Consumer<std::int64_t> {
 public:
  SpawnsLate(System& system, std::latch& stopped) : system_(system), stopped_(stopped) {}
  void handle_events(std::span<std::int64_t>) override {
    if (spawned_) return;
    spawned_ = true;
    started.count_down();
    stopped_.wait();
    system_.spawn<test::RecordingConsumer<>>("late");
  }
  std::latch started{1};

 private:
  System& system_;
  std::latch& stopped_;
  bool spawned_ = false;
};

}  // namespace

TEST_CASE("stop: a stage spawned after stop() by a callback still running is stopped too, so wait() returns") {
  System system(2);
  std::latch stopped(1);
  auto spawner = system.spawn<SpawnsLate>("spawner", system, stopped);
  system.subscribe(spawner, system.spawn<NumberProducer>("numbers", 1));
  system.start();
  spawner->started.wait();
  system.stop();
  stopped.count_down();
  system.wait();
  CHECK(system.running() == 0);
}

TEST_CASE("subscribing to a stage that is gone stops a permanent consumer with 'no such stage'") {
  ManualScheduler scheduler;
  System system(scheduler);
  auto numbers = system.spawn<NumberProducer>("numbers", 1, 10);
  auto first = system.spawn<SumConsumer>("first");
  system.subscribe(first, numbers);
  scheduler.run_until_idle();
  REQUIRE(first->count() == 10);  // numbers completed and stopped
  auto late = system.spawn<SumConsumer>("late");
  system.subscribe(late, numbers);
  CHECK_THROWS_WITH_AS(system.wait(), "no such stage 'numbers'", StageError);
}

TEST_CASE("a subscription refused for its event types fails the consumer, named, not the producer") {
  ManualScheduler scheduler;
  System system(scheduler);
  StageOptions registered;
  registered.name = "numbers";
  registered.register_name = true;
  auto numbers = system.spawn<NumberProducer>(registered, 1, 10);
  auto words = system.spawn<test::RecordingConsumer<std::string>>("words");
  system.subscribe(words, "numbers");
  CHECK_THROWS_WITH_AS(system.wait(), "stage 'words' failed: its subscription to 'numbers' was refused: the event types do not match", StageError);
}

namespace {

// Emits 1..6 and says it is done on its first demand; an info emits one more event.
class EmitsAfterDone final : public Producer<std::int64_t> {
 public:
  void handle_demand(std::size_t, Emitter<std::int64_t>& out) override {
    for (std::int64_t x = 1; x <= 6; ++x) out.emit(x);
    out.done();
  }
  void handle_info(std::any&, Emitter<std::int64_t>& out) override { out.emit(100); }
};

// Passes events on; an info emits one more.
class PassesAndEmitsOnInfo final : public ProducerConsumer<std::int64_t, std::int64_t> {
 public:
  void handle_events(std::span<std::int64_t> events, Emitter<std::int64_t>& out) override { out.emit_all(events); }
  void handle_info(std::any&, Emitter<std::int64_t>& out) override { out.emit(100); }
};

}  // namespace

TEST_CASE("a producer that emits after done() fails, naming itself, and the event is not delivered") {
  // done() says no more events come; 4..6 wait in the buffer, so the stage is still up.
  ManualScheduler scheduler;
  System system(scheduler);
  auto producer = system.spawn<EmitsAfterDone>("late");
  auto consumer = system.spawn<test::RecordingConsumer<>>("consumer", DemandMode::manual);
  system.subscribe(consumer, producer);
  scheduler.run_until_idle();
  system.send_info(consumer, std::size_t{3});
  scheduler.run_until_idle();
  REQUIRE(consumer->events() == test::Batch{1, 2, 3});
  system.send_info(producer, 0);
  CHECK_THROWS_WITH_AS(system.wait(), "stage 'late' failed: emitted 1 event after done()", StageError);
  CHECK(consumer->events() == test::Batch{1, 2, 3});
}

TEST_CASE("a producer-consumer that emits after its input ended and it held no work fails, naming itself") {
  // Its input ended with nothing held (holds_work() false): its output has ended too, and 4..6
  // wait in its buffer, so the stage is still up.
  ManualScheduler scheduler;
  System system(scheduler);
  auto middle = system.spawn<PassesAndEmitsOnInfo>("middle");
  auto consumer = system.spawn<test::RecordingConsumer<>>("consumer", DemandMode::manual);
  system.subscribe(middle, system.spawn<NumberProducer>("numbers", 1, 6));
  system.subscribe(consumer, middle);
  scheduler.run_until_idle();
  system.send_info(consumer, std::size_t{3});
  scheduler.run_until_idle();
  REQUIRE(consumer->events() == test::Batch{1, 2, 3});
  system.send_info(middle, 0);
  CHECK_THROWS_WITH_AS(system.wait(), "stage 'middle' failed: emitted 1 event after its input ended and holds_work() said it held none",
                       StageError);
  CHECK(consumer->events() == test::Batch{1, 2, 3});
}

namespace {

// Knows the next stage of its own kind, as a ring of peers would.
class Peer final : public Consumer<std::int64_t> {
 public:
  void handle_events(std::span<std::int64_t> events) override { received += events.size(); }
  StageRef<Peer> next;
  std::size_t received = 0;
};

}  // namespace

namespace {

// Waits for its own System from handle_events, and records what that said.
class WaitsForItsSystem final : public Consumer<std::int64_t> {
 public:
  explicit WaitsForItsSystem(System& system) : system_(system) {}
  void handle_events(std::span<std::int64_t>) override {
    try {
      system_.wait();
      error = "returned";
    } catch (const std::logic_error& e) {
      error = e.what();
    }
  }
  std::string error;

 private:
  System& system_;
};

}  // namespace

TEST_CASE("System::wait() from a stage's callback is refused at once, rather than waiting for ever") {
  ManualScheduler scheduler;
  System system(scheduler);
  auto waiter = system.spawn<WaitsForItsSystem>("waiter", system);
  system.subscribe(waiter, system.spawn<NumberProducer>("numbers", 1, 10));
  system.wait();
  CHECK(waiter->error ==
        "System::wait() called from stage 'waiter' of the same System: it could never return, as that stage cannot stop while it waits");
}

TEST_CASE("a stage may hold StageRefs to stages of its own type") {
  ManualScheduler scheduler;
  System system(scheduler);
  auto first = system.spawn<Peer>("first");
  auto second = system.spawn<Peer>("second");
  first->next = second;
  system.subscribe(second, system.spawn<NumberProducer>("numbers", 1, 10));
  scheduler.run_until_idle();
  CHECK(first->next.name() == "second");
  CHECK(first->next->received == 10);
  system.stop();
}

TEST_CASE("a stopped stage is freed once nothing refers to it; a StageRef keeps it, and its state, until dropped") {
  ManualScheduler scheduler;
  System system(scheduler);
  int freed = 0;
  auto kept = system.spawn<FreedSink>("kept", &freed);
  system.subscribe(kept, system.spawn<NumberProducer>("numbers", 1, 100));
  {
    auto dropped = system.spawn<FreedSink>("dropped", &freed);
    system.subscribe(dropped, system.spawn<NumberProducer>("more numbers", 1, 100));
  }
  CHECK(freed == 0);  // running stages hold themselves
  system.wait();
  // The System still runs; only the stage nobody holds is gone.
  CHECK(freed == 1);
  CHECK(kept->sum == 5050);
  CHECK(kept.stats().events_in == 100);
  kept = {};
  CHECK(freed == 2);
}

TEST_CASE("a StageRef outlives its System, and a moved-from StageRef is empty") {
  int freed = 0;
  StageRef<FreedSink> kept;
  {
    ManualScheduler scheduler;
    System system(scheduler);
    auto sink = system.spawn<FreedSink>("sink", &freed);
    system.subscribe(sink, system.spawn<NumberProducer>("numbers", 1, 100));
    system.wait();
    kept = std::move(sink);
    CHECK_FALSE(sink);
  }
  REQUIRE(kept);
  CHECK(kept->sum == 5050);
  CHECK(kept.name() == "sink");
  CHECK(freed == 0);
  kept = {};
  CHECK(freed == 1);
}

namespace {

struct Quitter final : Consumer<std::int64_t> {
  void handle_events(std::span<std::int64_t>) override {}
  void handle_cast(std::any&) override { context().stop(); }
};

StageOptions broadcast_named(std::string name) {
  StageOptions options;
  options.name = std::move(name);
  options.dispatcher = dispatch::Broadcast{};
  return options;
}

}  // namespace

// GenStage: a subscription to a consumer that has exited is never taken up; the producer must
// not keep it, or a broadcast waits for its demand for ever.
TEST_CASE("subscribing a consumer that has stopped leaves the producer's other consumers served") {
  ManualScheduler scheduler;
  System system(scheduler);
  auto producer = system.spawn<NumberProducer>(broadcast_named("numbers"), 1, 100);
  auto live = system.spawn<FreedSink>("live", nullptr);
  auto gone = system.spawn<Quitter>("gone");
  system.cast(gone, 0);
  scheduler.run_until_idle();
  system.subscribe(live, producer);
  system.subscribe(gone, producer);
  system.wait();
  CHECK(live->sum == 5050);
}

// 1..100 to every consumer, recording who subscribes and who cancels.
class RecordingNumbers final : public Producer<std::int64_t> {
 public:
  void handle_demand(std::size_t demand, Emitter<std::int64_t>& out) override {
    for (; demand > 0 && next_ <= 100; --demand) out.emit(next_++);
    if (next_ > 100) out.done();
  }
  void handle_subscribe(const SubscriptionInfo& info) override { subscribed.emplace_back(info.peer_name); }
  void handle_cancel(const SubscriptionInfo& info, const ExitReason&) override { cancelled.emplace_back(info.peer_name); }
  std::vector<std::string> subscribed;
  std::vector<std::string> cancelled;

 private:
  std::int64_t next_ = 1;
};

// Once stages run, the consumer sends its subscription to the producer itself, as a GenStage
// consumer does: one from a consumer that stops before taking it up never reaches the producer.
TEST_CASE("a subscription made once stages run, by a consumer that then stops, never reaches the producer") {
  ManualScheduler scheduler;  // one message a step
  System system(scheduler);
  auto producer = system.spawn<RecordingNumbers>(broadcast_named("numbers"));
  auto live = system.spawn<FreedSink>("live", nullptr);
  auto stopping = system.spawn<Quitter>("stopping");
  system.cast(stopping, 0);
  system.cast(stopping, 0);
  REQUIRE(scheduler.run_once());  // stages run now: `stopping` stops, its second cast still queued
  system.subscribe(live, producer);
  system.subscribe(stopping, producer);
  system.wait();
  CHECK(live->sum == 5050);
  CHECK(producer->subscribed == std::vector<std::string>{"live"});
  CHECK(producer->cancelled.empty());
}

// Before any stage runs, the System tells both ends at once, so that a graph wired before the
// first step is complete before an event flows. A consumer whose stop is already queued then
// hands the subscription back with a cancel.
TEST_CASE("a subscription wired before stages run, by a consumer about to stop, is handed back with a cancel") {
  ManualScheduler scheduler;
  System system(scheduler);
  auto producer = system.spawn<RecordingNumbers>(broadcast_named("numbers"));
  auto live = system.spawn<FreedSink>("live", nullptr);
  auto stopping = system.spawn<Quitter>("stopping");
  system.cast(stopping, 0);
  system.subscribe(live, producer);
  system.subscribe(stopping, producer);
  system.wait();
  CHECK(live->sum == 5050);
  CHECK(producer->subscribed == std::vector<std::string>{"live", "stopping"});
  CHECK(producer->cancelled == std::vector<std::string>{"stopping"});
}

// A stage that arms a timer per task and cancels it when the task ends (async_map's timeout)
// must not leave an entry behind for each cancelled timer until its deadline: memory stays flat.
TEST_CASE("timers: cancelled timers do not pile up until their deadlines; live ones still fire") {
  detail::TimerService timers;
  const auto far = detail::TimerService::Clock::now() + std::chrono::hours(1);
  std::atomic<int> fired{0};
  std::vector<detail::TimerService::TimerId> live;
  for (int i = 0; i < 100; ++i) live.push_back(timers.schedule(far, [&] { ++fired; }));
  bool all_cancelled = true;
  for (int i = 0; i < 100'000; ++i) all_cancelled = timers.cancel(timers.schedule(far, [&] { ++fired; })) && all_cancelled;
  CHECK(all_cancelled);
  CHECK(timers.held() >= 100);  // the live ones are kept
  CHECK(timers.held() <= 300);  // the cancelled ones are dropped as they go

  std::promise<void> due;
  timers.schedule(detail::TimerService::Clock::now(), [&] { due.set_value(); });
  due.get_future().wait();  // a timer due now still runs
  for (const auto id : live) CHECK(timers.cancel(id));  // and the far ones were never lost
  CHECK(fired == 0);
}

// README, "GenServer-style actors": a call made from a stage's callback holds that stage's worker,
// and the callee runs on another worker meanwhile. oneTBB shares its workers among all the
// arenas of a process, so that must hold while another arena keeps a worker busy (the async
// runtime's CPU tasks, a user's own oneTBB work): here a task spins in an arena of its own until
// the callee has answered. With only the System's two threads' worth of workers in the process,
// the spinning task held the one the callee needed, and the call timed out.
TEST_CASE("a call from a callback is answered while another arena keeps a oneTBB worker busy") {
  using namespace std::chrono_literals;
  struct Callee final : Server {
    std::any handle_call(std::any& request) override { return request; }
  };
  struct Caller final : Server {
    Caller(System* system, StageRef<Callee> callee) : system_(system), callee_(std::move(callee)) {}
    void handle_cast(std::any& request) override {
      try {
        answer_ = system_->call(callee_, request, 5s);
      } catch (const CallError& error) {
        answer_ = std::string(error.what());
      }
    }
    std::any handle_call(std::any&) override { return answer_; }
    System* system_;
    StageRef<Callee> callee_;
    std::any answer_;
  };
  System system(2);
  auto callee = system.spawn<Callee>("callee");
  auto caller = system.spawn<Caller>("caller", &system, callee);
  system.start();
  std::atomic<bool> spinning{false};
  std::atomic<bool> answered{false};
  oneapi::tbb::task_arena busy(1, 0);  // no master slot: the task runs on a worker
  busy.enqueue([&] {
    spinning = true;
    // Bounded, so that a failing run ends: the call gives up well before.
    const auto give_up = std::chrono::steady_clock::now() + 10s;
    while (!answered && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
    spinning = false;
  });
  while (!spinning) std::this_thread::yield();
  system.cast(caller, 7);
  const std::any answer = system.call(caller, 0, 10s);
  answered = true;
  const int* value = std::any_cast<int>(&answer);
  CHECK_MESSAGE(value != nullptr, (answer.type() == typeid(std::string) ? std::any_cast<std::string>(answer) : "no answer"));
  if (value != nullptr) CHECK(*value == 7);
  while (spinning) std::this_thread::yield();
  system.stop();
}
