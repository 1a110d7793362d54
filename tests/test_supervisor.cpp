// Supervision, with OTP's semantics: which children restart, in what order, and what happens
// past the restart intensity. Each case names the rule it pins down.
#include "support.hpp"

#include <sluice/stages/number_producer.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <mutex>
#include <set>
#include <stdexcept>

using namespace sluice;

namespace {

using Log = std::vector<std::string>;

// Logs its start; a "crash" cast makes it fail, a "quit" cast makes it stop normally.
struct Worker final : Server {
  Worker(Log* log, std::string id) { log->push_back(std::move(id)); }
  void handle_cast(std::any& message) override {
    const std::string command = std::any_cast<const char*>(message);
    if (command == "crash") throw std::runtime_error("asked to crash");
    if (command == "quit") context().stop();
  }
};

std::size_t starts_of(const SupervisorRef& supervisor, const std::string& id) {
  for (const auto& child : supervisor.which_children())
    if (child.id == id) return child.starts;
  return 0;
}

bool running(const SupervisorRef& supervisor, const std::string& id) { return supervisor.child<Worker>(id).has_value(); }

// A supervisor of workers a, b and c on a deterministic scheduler.
struct Tree {
  ManualScheduler scheduler;
  System system{scheduler};
  Log log;
  SupervisorRef supervisor;

  explicit Tree(SupervisorOptions options, std::vector<Restart> restarts = {}) {
    options.name = "sup";
    std::vector<ChildSpec> children;
    for (std::string id : {"a", "b", "c"}) {
      children.push_back(child<Worker>(id, &log, id));
      if (!restarts.empty()) {
        children.back().restart(restarts.front());
        restarts.erase(restarts.begin());
      }
    }
    supervisor = start_supervisor(system, options, std::move(children));
    scheduler.run_until_idle();
  }
  void cast(const std::string& id, const char* command) {
    system.cast(*supervisor.child<Worker>(id), command);
    scheduler.run_until_idle();
  }
};

}  // namespace

TEST_CASE("one_for_one: only the failed child restarts") {
  Tree tree({.strategy = Strategy::one_for_one});
  tree.cast("b", "crash");
  CHECK(tree.log == Log{"a", "b", "c", "b"});
  CHECK(starts_of(tree.supervisor, "a") == 1);
  CHECK(starts_of(tree.supervisor, "b") == 2);
  CHECK(starts_of(tree.supervisor, "c") == 1);
  CHECK_FALSE(tree.system.failure());
}

TEST_CASE("one_for_all: every child is stopped and all restart, in start order") {
  Tree tree({.strategy = Strategy::one_for_all});
  tree.cast("b", "crash");
  CHECK(tree.log == Log{"a", "b", "c", "a", "b", "c"});
  for (std::string id : {"a", "b", "c"}) CHECK(running(tree.supervisor, id));
}

namespace {

// Logs its stop; crashes on a cast.
struct StopLogger final : Server {
  StopLogger(Log* log, std::string id) : log_(log), id_(std::move(id)) {}
  void handle_cast(std::any&) override { throw std::runtime_error("asked to crash"); }
  void terminate(const ExitReason&) override { log_->push_back("stop " + id_); }
  Log* log_;
  std::string id_;
};

}  // namespace

TEST_CASE("children stop one at a time, in reverse start order, each once the one started after it has exited") {
  // OTP's terminate_children: a group restart, and a supervision tree's shutdown (the System's
  // stop reaches the root supervisor, which stops its children), ask one child to stop, wait for
  // its exit, then ask the one started before it. While the last child is held back, no other
  // child stops.
  ManualScheduler scheduler;
  System system(scheduler);
  Log log;
  std::vector<ChildSpec> children;
  for (std::string id : {"a", "b", "c", "d"}) children.push_back(child<StopLogger>(id, &log, id));
  auto supervisor = start_supervisor(system, {.name = "sup", .strategy = Strategy::one_for_all}, std::move(children));
  scheduler.run_until_idle();
  const auto holding_last = [&] {
    const detail::ActorCore* last = &supervisor.child<StopLogger>("d")->core();
    return [last](const detail::ActorCore& stage) { return &stage == last; };
  };

  system.cast(*supervisor.child<StopLogger>("a"), 0);
  scheduler.run_until_idle_except(holding_last());
  CHECK(log == Log{"stop a"});
  scheduler.run_until_idle();
  CHECK(log == Log{"stop a", "stop d", "stop c", "stop b"});
  for (std::string id : {"a", "b", "c", "d"}) CHECK(supervisor.child<StopLogger>(id).has_value());

  log.clear();
  system.stop();
  scheduler.run_until_idle_except(holding_last());
  CHECK(log.empty());
  scheduler.run_until_idle();
  CHECK(log == Log{"stop d", "stop c", "stop b", "stop a"});
}

TEST_CASE("rest_for_one: the failed child and those started after it restart, in order") {
  Tree tree({.strategy = Strategy::rest_for_one});
  tree.cast("b", "crash");
  CHECK(tree.log == Log{"a", "b", "c", "b", "c"});
  CHECK(starts_of(tree.supervisor, "a") == 1);
  CHECK(starts_of(tree.supervisor, "c") == 2);
}

TEST_CASE("rest_for_one: a temporary child that leaves while the group stops does not shift the group") {
  // a is temporary. b fails, so c is stopped for the group restart; a quits before c's exit
  // arrives. b and c must still both restart (the group is b on, not whatever now sits at b's
  // old place).
  Tree tree({.strategy = Strategy::rest_for_one}, {Restart::temporary});
  tree.system.cast(*tree.supervisor.child<Worker>("b"), "crash");
  tree.system.cast(*tree.supervisor.child<Worker>("a"), "quit");
  tree.scheduler.run_until_idle();
  CHECK(tree.log == Log{"a", "b", "c", "b", "c"});
  CHECK(running(tree.supervisor, "b"));
  CHECK(running(tree.supervisor, "c"));
  CHECK(tree.supervisor.which_children().size() == 2);
}

TEST_CASE("one_for_all: a group whose children stop after the System began to stop is not restarted") {
  // OTP: a supervisor restarts nothing once shutdown has begun. b fails; a and c exit for the
  // group restart; the System stops before the supervisor hears of their exits.
  Tree tree({.strategy = Strategy::one_for_all});
  const auto hold_supervisor = [&](const detail::ActorCore& stage) { return &stage == &tree.supervisor.core(); };
  tree.system.cast(*tree.supervisor.child<Worker>("b"), "crash");
  tree.scheduler.run_until_idle_except(hold_supervisor);  // b fails
  tree.scheduler.run_once();                              // the supervisor stops a and c
  tree.scheduler.run_until_idle_except(hold_supervisor);  // they exit
  tree.system.stop();
  tree.scheduler.run_until_idle();
  CHECK(tree.log == Log{"a", "b", "c"});
  CHECK(tree.system.running() == 0);
}

TEST_CASE("restart types: permanent restarts even after a normal exit") {
  Tree tree({}, {Restart::permanent});
  tree.cast("a", "quit");
  CHECK(starts_of(tree.supervisor, "a") == 2);
}

TEST_CASE("restart types: transient restarts after a failure, not after a normal exit") {
  Tree tree({}, {Restart::transient});
  tree.cast("a", "crash");
  CHECK(starts_of(tree.supervisor, "a") == 2);
  tree.cast("a", "quit");
  CHECK(starts_of(tree.supervisor, "a") == 2);
  CHECK_FALSE(running(tree.supervisor, "a"));
}

TEST_CASE("restart types: temporary never restarts, and is forgotten") {
  Tree tree({}, {Restart::temporary});
  tree.cast("a", "crash");
  CHECK(tree.log == Log{"a", "b", "c"});
  CHECK(tree.supervisor.which_children().size() == 2);
}

TEST_CASE("restart intensity: past max_restarts within max_seconds the supervisor fails and escalates") {
  Tree tree({.max_restarts = 3});
  for (int crash = 0; crash < 3; ++crash) tree.cast("a", "crash");
  CHECK(starts_of(tree.supervisor, "a") == 4);
  CHECK_FALSE(tree.system.failure());
  tree.cast("a", "crash");
  // A top-level supervisor escalates to its System: the failure stops everything.
  CHECK_THROWS_WITH_AS(tree.system.wait(),
                       "stage 'sup' failed: reached its maximum restart intensity (3 restarts in 5000 ms); "
                       "the last failure: stage 'a' failed: asked to crash",
                       StageError);
  CHECK(tree.system.running() == 0);
}

TEST_CASE("nested trees: a child supervisor past its intensity is restarted by its parent, with fresh children") {
  ManualScheduler scheduler;
  System system(scheduler);
  Log log;
  auto root = start_supervisor(
      system, {.name = "root", .max_restarts = 10},
      {supervisor_child({.name = "inner", .max_restarts = 1},
                        {child<Worker>(StageOptions{.name = "w", .register_name = true}, &log, std::string("w"))})});
  scheduler.run_until_idle();
  auto crash_w = [&] {
    system.cast(*system.lookup<Worker>("w"), "crash");
    scheduler.run_until_idle();
  };
  crash_w();  // inner restarts w: 1 restart, within its intensity of 1
  CHECK(log == Log{"w", "w"});
  CHECK(starts_of(root, "inner") == 1);
  crash_w();  // inner gives up; root restarts inner, which starts w afresh
  CHECK(log == Log{"w", "w", "w"});
  CHECK(starts_of(root, "inner") == 2);
  CHECK_FALSE(system.failure());
  CHECK(system.lookup<Worker>("w").has_value());
}

namespace {

// A consumer that counts its starts and can be made to fail by a cast.
struct Crashable final : Consumer<std::int64_t> {
  explicit Crashable(std::vector<test::Batch>* seen) : seen_(seen) {}
  void handle_events(std::span<std::int64_t> events) override { seen_->emplace_back(events.begin(), events.end()); }
  void handle_cast(std::any&) override { throw std::runtime_error("asked to crash"); }
  std::vector<test::Batch>* seen_;
};

}  // namespace

TEST_CASE("after a restart, the subscriptions declared in the child spec are made again") {
  ManualScheduler scheduler;
  System system(scheduler);
  std::vector<test::Batch> seen;
  auto supervisor = start_supervisor(system, {.name = "sup"},
                                     {child<test::QueueProducer<>>("producer"),
                                      child<Crashable>("consumer", &seen).subscribe_to("producer", {.max_demand = 10})});
  scheduler.run_until_idle();
  auto producer = *supervisor.child<test::QueueProducer<>>("producer");
  system.send_info(producer, test::iota_batch(1, 3));
  scheduler.run_until_idle();
  system.cast(*supervisor.child<Crashable>("consumer"), 0);
  scheduler.run_until_idle();
  CHECK(starts_of(supervisor, "consumer") == 2);
  system.send_info(producer, test::iota_batch(4, 6));
  scheduler.run_until_idle();
  CHECK(seen == std::vector<test::Batch>{{1, 2, 3}, {4, 5, 6}});
  // The producer saw the old subscription cancelled with the crash, and a new one.
  REQUIRE(producer->cancels.size() == 1);
  CHECK(producer->cancels[0].describe() == "stage 'consumer' failed: asked to crash");
}

TEST_CASE("DynamicSupervisor: children are started at run time; ids are unique") {
  ManualScheduler scheduler;
  System system(scheduler);
  Log log;
  auto dynamic = start_dynamic_supervisor(system, {.name = "dynamic"});
  CHECK(dynamic.which_children().empty());
  dynamic.start_child(child<Worker>("x", &log, std::string("x")));
  dynamic.start_child(child<Worker>("y", &log, std::string("y")));
  CHECK(log == Log{"x", "y"});
  CHECK_THROWS_WITH_AS(dynamic.start_child(child<Worker>("x", &log, std::string("x"))),
                       "supervisor 'dynamic' already has a child 'x'", std::invalid_argument);
  system.cast(*dynamic.child<Worker>("y"), "crash");
  scheduler.run_until_idle();
  CHECK(log == Log{"x", "y", "y"});
}

namespace {

// What a stage that fails on every 100th event did: shared by its successive instances.
struct Ledger {
  std::mutex mutex;
  std::vector<std::int64_t> processed;
  std::vector<std::int64_t> raised;
};

struct EveryHundredth final : Consumer<std::int64_t> {
  explicit EveryHundredth(Ledger* ledger) : ledger_(ledger) {}
  void handle_events(std::span<std::int64_t> events) override {
    std::lock_guard lock(ledger_->mutex);
    for (std::int64_t x : events) {
      if (x % 100 == 0) {
        ledger_->raised.push_back(x);
        throw std::runtime_error("cannot take " + std::to_string(x));
      }
      ledger_->processed.push_back(x);
    }
  }
  Ledger* ledger_;
};

// The supervised pipeline of the README's fault-tolerance section, on `system`.
void run_every_hundredth(System& system, Ledger& ledger, std::int64_t events) {
  start_supervisor(system, {.name = "pipeline", .max_restarts = 1000, .stop_when_children_done = true},
                   {child<stages::NumberProducer>("numbers", std::int64_t{1}, events).restart(Restart::transient),
                    child<EveryHundredth>("picky", &ledger)
                        .restart(Restart::transient)
                        .subscribe_to("numbers", {.max_demand = 10, .min_demand = 5})});
  system.wait();
}

// What the README promises: every event is processed once or lost; what is lost, per crash, is
// the event that raised and the events after it that had already reached that instance.
void check_every_hundredth(Ledger& ledger, std::int64_t events) {
  std::set<std::int64_t> processed(ledger.processed.begin(), ledger.processed.end());
  CHECK(processed.size() == ledger.processed.size());  // nothing twice
  std::vector<std::int64_t> multiples;
  for (std::int64_t k = 100; k <= events; k += 100) multiples.push_back(k);
  CHECK(ledger.raised == multiples);  // each 100th event raised once, in order
  std::vector<std::int64_t> lost;
  for (std::int64_t x = 1; x <= events; ++x)
    if (!processed.contains(x)) lost.push_back(x);
  for (std::size_t i = 0; i < lost.size(); ++i) {
    const bool starts_run = i == 0 || lost[i - 1] != lost[i] - 1;
    if (starts_run) CHECK(lost[i] % 100 == 0);  // every lost run begins where a crash was
    CHECK(lost[i] - lost[i] / 100 * 100 < 10);  // and holds at most what was in flight (max_demand 10)
  }
  MESSAGE("processed " << processed.size() << ", lost " << lost.size() << " (of which " << ledger.raised.size()
                       << " raised)");
}

}  // namespace

TEST_CASE("a supervision tree survives a stage that throws on every 100th event (deterministic)") {
  ManualScheduler scheduler;
  System system(scheduler);
  Ledger ledger;
  run_every_hundredth(system, ledger, 2050);
  check_every_hundredth(ledger, 2050);
}

TEST_CASE("a supervision tree survives a stage that throws on every 100th event (on worker threads)") {
  System system(2);
  Ledger ledger;
  run_every_hundredth(system, ledger, 20'050);
  check_every_hundredth(ledger, 20'050);
}

namespace {

// Starts once; its restart throws from the constructor, as a sink whose file cannot be
// reopened does.
struct StartsOnce final : Server {
  explicit StartsOnce(int* starts, bool throws_non_standard = false) {
    if (++*starts == 1) return;
    if (throws_non_standard) throw 42;
    throw std::runtime_error("cannot reopen");
  }
  void handle_cast(std::any&) override { throw std::runtime_error("asked to crash"); }
};

}  // namespace

TEST_CASE("a child whose restart fails is tried again within the restart intensity, then fails its supervisor (OTP)") {
  // OTP's try_again_restart: each failed start counts as a restart. With max_restarts 3, the
  // crash and two failed starts are within it; the third failed start is past it.
  ManualScheduler scheduler;
  System system(scheduler);
  int starts = 0;
  // A start may throw anything: what is not a std::exception counts the same, and never escapes
  // the supervisor's slice.
  bool throws_non_standard = false;
  std::string last_failure = "cannot reopen";
  SUBCASE("a std::exception") {}
  SUBCASE("anything else") {
    throws_non_standard = true;
    last_failure = "unknown exception";
  }
  auto supervisor = start_supervisor(system, {.name = "sup", .max_restarts = 3},
                                     {child<StartsOnce>("once", &starts, throws_non_standard)});
  scheduler.run_until_idle();
  system.cast(*supervisor.child<StartsOnce>("once"), 0);
  CHECK_THROWS_WITH_AS(system.wait(),
                       ("stage 'sup' failed: reached its maximum restart intensity (3 restarts in 5000 ms); "
                        "the last failure: 'once' could not be started: " + last_failure).c_str(),
                       StageError);
  CHECK(starts == 4);
  CHECK(system.running() == 0);
}

TEST_CASE("DynamicSupervisor: a start_child that throws tells the caller, and leaves the id free") {
  ManualScheduler scheduler;
  System system(scheduler);
  auto dynamic = start_dynamic_supervisor(system, {.name = "dynamic"});
  int starts = 1;  // StartsOnce throws from its second construction on
  CHECK_THROWS_WITH_AS(dynamic.start_child(child<StartsOnce>("once", &starts)), "cannot reopen", std::runtime_error);
  CHECK(dynamic.which_children().empty());
  int fresh = 0;
  dynamic.start_child(child<StartsOnce>("once", &fresh));
  CHECK(dynamic.which_children().size() == 1);
  system.stop();
}

namespace {

// Counts the instances made and freed, so that a test sees how many stage objects are alive.
struct Instances {
  std::size_t made = 0;
  std::size_t freed = 0;
  std::size_t alive() const { return made - freed; }
};

struct Counted final : Server {
  explicit Counted(Instances* instances) : instances_(instances) { ++instances_->made; }
  ~Counted() override { ++instances_->freed; }
  void handle_cast(std::any&) override { throw std::runtime_error("asked to crash"); }
  Instances* instances_;
};

}  // namespace

// OTP: a permanent child is restarted for as long as the restart intensity allows, and a long
// run of restarts must not grow the node. Each stopped instance is freed once the supervisor
// has replaced it.
TEST_CASE("restarts keep memory flat: each stopped child instance is freed once it has been replaced") {
  ManualScheduler scheduler;
  System system(scheduler);
  Instances instances;
  auto supervisor = start_supervisor(system, {.name = "sup", .max_restarts = 1000}, {child<Counted>("worker", &instances)});
  scheduler.run_until_idle();
  for (int restart = 0; restart < 200; ++restart) {
    system.cast(*supervisor.child<Counted>("worker"), 0);
    scheduler.run_until_idle();
    REQUIRE(instances.alive() == 1);
  }
  CHECK(instances.made == 201);
  CHECK(starts_of(supervisor, "worker") == 201);
  CHECK_FALSE(system.failure());
}

TEST_CASE("DynamicSupervisor: temporary children that come and go are freed as they go") {
  ManualScheduler scheduler;
  System system(scheduler);
  Instances instances;
  auto dynamic = start_dynamic_supervisor(system, {.name = "dynamic"});
  for (int i = 0; i < 100; ++i) {
    dynamic.start_child(child<Counted>("job-" + std::to_string(i), &instances).restart(Restart::temporary));
    scheduler.run_until_idle();
    system.cast(*dynamic.child<Counted>("job-" + std::to_string(i)), 0);
    scheduler.run_until_idle();
    REQUIRE(instances.alive() == 0);
  }
  CHECK(instances.made == 100);
  CHECK(dynamic.which_children().empty());
}

TEST_CASE("DynamicSupervisor: a transient child that exits normally is forgotten; a supervisor keeps its spec, as OTP's") {
  // Elixir's DynamicSupervisor deletes a child it will not restart, so its id is free again and
  // children that come and go leave nothing behind; OTP's supervisor keeps a transient child's
  // spec after a normal exit (only temporary children are deleted).
  ManualScheduler scheduler;
  System system(scheduler);
  Log log;
  auto dynamic = start_dynamic_supervisor(system, {.name = "dynamic"});
  for (int i = 0; i < 3; ++i) {
    dynamic.start_child(child<Worker>("job", &log, std::string("job")).restart(Restart::transient));
    scheduler.run_until_idle();
    system.cast(*dynamic.child<Worker>("job"), "quit");
    scheduler.run_until_idle();
    CHECK(dynamic.which_children().empty());
  }
  CHECK(log == Log{"job", "job", "job"});

  auto fixed = start_supervisor(system, {.name = "fixed"}, {child<Worker>("job", &log, std::string("job")).restart(Restart::transient)});
  scheduler.run_until_idle();
  system.cast(*fixed.child<Worker>("job"), "quit");
  scheduler.run_until_idle();
  REQUIRE(fixed.which_children().size() == 1);
  CHECK(fixed.which_children()[0].id == "job");
  CHECK(fixed.which_children()[0].stage == nullptr);
}

// OTP drops a monitor when its watcher exits: a long-lived stage watched by one restarted
// watcher after another must not keep the stopped ones, and must still tell the live ones.
TEST_CASE("monitors keep memory flat: a watcher restarted many times is freed once it has stopped") {
  struct DownLog final : Server {
    void handle_info(std::any& message) override {
      if (auto* down = std::any_cast<StageDown>(&message)) downs.push_back(down->stage);
    }
    std::vector<std::string> downs;
  };
  struct Quits final : Server {
    void handle_cast(std::any&) override { context().stop(); }
  };
  ManualScheduler scheduler;
  System system(scheduler);
  Instances watchers;
  auto target = system.spawn<Quits>("target");
  auto steady = system.spawn<DownLog>("steady");
  system.monitor(steady, target);
  auto supervisor = start_supervisor(system, {.name = "sup", .max_restarts = 1000}, {child<Counted>("watcher", &watchers)});
  scheduler.run_until_idle();
  for (int restart = 0; restart < 100; ++restart) {
    system.monitor(supervisor.child<Counted>("watcher")->core(), target.core());
    scheduler.run_until_idle();
    system.cast(*supervisor.child<Counted>("watcher"), 0);
    scheduler.run_until_idle();
    REQUIRE(watchers.alive() <= 2);  // the running watcher, and at most the last one stopped
  }
  system.monitor(supervisor.child<Counted>("watcher")->core(), target.core());
  scheduler.run_until_idle();
  CHECK(watchers.alive() == 1);
  CHECK(watchers.made == 101);
  system.cast(target, 0);
  scheduler.run_until_idle();
  CHECK(steady->downs == std::vector<std::string>{"target"});

  // A supervisor keeps its monitors the same way.
  auto watched = start_supervisor(system, {.name = "watched"});
  for (int restart = 0; restart < 20; ++restart) {
    system.monitor(supervisor.child<Counted>("watcher")->core(), watched.core());
    scheduler.run_until_idle();
    system.cast(*supervisor.child<Counted>("watcher"), 0);
    scheduler.run_until_idle();
    REQUIRE(watchers.alive() <= 2);
  }
}

TEST_CASE("a registered nested supervisor whose restart fails is tried again under its name") {
  // OTP's try_again_restart: a child supervisor that fails to start is started again. Its
  // name must be free for that: here the inner supervisor gives up when f crashes, the root
  // restarts it, f's second construction throws, and the third try takes the name "inner".
  struct Flaky final : Server {
    explicit Flaky(int* constructions) {
      if (++*constructions == 2) throw std::runtime_error("not yet");
    }
    void handle_cast(std::any&) override { throw std::runtime_error("asked to crash"); }
  };
  ManualScheduler scheduler;
  System system(scheduler);
  int constructions = 0;
  auto root = start_supervisor(
      system, {.name = "root", .max_restarts = 5},
      {supervisor_child({.name = "inner", .max_restarts = 0, .register_name = true}, {child<Flaky>("f", &constructions)})});
  scheduler.run_until_idle();
  system.cast(*root.child_supervisor("inner")->child<Flaky>("f"), 0);
  scheduler.run_until_idle();
  CHECK(constructions == 3);
  CHECK(system.whereis("inner") != nullptr);
  CHECK_FALSE(system.failure());
}

TEST_CASE("a nested dynamic supervisor is reached through child_supervisor, and starts children") {
  ManualScheduler scheduler;
  System system(scheduler);
  Log log;
  auto outer = start_supervisor(system, {.name = "outer"},
                                {supervisor_child({.name = "inner"}, {}), child<Worker>("plain", &log, std::string("plain"))});
  scheduler.run_until_idle();
  CHECK_FALSE(outer.child_supervisor("plain").has_value());
  CHECK_FALSE(outer.child_supervisor("missing").has_value());
  auto inner = outer.child_supervisor("inner");
  REQUIRE(inner.has_value());
  inner->start_child(child<Worker>("late", &log, std::string("late")));
  scheduler.run_until_idle();
  CHECK(inner->child<Worker>("late").has_value());
  CHECK(log == Log{"plain", "late"});
}

// OTP: a supervisor whose child fails to start fails to start itself, and shuts down the
// children it had started; a nested one takes its parent's start down the same way.
TEST_CASE("a supervisor whose child cannot start stops the children it started, nested or not") {
  ManualScheduler scheduler;
  System system(scheduler);
  Log log;
  int starts = 1;  // StartsOnce throws from its second construction on
  CHECK_THROWS_WITH_AS(start_supervisor(system, {.name = "top"},
                                        {child<Worker>("first", &log, std::string("first")), child<StartsOnce>("bad", &starts)}),
                       "cannot reopen", std::runtime_error);
  scheduler.run_until_idle();
  CHECK(system.running() == 0);

  auto outer = start_supervisor(system, {.name = "outer"});
  CHECK_THROWS_WITH_AS(outer.start_child(supervisor_child(
                           {.name = "inner"}, {child<Worker>("second", &log, std::string("second")), child<StartsOnce>("bad", &starts)})),
                       "cannot reopen", std::runtime_error);
  scheduler.run_until_idle();
  CHECK(system.running() == 1);  // the outer supervisor alone
  CHECK(outer.which_children().empty());
  CHECK(log == Log{"first", "second"});
  CHECK_FALSE(system.failure());
}

TEST_CASE("drain: a supervisor does not restart a child that completed because of it, so a supervised pipeline ends") {
  ManualScheduler scheduler;
  System system(scheduler);
  auto tree = start_supervisor(system, {.name = "pipeline", .strategy = Strategy::rest_for_one},
                               {child<stages::NumberProducer>("numbers", 1),
                                child<test::RecordingConsumer<>>("sink").subscribe_to("numbers", {.max_demand = 10})});
  scheduler.run_until_idle(100);
  system.drain();
  system.wait();
  CHECK(system.running() == 0);
  CHECK_FALSE(system.failure());
}
