// async_stream: Task.async_stream's semantics (ordering, timeouts, exits, lazy input, early
// stop, bounded concurrency) and ours beyond it (the bounded reorder buffer, coroutines).
// Each case names the behaviour it pins down. Waits are on events (latches, flags), never on
// the clock, except where a timeout is the behaviour under test.
#include "support.hpp"

#include <sluice/async_stream.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstdint>
#include <functional>
#include <latch>
#include <limits>
#include <memory>
#include <mutex>
#include <ranges>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace sluice;
using namespace std::chrono_literals;

namespace {

// Results as values, failing the test on an exit.
template <class Stream>
std::vector<std::int64_t> values(Stream&& stream) {
  std::vector<std::int64_t> out;
  for (auto& result : stream) {
    REQUIRE(result.ok());
    out.push_back(result.value());
  }
  return out;
}

using test::Flag;

}  // namespace

TEST_CASE("ordered (the default): results come in input order, whatever order the tasks finish in") {
  Flag second_finished;
  auto square = [&](std::int64_t x) {
    if (x == 1) second_finished.wait();  // element 1 finishes only after element 2
    if (x == 2) second_finished.raise();
    return x * x;
  };
  auto results = values(async_stream(std::views::iota(1, 6), square, {.max_concurrency = 3, .kind = TaskKind::blocking}));
  CHECK(results == std::vector<std::int64_t>{1, 4, 9, 16, 25});
}

TEST_CASE("ordered: a CPU function over many elements keeps input order") {
  auto results = values(async_stream(std::views::iota(std::int64_t{0}, std::int64_t{20000}),
                                     [](std::int64_t x) { return x * 3; }, {.max_concurrency = 2}));
  REQUIRE(results.size() == 20000);
  for (std::size_t i = 0; i < results.size(); ++i) REQUIRE(results[i] == static_cast<std::int64_t>(i) * 3);
}

TEST_CASE("ordered = false: results come in completion order") {
  Flag first_delivered;
  auto task = [&](std::int64_t x) {
    if (x == 1) first_delivered.wait();  // element 1 cannot finish before another is delivered
    return x;
  };
  std::vector<std::int64_t> order;
  for (auto& result : async_stream(std::vector<std::int64_t>{1, 2}, task,
                                   {.max_concurrency = 2, .ordered = false, .kind = TaskKind::blocking})) {
    order.push_back(result.value());
    first_delivered.raise();
  }
  CHECK(order == std::vector<std::int64_t>{2, 1});
}

// Sleeps `ms`, or less if asked to stop; says whether it was asked.
bool sleep_unless_stopped(std::int64_t ms, std::stop_token stop) {
  std::mutex mutex;
  std::condition_variable_any never;
  std::unique_lock lock(mutex);
  never.wait_for(lock, stop, std::chrono::milliseconds(ms), [] { return false; });
  return stop.stop_requested();
}

TEST_CASE("timeout with on_timeout = kill_task: the late element yields exit(timeout), the stream goes on") {
  // Task.async_stream's documented case: 1, 200, 3 with a 100 ms timeout. Here 200 runs until
  // asked to stop (the bound is for a failing run), so it is late however late the timeout
  // fires; 1 and 3 return at once, far within it: 500 ms, as a thread of a loaded sanitizer
  // run may wait tens of milliseconds between a task's start and its return.
  std::atomic<bool> stop_seen{false};
  std::latch late_task_done(1);
  auto task = [&](std::int64_t ms, std::stop_token stop) {
    if (ms == 200) {
      stop_seen = sleep_unless_stopped(60'000, stop);
      late_task_done.count_down();
    }
    return ms;
  };
  std::vector<std::string> seen;
  for (auto& result : async_stream(std::vector<std::int64_t>{1, 200, 3}, task,
                                   {.max_concurrency = 3, .timeout = 500ms, .on_timeout = OnTimeout::kill_task,
                                    .kind = TaskKind::blocking})) {
    seen.push_back(result.ok() ? "ok(" + std::to_string(result.value()) + ")" : "exit(" + result.exit().reason + ")");
    if (!result.ok()) CHECK(result.exit().timed_out);
  }
  CHECK(seen == std::vector<std::string>{"ok(1)", "exit(timeout)", "ok(3)"});
  late_task_done.wait();
  CHECK(stop_seen);  // timing out asked the task to stop
}

// Task.async_stream, on_timeout: :kill_task: the task is killed before its exit(:timeout) is
// delivered and another starts in its place, so max_concurrency always holds. No thread can
// be killed: a timed-out task that ignores its stop token keeps its place until it returns.
TEST_CASE("on_timeout = kill_task: a timed-out task still running keeps its place against max_concurrency") {
  Flag release;
  auto task = [&](int x) {  // takes no stop token: nothing can stop it
    if (x < 2) release.wait();
    return x;
  };
  // 2 to 5 return at once: a timeout far beyond that keeps them on time on a loaded machine.
  auto stream = async_stream(std::views::iota(0, 6), task,
                             {.max_concurrency = 2, .timeout = 500ms, .on_timeout = OnTimeout::kill_task,
                              .kind = TaskKind::blocking});
  auto it = stream.begin();
  REQUIRE(it != stream.end());
  CHECK(it->exit().reason == "timeout");
  ++it;
  REQUIRE(it != stream.end());
  CHECK(it->exit().reason == "timeout");
  CHECK(stream.pulled() == 2);  // both still run: no third task may start
  release.raise();
  std::vector<int> rest;
  for (++it; it != stream.end(); ++it) rest.push_back(it->value());
  CHECK(rest == std::vector<int>{2, 3, 4, 5});
}

TEST_CASE("timeout with on_timeout = exit (the default): the consumer gets an error naming the timeout") {
  auto task = [](std::int64_t ms, std::stop_token stop) {
    sleep_unless_stopped(ms, stop);
    return ms;
  };
  // Element 1 ends only when stopped; the others return within milliseconds, far inside the
  // timeout however loaded the machine.
  auto stream = async_stream(std::vector<std::int64_t>{1, 60'000, 3}, task,
                             {.max_concurrency = 3, .timeout = 1s, .kind = TaskKind::blocking});
  auto it = stream.begin();
  REQUIRE(it != stream.end());
  CHECK(it->value() == 1);
  CHECK_THROWS_WITH_AS(++it, "async_stream: the task for element 1 timed out after 1000 ms", TaskTimeout);
  CHECK(it == stream.end());  // the stream is over: its other tasks were stopped
}

TEST_CASE("timeout with on_timeout = exit, unordered: the error names the element too") {
  auto task = [](std::int64_t ms, std::stop_token stop) {
    sleep_unless_stopped(ms, stop);
    return ms;
  };
  std::vector<std::int64_t> got;
  std::string error;
  try {
    // As above: element 1 ends only when stopped.
    for (auto& result : async_stream(std::vector<std::int64_t>{1, 60'000, 3}, task,
                                     {.max_concurrency = 3, .ordered = false, .timeout = 1s, .kind = TaskKind::blocking}))
      got.push_back(result.value());
  } catch (const TaskTimeout& e) {
    error = e.what();
  }
  std::sort(got.begin(), got.end());
  CHECK(got == std::vector<std::int64_t>{1, 3});
  CHECK(error == "async_stream: the task for element 1 timed out after 1000 ms");
}

TEST_CASE("timeout = infinite_timeout: a slow task is waited for") {
  auto task = [](std::int64_t ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return ms;
  };
  CHECK(values(async_stream(std::vector<std::int64_t>{30, 1}, task,
                            {.timeout = infinite_timeout, .kind = TaskKind::blocking})) ==
        std::vector<std::int64_t>{30, 1});
}

TEST_CASE("a task that throws yields exit(reason) with the exception's message; zip_input_on_exit adds the element") {
  auto task = [](std::int64_t x) -> std::int64_t {
    if (x == 2) throw std::runtime_error("no twos");
    return x;
  };
  std::vector<std::string> seen;
  for (auto& result : async_stream(std::vector<std::int64_t>{1, 2, 3}, task, {.zip_input_on_exit = true})) {
    if (result.ok()) {
      seen.push_back("ok(" + std::to_string(result.value()) + ")");
    } else {
      REQUIRE(result.exit().input.has_value());
      seen.push_back("exit(" + std::to_string(*result.exit().input) + ", " + result.exit().reason + ")");
      CHECK_FALSE(result.exit().timed_out);
      CHECK_THROWS_WITH_AS(result.value(), "the task exited: no twos", std::logic_error);
    }
  }
  CHECK(seen == std::vector<std::string>{"ok(1)", "exit(2, no twos)", "ok(3)"});
}

TEST_CASE("without zip_input_on_exit, an exit carries no element") {
  auto task = [](std::int64_t) -> std::int64_t { throw std::runtime_error("always"); };
  for (auto& result : async_stream(std::vector<std::int64_t>{1}, task)) {
    REQUIRE_FALSE(result.ok());
    CHECK_FALSE(result.exit().input.has_value());
  }
}

TEST_CASE("lazy input: taking 1 result with max_concurrency 3 pulls exactly 3 elements") {
  // Exact in unordered mode, and in ordered mode with no reorder buffer; with one, a later
  // element that finishes first makes room for another (see the reorder bound below).
  for (AsyncOptions options : {AsyncOptions{.max_concurrency = 3, .ordered = false},
                               AsyncOptions{.max_concurrency = 3, .reorder_limit = 0}}) {
    std::atomic<int> pulled{0};
    auto counting = std::views::iota(0) | std::views::transform([&](int x) {
                      ++pulled;
                      return x;
                    });  // endless
    auto stream = async_stream(counting, [](int x) { return x; }, options);
    auto it = stream.begin();
    CHECK(it->ok());
    CHECK(pulled == 3);
    CHECK(stream.pulled() == 3);
  }
}

TEST_CASE("early stop: destroying the stream asks the running tasks to stop") {
  constexpr int running = 4;
  std::latch all_started(running);
  std::latch all_stopped(running);
  std::atomic<int> stopped{0};
  auto task = [&](int x, std::stop_token stop) {
    if (x > 0) {
      all_started.count_down();
      // Checked on the test's thread: a failure here, on a pool thread, would skip the count
      // down and leave the test waiting. The bound is for a failing run.
      if (sleep_unless_stopped(60'000, stop)) ++stopped;
      all_stopped.count_down();
    }
    return x;
  };
  {
    auto stream = async_stream(std::views::iota(0), task, {.max_concurrency = running + 1, .kind = TaskKind::blocking});
    for (auto& result : stream) {
      CHECK(result.value() == 0);
      all_started.wait();
      break;
    }
  }
  all_stopped.wait();
  CHECK(stopped == running);
}

// Task.async_stream halting early kills its running tasks and waits for each to go down before
// it returns (Task.Supervised.stream_close). No thread can be killed: the stream asks them to
// stop and waits for them, as std::jthread joins, so that nothing it ran outlives it.
TEST_CASE("early stop: destroying the stream returns only once its running tasks have returned") {
  constexpr int running = 3;
  std::latch all_started(running);
  std::latch all_returned(running);
  std::mutex mutex;
  std::condition_variable destroyed_changed;
  bool destroyed = false;  // guarded by mutex
  int returned = 0;        // guarded by mutex
  int returned_after_destruction = 0;
  auto task = [&](int x, std::stop_token stop) {
    if (x > 0) {
      all_started.count_down();
      Flag().wait(stop);  // until asked to stop
      // Slow to wind down: it returns once the stream is gone, or after a while. The bound is
      // for the passing run, in which the stream waits for this.
      std::unique_lock lock(mutex);
      destroyed_changed.wait_for(lock, 100ms, [&] { return destroyed; });
      ++returned;
      if (destroyed) ++returned_after_destruction;
      all_returned.count_down();
    }
    return x;
  };
  {
    auto stream = async_stream(std::views::iota(0), task, {.max_concurrency = running + 1, .kind = TaskKind::blocking});
    auto it = stream.begin();
    CHECK(it->value() == 0);
    all_started.wait();
  }
  {
    std::lock_guard lock(mutex);
    CHECK(returned == running);
    destroyed = true;
  }
  destroyed_changed.notify_all();
  all_returned.wait();  // only a failing run gets here with tasks still running
  CHECK(returned_after_destruction == 0);
}

TEST_CASE("reorder bound: finished results waiting behind a slow first element stop the input at max_concurrency + reorder_limit") {
  // Elixir keeps starting tasks while the first one is slow, and keeps their results without
  // limit. Here, with max_concurrency 2 and reorder_limit 3, five elements are pulled, and no
  // more until the first result is taken.
  std::atomic<int> others_finished{0};
  Flag release_first;
  auto task = [&](int x) {
    if (x == 0) {
      release_first.wait();
    } else if (++others_finished == 4) {
      release_first.raise();
    }
    return x;
  };
  auto stream = async_stream(std::views::iota(0), task,
                             {.max_concurrency = 2, .reorder_limit = 3, .kind = TaskKind::blocking});
  auto it = stream.begin();
  CHECK(it->value() == 0);
  CHECK(stream.pulled() == 5);
  CHECK(others_finished == 4);
  for (int expected = 1; expected < 50; ++expected) {
    ++it;
    REQUIRE(it->value() == expected);
  }
}

// Elixir's async_stream has no reorder bound: reorder_limit = SIZE_MAX asks for none. Added to
// max_concurrency, it must not wrap around to a small window (0 with max_concurrency 1).
TEST_CASE("reorder_limit = SIZE_MAX is no bound: the window saturates instead of wrapping around") {
  constexpr std::size_t none = std::numeric_limits<std::size_t>::max();
  CHECK(AsyncOptions{.max_concurrency = 1, .reorder_limit = none}.window() == none);
  CHECK(AsyncOptions{.max_concurrency = 4, .reorder_limit = none}.window() == none);
  CHECK(AsyncOptions{.max_concurrency = none}.window() == none);
  CHECK(values(async_stream(std::views::iota(std::int64_t{0}, std::int64_t{3}), [](std::int64_t x) { return x; },
                            {.max_concurrency = 1, .reorder_limit = none})) == std::vector<std::int64_t>{0, 1, 2});
}

// Task.async_stream starts a task per element as the input gives them: max_concurrency is a
// bound, not a size. A stream costs what it holds, not what max_concurrency would allow.
TEST_CASE("a huge max_concurrency over a short input costs only what is used") {
  constexpr std::size_t huge = std::size_t{1} << 50;  // more slots than memory could hold
  for (bool ordered : {true, false}) {
    std::vector<std::int64_t> results;
    for (auto& result : async_stream(std::views::iota(std::int64_t{0}, std::int64_t{3}), [](std::int64_t x) { return x; },
                                     {.max_concurrency = huge, .ordered = ordered}))
      results.push_back(result.value());
    std::sort(results.begin(), results.end());
    CHECK(results == std::vector<std::int64_t>{0, 1, 2});
  }
}

TEST_CASE("no more than max_concurrency tasks run at once: an atomic high-water mark") {
  constexpr int max_concurrency = 4;
  std::atomic<int> running{0};
  std::atomic<int> high_water{0};
  auto count_in = [&] {
    const int now = ++running;
    for (int seen = high_water.load(); now > seen && !high_water.compare_exchange_weak(seen, now);) {
    }
  };
  SUBCASE("blocking: the first max_concurrency tasks run at once, and no other starts while they run") {
    std::latch first_all_running(max_concurrency);
    Flag another_started;
    auto task = [&](int x) {
      count_in();
      if (x < max_concurrency) {
        first_all_running.arrive_and_wait();  // ends only if they all run at once
        // Held on, running: another task must not start meanwhile. The bound is for the
        // passing run, in which none does.
        another_started.wait_for(100ms);
      } else {
        // One started too early stays running until the first all run, so that it is seen.
        first_all_running.wait();
        another_started.raise();
      }
      --running;
      return x;
    };
    int count = 0;
    for (auto& result : async_stream(std::views::iota(0, 200), task,
                                     {.max_concurrency = max_concurrency, .kind = TaskKind::blocking})) {
      REQUIRE(result.ok());
      ++count;
    }
    CHECK(count == 200);
    CHECK(high_water == max_concurrency);
  }
  SUBCASE("cpu: the bound holds") {
    // CPU tasks cannot wait for each other: there may be fewer workers than max_concurrency.
    // Each takes a while only so that they spread over the workers rather than run inline.
    auto task = [&](int x) {
      count_in();
      std::this_thread::sleep_for(1ms);
      --running;
      return x;
    };
    int count = 0;
    for (auto& result : async_stream(std::views::iota(0, 200), task, {.max_concurrency = max_concurrency})) {
      REQUIRE(result.ok());
      ++count;
    }
    CHECK(count == 200);
    CHECK(high_water <= max_concurrency);
  }
}

TEST_CASE("blocking tasks: with max_concurrency 100 on this 2-core machine, 100 tasks really run at once") {
  // Every task waits until all 100 have started; that ends only if they all run together.
  std::mutex mutex;
  std::condition_variable all_here;
  int arrived = 0;
  auto task = [&](int) {
    std::unique_lock lock(mutex);
    ++arrived;
    all_here.notify_all();
    return all_here.wait_for(lock, 30s, [&] { return arrived == 100; });
  };
  int together = 0;
  for (auto& result : async_stream(std::views::iota(0, 100), task,
                                   {.max_concurrency = 100, .timeout = infinite_timeout, .kind = TaskKind::blocking}))
    together += result.value() ? 1 : 0;
  CHECK(together == 100);
}

TEST_CASE("max_concurrency must be > 0; the error names the option and the value") {
  CHECK_THROWS_WITH_AS(async_stream(std::views::iota(0, 1), [](int x) { return x; }, {.max_concurrency = 0}),
                       "max_concurrency must be > 0, got 0", std::invalid_argument);
}

namespace {

Task<std::int64_t> twice_later(std::int64_t x) {
  co_await sleep_for(2ms);
  co_return 2 * x;
}

Task<std::int64_t> coroutine_task(std::int64_t x) {
  co_await sleep_for(5ms);
  const std::int64_t doubled = co_await twice_later(x);  // a coroutine awaiting another
  if (x == 7) throw std::runtime_error("seven");
  co_return doubled + 1;
}

}  // namespace

TEST_CASE("coroutine tasks: co_await sleep_for and other tasks; results in order; an exception is an exit") {
  std::vector<std::string> seen;
  for (auto& result : async_stream(std::views::iota(std::int64_t{0}, std::int64_t{10}), coroutine_task,
                                   {.max_concurrency = 10}))
    seen.push_back(result.ok() ? std::to_string(result.value()) : "exit(" + result.exit().reason + ")");
  CHECK(seen == std::vector<std::string>{"1", "3", "5", "7", "9", "11", "13", "exit(seven)", "17", "19"});
}

TEST_CASE("coroutine tasks: 10,000 wait at once, each holding no thread") {
  // 10,000 threads would not start here; 10,000 suspended coroutines are a few MB of frames.
  std::int64_t sum = 0;
  std::size_t count = 0;
  for (auto& result : async_stream(std::views::iota(std::int64_t{1}, std::int64_t{10'001}),
                                   [](std::int64_t x) -> Task<std::int64_t> {
                                     co_await sleep_for(50ms);
                                     co_return x;
                                   },
                                   // Timed, but far beyond what a sanitizer build on a loaded machine takes.
                                   {.max_concurrency = 10'000, .ordered = false, .timeout = 60s})) {
    sum += result.value();
    ++count;
  }
  CHECK(count == 10'000);
  CHECK(sum == 10'000LL * 10'001 / 2);
}

TEST_CASE("coroutine tasks time out like any other, and see their stop token") {
  // The late task's result is dropped: what it saw is recorded here. The stream returns only
  // once the task has (see early stop), so it is set when the loop ends.
  std::atomic<bool> late_task_saw_stop{false};
  auto task = [&late_task_saw_stop](std::int64_t ms, std::stop_token stop) -> Task<bool> {
    co_await sleep_for(std::chrono::milliseconds(ms));
    if (ms == 1000) late_task_saw_stop = stop.stop_requested();
    co_return stop.stop_requested();
  };
  std::vector<std::string> seen;
  // Margins for a loaded machine: 1 ms against 300 ms, and 700 ms for the stop to come first.
  for (auto& result : async_stream(std::vector<std::int64_t>{1, 1000}, task,
                                   {.timeout = 300ms, .on_timeout = OnTimeout::kill_task}))
    seen.push_back(result.ok() ? (result.value() ? "ok, stopped" : "ok") : result.exit().reason);
  CHECK(seen == std::vector<std::string>{"ok", "timeout"});
  CHECK(late_task_saw_stop);
}

namespace {

using StopCallbacks = std::vector<std::unique_ptr<std::stop_callback<std::function<void()>>>>;

// Suspends until its stop token fires; the stop callback resumes the coroutine right there, on
// whichever thread requested the stop. The callbacks live in `keep`, outside the coroutine,
// which may end (and be freed) inside its own callback.
struct UntilStopped {
  std::stop_token stop;
  StopCallbacks* keep;
  bool await_ready() const noexcept { return stop.stop_requested(); }
  void await_suspend(std::coroutine_handle<> waiting) {
    keep->push_back(std::make_unique<std::stop_callback<std::function<void()>>>(
        stop, std::function<void()>([waiting] { waiting.resume(); })));
  }
  void await_resume() const noexcept {}
};

}  // namespace

TEST_CASE("a stop callback that resumes its task at once runs outside the stream's lock (no deadlock on timeout)") {
  StopCallbacks callbacks;  // outlives the stream
  auto task = [&callbacks](std::int64_t x, std::stop_token stop) -> Task<std::int64_t> {
    if (x == 1) {
      // A named awaiter: GCC 12 mishandles the lifetime of a co_await'ed aggregate temporary
      // that holds a stop_token (TSan sees the token's state released twice).
      UntilStopped until_stopped{stop, &callbacks};
      co_await until_stopped;  // ends only when the timeout asks it to
    }
    co_return x;
  };
  std::vector<std::string> seen;
  for (auto& result : async_stream(std::vector<std::int64_t>{1, 2}, task,
                                   {.timeout = 500ms, .on_timeout = OnTimeout::kill_task}))
    seen.push_back(result.ok() ? std::to_string(result.value()) : result.exit().reason);
  CHECK(seen == std::vector<std::string>{"timeout", "2"});
}

// A task that never returns until asked to stop must still time out: the consumer, which is
// the one to notice a timeout, must not be the thread running it.
TEST_CASE("timeout: a CPU task stuck until stopped yields exit(timeout); the consumer never runs it itself") {
  auto task = [](std::int64_t x, std::stop_token stop) {
    while (x == 0 && !stop.stop_requested()) std::this_thread::yield();
    return x;
  };
  for (int round = 0; round < 20; ++round) {
    std::vector<std::string> seen;
    for (auto& result : async_stream(std::vector<std::int64_t>{0}, task,
                                     {.max_concurrency = 1, .timeout = 20ms, .on_timeout = OnTimeout::kill_task}))
      seen.push_back(result.ok() ? "ok" : result.exit().reason);
    CHECK(seen == std::vector<std::string>{"timeout"});
  }
}

// Unordered, tasks that finish as they start (coroutines that never suspend) have their results
// ready at every call, so the consumer never waits: it must still see a task past its timeout,
// not only once the input ends (here it never does).
TEST_CASE("ordered = false: a stuck task times out while other results keep coming") {
  StopCallbacks callbacks;  // outlives the stream
  auto task = [&callbacks](std::int64_t x, std::stop_token stop) -> Task<std::int64_t> {
    if (x == 0) {
      UntilStopped until_stopped{stop, &callbacks};  // named: see the test above
      co_await until_stopped;
    }
    co_return x;
  };
  bool timed_out = false;
  std::int64_t delivered = 0;
  // The bound is only for a failing run: it is many times the timeout however fast the machine.
  for (auto& result : async_stream(std::views::iota(std::int64_t{0}), task,
                                   {.max_concurrency = 2, .ordered = false, .timeout = 10ms,
                                    .on_timeout = OnTimeout::kill_task})) {
    if (!result.ok()) {
      timed_out = result.exit().reason == "timeout";
      break;
    }
    if (++delivered == 100'000'000) break;
  }
  CHECK(timed_out);
  CHECK(delivered < 100'000'000);
}

// A coroutine keeps a reference parameter as a reference. One taking its element by reference
// must still see it after suspending: the stream keeps the element alive for the task's whole
// run (ASan would report the dead local otherwise).
TEST_CASE("coroutine tasks may take their element by reference") {
  auto task = [](const std::string& text) -> Task<std::size_t> {
    co_await sleep_for(1ms);
    co_return text.size();
  };
  std::vector<std::string> texts;
  for (int i = 0; i < 20; ++i) texts.push_back(std::string(100 + i, 'x'));  // beyond the small-string buffer
  std::vector<std::int64_t> sizes;
  for (auto& result : async_stream(texts, task, {.max_concurrency = 20})) sizes.push_back(static_cast<std::int64_t>(result.value()));
  std::vector<std::int64_t> expected;
  for (int i = 0; i < 20; ++i) expected.push_back(100 + i);
  CHECK(sizes == expected);
}

// The iterating thread may itself be the worker that CPU tasks wait for (a stream iterated
// inside another stream's task): with a timeout it runs no unmeasured task itself, so a task no
// worker takes for a whole timeout goes to a blocking thread instead of waiting for good. The
// inner tasks return at once, and must be on time: their timeout is 2 s, as a loaded sanitizer
// run may preempt a thread for tens of milliseconds between a task's start and its return (at
// 20 ms, two CI-like TSan runs in three failed).
TEST_CASE("streams nested in CPU tasks still run their tasks when every worker iterates one") {
  auto inner_sum = [](std::int64_t x) {
    std::int64_t sum = x;
    for (auto& result : async_stream(std::views::iota(std::int64_t{0}, std::int64_t{3}), [](std::int64_t y) { return y; },
                                     {.max_concurrency = 1, .timeout = 2s}))
      sum += result.value();
    return sum;
  };
  for (int round = 0; round < 5; ++round)
    CHECK(values(async_stream(std::vector<std::int64_t>{10, 20, 30}, inner_sum,
                              {.max_concurrency = 3, .timeout = infinite_timeout})) == std::vector<std::int64_t>{13, 23, 33});
}
