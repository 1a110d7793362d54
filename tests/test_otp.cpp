// OTP semantics for stages: cancel modes, crashes, the registry, and GenServer-style calls,
// casts, info messages, timers and monitors. Each case names the rule it pins down.
#include "support.hpp"

#include <sluice/stages/number_producer.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <latch>
#include <map>
#include <condition_variable>
#include <mutex>
#include <semaphore>
#include <stdexcept>

using namespace sluice;
using namespace std::chrono_literals;

namespace {

// A producer that fails on its first demand.
struct Failing final : Producer<std::int64_t> {
  void handle_demand(std::size_t, Emitter<std::int64_t>&) override { throw std::runtime_error("boom"); }
};

// A producer contained by a temporary-restart supervisor, so that its failure reaches its
// consumers as a cancellation and not as a System-wide failure.
template <class P, class... Args>
detail::ActorRef contained(System& system, const std::string& name, Args... args) {
  auto supervisor = start_supervisor(system, {.name = name + "-sup"});
  return supervisor.start_child(child<P>(name, args...).restart(Restart::temporary));
}

struct Outcome {
  std::vector<ExitReason> cancels;
  std::size_t still_running;
  std::optional<ExitReason> failure;  // a stopped consumer fails its System: it is linked
};

Outcome consumer_after_producer_exit(CancelMode mode, bool producer_fails) {
  ManualScheduler scheduler;
  System system(scheduler);
  const detail::ActorRef producer = producer_fails ? contained<Failing>(system, "producer")
                                                   : contained<stages::NumberProducer>(system, "producer", 1, 5);
  auto consumer = system.spawn<test::RecordingConsumer<>>("consumer");
  system.subscribe_untyped(consumer.core(), *producer, {.cancel = mode});
  scheduler.run_until_idle();
  Outcome outcome{consumer->cancels, system.running(), system.failure()};
  system.stop();
  return outcome;
}

}  // namespace

TEST_CASE("cancel permanent (the default): the consumer stops when its producer fails, with the producer's reason") {
  ManualScheduler scheduler;
  System system(scheduler);
  const auto producer = contained<Failing>(system, "producer");
  auto consumer = system.spawn<test::RecordingConsumer<>>("consumer");
  system.subscribe_untyped(consumer.core(), *producer, {});
  CHECK_THROWS_WITH_AS(system.wait(), "stage 'producer' failed: boom", StageError);
  REQUIRE(consumer->cancels.size() == 1);
  CHECK(consumer->cancels[0].kind == ExitReason::Kind::error);
}

TEST_CASE("cancel transient: the consumer stops only on an abnormal reason") {
  auto failed = consumer_after_producer_exit(CancelMode::transient, true);
  REQUIRE(failed.cancels.size() == 1);
  CHECK(failed.cancels[0].kind == ExitReason::Kind::error);
  REQUIRE(failed.failure);  // the consumer stopped, with the producer's reason
  CHECK(failed.failure->describe() == "stage 'producer' failed: boom");
  auto completed = consumer_after_producer_exit(CancelMode::transient, false);
  REQUIRE(completed.cancels.size() == 1);
  CHECK(completed.cancels[0].kind == ExitReason::Kind::normal);
  CHECK_FALSE(completed.failure);
  CHECK(completed.still_running == 2);  // the supervisor and the consumer, still running
}

TEST_CASE("cancel temporary: the consumer never stops; handle_cancel tells it what happened") {
  auto failed = consumer_after_producer_exit(CancelMode::temporary, true);
  REQUIRE(failed.cancels.size() == 1);
  CHECK(failed.cancels[0].describe() == "stage 'producer' failed: boom");
  CHECK_FALSE(failed.failure);
  CHECK(failed.still_running == 2);
}

namespace {

// Emits on demand, and fails when sent any info message.
struct FailsOnInfo final : Producer<std::int64_t> {
  void handle_demand(std::size_t demand, Emitter<std::int64_t>& out) override {
    for (std::size_t i = 0; i < demand; ++i) out.emit(next++);
  }
  void handle_info(std::any&, Emitter<std::int64_t>&) override { throw std::runtime_error("boom"); }
  std::int64_t next = 0;
};

// Passes events on, and records what it was told, in order: each batch's size, then the cancel.
struct RecordsOrder final : ProducerConsumer<std::int64_t, std::int64_t> {
  void handle_events(std::span<std::int64_t> events, Emitter<std::int64_t>& out) override {
    told.push_back("events " + std::to_string(events.size()));
    out.emit_all(events);
  }
  void handle_cancel(const SubscriptionInfo&, const ExitReason& reason) override { told.push_back("cancel " + reason.describe()); }
  std::vector<std::string> told;
};

}  // namespace

TEST_CASE("a producer-consumer handles the batches its producer sent before failing, then stops with its reason") {
  // GenStage's schedule_cancel queues a producer-consumer's cancel behind the events waiting in
  // it: they are handled (once demand comes) before handle_cancel, and a permanent subscription
  // then stops the stage. The 10 events sent before the producer failed wait for the consumer's
  // demand, and are not lost.
  ManualScheduler scheduler;
  System system(scheduler);
  const auto producer = contained<FailsOnInfo>(system, "producer");
  auto middle = system.spawn<RecordsOrder>("middle");
  auto consumer = system.spawn<test::RecordingConsumer<>>("consumer", DemandMode::manual);
  system.subscribe_untyped(middle.core(), *producer, {.max_demand = 10, .min_demand = 5});
  system.subscribe(consumer, middle);
  scheduler.run_until_idle();
  system.send_info(*producer, 0);
  scheduler.run_until_idle();
  CHECK(middle->told.empty());
  CHECK_FALSE(middle.core().has_stopped());
  system.send_info(consumer, std::size_t{10});
  scheduler.run_until_idle();
  CHECK(consumer->events() == test::iota_batch(0, 9));
  CHECK(middle->told == std::vector<std::string>{"events 10", "cancel stage 'producer' failed: boom"});
  REQUIRE(system.failure());
  CHECK(system.failure()->describe() == "stage 'producer' failed: boom");
}

namespace {

// Leaves its only subscription with `reason` at its first batch, and records what its
// handle_cancel hears.
struct CancelsWith final : Consumer<std::int64_t> {
  explicit CancelsWith(ExitReason reason) : reason(std::move(reason)) {}
  DemandMode handle_subscribe(const SubscriptionInfo& info) override {
    subscription = info.id;
    return DemandMode::automatic;
  }
  void handle_events(std::span<std::int64_t>) override {
    if (!cancelled) context().cancel(subscription, reason);
    cancelled = true;
  }
  void handle_cancel(const SubscriptionInfo&, const ExitReason& heard) override { cancels.push_back(heard.describe()); }
  ExitReason reason;
  SubscriptionId subscription = 0;
  bool cancelled = false;
  std::vector<std::string> cancels;
};

}  // namespace

TEST_CASE("a consumer's own cancel comes back through its producer: handle_cancel hears the reason, and the cancel mode applies") {
  // GenStage.cancel/3 is a message to the producer, which answers {:cancel, reason}; the
  // consumer's handle_cancel then runs (gen_stage_test "handle_cancel/3"), and invoke_cancel
  // stops it on a permanent subscription, on a transient one when the reason is abnormal, never
  // on a temporary one. sluice's permanent subscription left normally is a completion.
  struct Case {
    CancelMode mode;
    ExitReason reason;
    bool stops;
  };
  const ExitReason enough = ExitReason::error("consumer", "enough");
  for (const Case& c : {Case{CancelMode::permanent, enough, true}, Case{CancelMode::permanent, ExitReason::normal(), true},
                        Case{CancelMode::transient, enough, true}, Case{CancelMode::transient, ExitReason::normal(), false},
                        Case{CancelMode::temporary, enough, false}}) {
    CAPTURE(static_cast<int>(c.mode));
    CAPTURE(c.reason.describe());
    ManualScheduler scheduler;
    System system(scheduler);
    auto producer = system.spawn<stages::NumberProducer>("numbers", 0);
    auto consumer = system.spawn<CancelsWith>("consumer", c.reason);
    system.subscribe(consumer, producer, {.cancel = c.mode});
    scheduler.run_until_idle();
    CHECK(consumer->cancels == std::vector<std::string>{c.reason.describe()});
    CHECK(consumer.core().has_stopped() == c.stops);
    const bool fails = c.reason.is_abnormal() && c.stops;  // a consumer that stops with an error fails its System
    CHECK(system.failure().has_value() == fails);
    system.stop();
  }
}

TEST_CASE("normal completion, shutdown and failure are distinct reasons") {
  CHECK_FALSE(ExitReason::normal().is_abnormal());
  CHECK_FALSE(ExitReason::shutdown().is_abnormal());
  CHECK(ExitReason::error("s", "m").is_abnormal());
  CHECK(ExitReason::normal().describe() == "normal");
  CHECK(ExitReason::shutdown().describe() == "shutdown");
  CHECK(ExitReason::error("s", "m").describe() == "stage 's' failed: m");
}

TEST_CASE("a producer survives a consumer's crash; its handle_cancel receives the reason; later events go to the other consumer") {
  struct CrashOnFirst final : Consumer<std::int64_t> {
    void handle_events(std::span<std::int64_t>) override { throw std::runtime_error("consumer crashed"); }
  };
  ManualScheduler scheduler;
  System system(scheduler);
  auto producer = system.spawn<test::QueueProducer<>>("producer");
  auto supervisor = start_supervisor(system, {.name = "sup"});
  const auto crashing = supervisor.start_child(child<CrashOnFirst>("crashing").restart(Restart::temporary));
  auto survivor = system.spawn<test::RecordingConsumer<>>("survivor");
  system.subscribe_untyped(*crashing, producer.core(), {.max_demand = 10});
  scheduler.run_until_idle();
  system.subscribe(survivor, producer, {.max_demand = 10});
  scheduler.run_until_idle();
  system.send_info(producer, test::iota_batch(1, 5));  // all to `crashing`: it has the larger demand
  scheduler.run_until_idle();
  REQUIRE(producer->cancels.size() == 1);
  CHECK(producer->cancels[0].describe() == "stage 'crashing' failed: consumer crashed");
  system.send_info(producer, test::iota_batch(6, 8));
  scheduler.run_until_idle();
  CHECK(survivor->batches == std::vector<test::Batch>{{6, 7, 8}});  // 1..5 were lost with the crash
  CHECK_FALSE(system.failure());
  system.stop();
}

TEST_CASE("subscribing to a stage that is gone: transient stops with 'no such stage', temporary keeps running") {
  for (auto mode : {CancelMode::transient, CancelMode::temporary}) {
    ManualScheduler scheduler;
    System system(scheduler);
    auto consumer = system.spawn<test::RecordingConsumer<>>("consumer");
    system.subscribe(consumer, "nobody", {.cancel = mode});
    scheduler.run_until_idle();
    REQUIRE(consumer->cancels.size() == 1);
    CHECK(consumer->cancels[0].describe() == "no such stage 'nobody'");
    if (mode == CancelMode::transient) {
      CHECK(system.failure()->describe() == "no such stage 'nobody'");
    } else {
      CHECK(system.running() == 1);
      CHECK_FALSE(system.failure());
    }
    system.stop();
  }
}

TEST_CASE("registry: a named stage is looked up and subscribed to by name; duplicates are refused; the name is freed when it stops") {
  ManualScheduler scheduler;
  System system(scheduler);
  StageOptions options;
  options.name = "numbers";
  options.register_name = true;
  auto numbers = system.spawn<stages::NumberProducer>(options, 1, 10);
  CHECK(system.whereis("numbers") == &numbers.core());
  CHECK(system.lookup<stages::NumberProducer>("numbers").has_value());
  CHECK_FALSE(system.lookup<test::Identity>("numbers").has_value());
  CHECK(system.whereis("missing") == nullptr);
  CHECK_THROWS_WITH_AS(system.spawn<stages::NumberProducer>(options, 1, 10), "a stage named 'numbers' is already registered",
                       std::invalid_argument);
  auto consumer = system.spawn<test::RecordingConsumer<>>("consumer");
  system.subscribe(consumer, "numbers");
  system.wait();
  CHECK(consumer->received() == 10);
  CHECK(system.whereis("numbers") == nullptr);
  CHECK_NOTHROW(system.spawn<stages::NumberProducer>(options, 1, 10));
  system.stop();
}

namespace {

// A key-value server: call {"get", key}, cast {"put", key, value}; a "crash" cast fails it.
struct KeyValue final : Server {
  using Put = std::pair<std::string, int>;
  std::any handle_call(std::any& request) override {
    const auto& key = std::any_cast<std::string&>(request);
    auto found = values.find(key);
    return found == values.end() ? std::any() : std::any(found->second);
  }
  void handle_cast(std::any& message) override {
    if (auto* put = std::any_cast<Put>(&message)) values[put->first] = put->second;
    if (std::any_cast<const char*>(&message) != nullptr) throw std::runtime_error("asked to crash");
  }
  void handle_info(std::any& message) override {
    if (auto* down = std::any_cast<StageDown>(&message)) downs.push_back(*down);
    if (auto* text = std::any_cast<std::string>(&message)) infos.push_back(*text);
  }
  std::map<std::string, int> values;
  std::vector<StageDown> downs;
  std::vector<std::string> infos;
};

}  // namespace

TEST_CASE("GenServer: cast then call sees the cast's effect (messages to one stage are handled in order)") {
  System system(2);
  auto server = system.spawn<KeyValue>("kv");
  system.start();
  system.cast(server, KeyValue::Put{"a", 1});
  CHECK(std::any_cast<int>(system.call(server, std::string("a"))) == 1);
  CHECK_FALSE(system.call(server, std::string("b")).has_value());
  system.stop();
}

TEST_CASE("GenServer: a stage on a worker may call another stage; the callee runs on another worker meanwhile") {
  // The callee is idle, so the call's message wakes it from the caller's slice: it must not be
  // kept for this worker's next turn, which waits for the caller (it would time out instead).
  struct Relay final : Server {
    Relay(System* system, StageRef<KeyValue> target) : system_(system), target_(std::move(target)) {}
    void handle_cast(std::any& key) override { answer_ = system_->call(target_, key, 2s); }
    std::any handle_call(std::any&) override { return answer_; }
    System* system_;
    StageRef<KeyValue> target_;
    std::any answer_;
  };
  System system(2);
  auto server = system.spawn<KeyValue>("kv");
  auto relay = system.spawn<Relay>("relay", &system, server);
  system.start();
  system.cast(server, KeyValue::Put{"a", 1});
  for (int round = 0; round < 20; ++round) {
    system.cast(relay, std::string("a"));
    CHECK(std::any_cast<int>(system.call(relay, 0)) == 1);
  }
  system.stop();
}

// GenServer.call: a caller that timed out never takes the late reply for a later call's.
TEST_CASE("GenServer: a call that times out returns an error and never hangs; the late answer is dropped") {
  struct Slow final : Server {
    explicit Slow(std::counting_semaphore<>* gate) : gate_(gate) {}
    std::any handle_call(std::any& request) override {
      gate_->acquire();
      return request;  // each call's answer is its own request
    }
    std::counting_semaphore<>* gate_;
  };
  std::counting_semaphore<> gate(0);
  System system(2);
  auto slow = system.spawn<Slow>("slow", &gate);
  system.start();
  try {
    system.call(slow, 1, 20ms);
    FAIL("the call should have timed out");
  } catch (const CallError& error) {
    CHECK(error.kind() == CallError::Kind::timeout);
    CHECK(std::string(error.what()) == "call to 'slow' timed out after 20 ms");
  }
  gate.release();
  gate.release();
  CHECK(std::any_cast<int>(system.call(slow, 2)) == 2);
  system.stop();
}

TEST_CASE("GenServer: calls to a stage that is gone, or that fails handling them, return errors") {
  ManualScheduler scheduler;
  System system(scheduler);
  auto supervisor = start_supervisor(system, {.name = "sup"});
  const auto server = supervisor.start_child(child<KeyValue>("kv").restart(Restart::temporary));
  system.cast(*server, "crash");
  scheduler.run_until_idle();
  CHECK_THROWS_WITH_AS(system.call(*server, std::string("a")), "no such stage 'kv'", CallError);
  auto numbers = system.spawn<stages::NumberProducer>("numbers", 1);
  try {
    system.call(numbers, 1);
    FAIL("NumberProducer handles no calls");
  } catch (const CallError& error) {
    CHECK(error.kind() == CallError::Kind::failed);
    CHECK(std::string(error.what()) == "'numbers' failed handling the call: 'numbers' does not handle calls");
  }
}

TEST_CASE("GenServer: a handler that throws something other than a std::exception fails the call at once") {
  // The caller is not left to wait out the timeout.
  struct ThrowsInt final : Server {
    std::any handle_call(std::any&) override { throw 42; }
  };
  ManualScheduler scheduler;
  System system(scheduler);
  auto thrower = system.spawn<ThrowsInt>("thrower");
  CHECK_THROWS_WITH_AS(system.call(thrower, 1), "'thrower' failed handling the call: unknown exception", CallError);
}

// Process.send_after / Process.cancel_timer: timers fire in deadline order, and one cancelled
// before its deadline never fires.
TEST_CASE("GenServer: send_after delivers an info message later; a cancelled timer never fires") {
  struct Waiter final : Server {
    explicit Waiter(std::counting_semaphore<>* last_arrived) : last_arrived_(last_arrived) {}
    void handle_info(std::any& message) override {
      log.push_back(std::any_cast<std::string>(message));
      if (log.back() == "last") last_arrived_->release();
    }
    std::any handle_call(std::any&) override { return log; }
    std::counting_semaphore<>* last_arrived_;
    std::vector<std::string> log;
  };
  std::counting_semaphore<> last_arrived(0);
  System system(2);
  auto waiter = system.spawn<Waiter>("waiter", &last_arrived);
  system.start();
  // "last" is set after the others and for longer: its deadline is the latest however long the
  // test's thread takes between them.
  // A second leaves room for a loaded machine (the first timer starts the timer's thread).
  const auto cancelled = system.send_after(waiter.core(), 1s, std::string("never"));
  CHECK(system.cancel_timer(cancelled));  // long before its deadline
  system.send_after(waiter, 1ms, std::string("first"));
  system.send_after(waiter, 1010ms, std::string("last"));  // due after "never" would have been
  REQUIRE(last_arrived.try_acquire_for(10s));
  CHECK(std::any_cast<std::vector<std::string>>(system.call(waiter, 0)) == std::vector<std::string>{"first", "last"});
  system.stop();
}

// OTP's :infinity: a call that waits as long as it takes, a timer that never fires.
TEST_CASE("GenServer: a call with a timeout of nanoseconds::max() waits for its answer; send_after of it never fires") {
  System system(2);
  auto server = system.spawn<KeyValue>("kv");
  system.start();
  system.cast(server, KeyValue::Put{"a", 1});
  CHECK(std::any_cast<int>(system.call(server, std::string("a"), std::chrono::nanoseconds::max())) == 1);
  system.send_after(server.core(), std::chrono::nanoseconds::max(), std::string("never"));
  system.cast(server, KeyValue::Put{"b", 2});
  CHECK(std::any_cast<int>(system.call(server, std::string("b"))) == 2);  // after anything due at once
  CHECK(system.timers_held() == 1);
  system.stop();
  system.wait();
  CHECK(server->infos.empty());
}

TEST_CASE("monitors: the watcher is told when the monitored stage stops, and why; a late monitor gets noproc") {
  ManualScheduler scheduler;
  System system(scheduler);
  auto watcher = system.spawn<KeyValue>("watcher");
  auto supervisor = start_supervisor(system, {.name = "sup"});
  const auto target = supervisor.start_child(child<KeyValue>("target").restart(Restart::temporary));
  system.monitor(watcher.core(), *target);
  scheduler.run_until_idle();
  system.cast(*target, "crash");
  scheduler.run_until_idle();
  REQUIRE(watcher->downs.size() == 1);
  CHECK(watcher->downs[0].stage == "target");
  CHECK(watcher->downs[0].reason.describe() == "stage 'target' failed: asked to crash");
  system.monitor(watcher.core(), *target);
  scheduler.run_until_idle();
  REQUIRE(watcher->downs.size() == 2);
  CHECK(watcher->downs[1].reason.kind == ExitReason::Kind::noproc);
  system.stop();
}

TEST_CASE("a stage can stop itself after a callback (GenServer's {:stop, reason, state})") {
  struct Quitter final : Server {
    void handle_cast(std::any&) override { context().stop(); }
  };
  ManualScheduler scheduler;
  System system(scheduler);
  auto quitter = system.spawn<Quitter>("quitter");
  system.cast(quitter, 0);
  system.wait();
  CHECK(system.running() == 0);
  CHECK_FALSE(system.failure());
}

TEST_CASE("ConsumerSupervisor: max 3 / min 2 runs three tasks; after two finish it asks for 2 more") {
  std::mutex mutex;
  std::condition_variable changed;
  int started = 0;
  std::vector<std::unique_ptr<std::binary_semaphore>> gates;
  for (int i = 0; i < 10; ++i) gates.push_back(std::make_unique<std::binary_semaphore>(0));
  auto task = [&](std::int64_t event) {
    {
      std::lock_guard lock(mutex);
      ++started;
    }
    changed.notify_all();
    gates[static_cast<std::size_t>(event)]->acquire();
  };
  auto started_is = [&](int n) {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, 10s, [&] { return started == n; });
  };

  System system(2);
  auto producer = system.spawn<test::CountingProducer>("producer");
  auto tasks = system.spawn<ConsumerSupervisor<std::int64_t>>("tasks", task);
  system.subscribe(tasks, producer, {.max_demand = 3, .min_demand = 2});
  system.start();
  auto demands = [&] { return std::any_cast<std::vector<std::size_t>>(system.call(producer, 0)); };
  CHECK(started_is(3));
  CHECK(demands() == std::vector<std::size_t>{3});  // so no fourth task can have started
  gates[0]->release();
  CHECK(demands() == std::vector<std::size_t>{3});
  gates[1]->release();
  CHECK(started_is(5));
  CHECK(demands() == std::vector<std::size_t>{3, 2});
  for (auto& gate : gates) gate->release();
  system.stop();
}

TEST_CASE("ConsumerSupervisor: it completes only once its tasks have, so wait() returns after every failure was heard") {
  // Elixir's ConsumerSupervisor waits for its children before it exits. Four tasks that each
  // wait until all four have started and then throw: the producer completes long before they
  // finish, and every one of the four failures still reaches on_failure before wait() returns.
  std::latch all_started(4);
  std::atomic<int> failures = 0;
  System system(2);
  auto producer = system.spawn<stages::NumberProducer>("producer", 1, 4);
  auto tasks = system.spawn<ConsumerSupervisor<std::int64_t>>(
      "tasks",
      [&](std::int64_t) {
        all_started.arrive_and_wait();
        throw std::runtime_error("task failed");
      },
      [&](std::exception_ptr) { ++failures; });
  system.subscribe(tasks, producer, {.max_demand = 4});
  system.start();
  system.wait();
  CHECK(failures == 4);
  CHECK(tasks->running() == 0);
}

TEST_CASE("ConsumerSupervisor, transient: a task that throws runs again on the same event; past the restart intensity it fails") {
  // Elixir's ConsumerSupervisor restarts a crashed transient child with the same arguments, up
  // to max_restarts within max_seconds, and past that exits; a permanent child template makes
  // no sense for a task that returns, so sluice refuses it.
  std::mutex mutex;
  std::map<std::int64_t, int> attempts;
  std::atomic<int> failures = 0;
  const auto count_attempt = [&](std::int64_t event) {
    std::lock_guard lock(mutex);
    return ++attempts[event];
  };
  {
    System system(2);
    auto producer = system.spawn<stages::NumberProducer>("producer", 1, 5);
    auto tasks = system.spawn<ConsumerSupervisor<std::int64_t>>(
        "tasks",
        [&](std::int64_t event) {
          if (count_attempt(event) == 1) throw std::runtime_error("first try");
        },
        [&](std::exception_ptr) { ++failures; }, StageContext::TaskKind::blocking,
        ConsumerSupervisorOptions{.restart = Restart::transient, .max_restarts = 10});
    system.subscribe(tasks, producer);
    system.start();
    system.wait();
    CHECK(attempts == std::map<std::int64_t, int>{{1, 2}, {2, 2}, {3, 2}, {4, 2}, {5, 2}});
    CHECK(failures == 5);
  }
  attempts.clear();
  {
    System system(2);
    auto producer = system.spawn<stages::NumberProducer>("producer", 1, 1);
    auto tasks = system.spawn<ConsumerSupervisor<std::int64_t>>(
        "tasks",
        [&](std::int64_t event) {
          count_attempt(event);
          throw std::runtime_error("always");
        },
        nullptr, StageContext::TaskKind::blocking, ConsumerSupervisorOptions{.restart = Restart::transient, .max_restarts = 2});
    system.subscribe(tasks, producer);
    system.start();
    CHECK_THROWS_WITH_AS(system.wait(),
                         "stage 'tasks' failed: reached its maximum restart intensity (2 restarts in 5000 ms); the last failure: always",
                         StageError);
    CHECK(attempts == std::map<std::int64_t, int>{{1, 3}});
  }
  System system(2);
  CHECK_THROWS_AS(system.spawn<ConsumerSupervisor<std::int64_t>>(
                      "tasks", [](std::int64_t) {}, nullptr, StageContext::TaskKind::blocking,
                      ConsumerSupervisorOptions{.restart = Restart::permanent}),
                  std::invalid_argument);
}

TEST_CASE("ConsumerSupervisor: demand is kept per producer; a finished task asks the producer its event came from") {
  // Elixir's ConsumerSupervisor counts finished children per producer. With one count for all,
  // asks would go to whichever producer subscribed last, and the other would stop being asked.
  ManualScheduler scheduler;
  System system(scheduler);
  std::vector<std::int64_t> done;
  auto first = system.spawn<stages::NumberProducer>("first", 1, 100);
  auto second = system.spawn<stages::NumberProducer>("second", 101, 200);
  auto tasks = system.spawn<ConsumerSupervisor<std::int64_t>>(
      "tasks", [&](std::int64_t event) { done.push_back(event); }, std::function<void(std::exception_ptr)>{}, TaskKind::cpu);
  system.subscribe(tasks, first, {.max_demand = 10});
  system.subscribe(tasks, second, {.max_demand = 10});
  scheduler.run_until_idle();
  std::sort(done.begin(), done.end());
  CHECK(done == test::iota_batch(1, 200));
  CHECK(system.running() == 0);
}
