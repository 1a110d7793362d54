#pragma once
// The options of async_stream and of the async_map pipeline step, with Task.async_stream's
// defaults.
#include <sluice/defaults.hpp>
#include <sluice/task_kind.hpp>

#include <chrono>
#include <cstddef>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>

namespace sluice {

// What a task that runs past its timeout does (Task.async_stream's :on_timeout).
enum class OnTimeout {
  exit,       // the consumer gets a TaskTimeout error, and the other tasks are stopped
  kill_task,  // the element yields exit("timeout") and the stream goes on
};

// A timeout that never expires.
inline constexpr std::chrono::nanoseconds infinite_timeout = std::chrono::nanoseconds::max();

struct AsyncOptions {
  // Tasks running at once; must be > 0.
  std::size_t max_concurrency = defaults::async_max_concurrency();
  // Results in input order; false: in completion order.
  bool ordered = true;
  // Per task, from its start; infinite_timeout for none.
  std::chrono::nanoseconds timeout = defaults::async_timeout;
  OnTimeout on_timeout = OnTimeout::exit;
  // An exit result carries its input element (TaskExit::input).
  bool zip_input_on_exit = false;
  // Ordered mode: how many finished results may wait behind an unfinished earlier one. While
  // that many wait, no new task starts; so at most max_concurrency + reorder_limit elements
  // are between the input and the consumer. Elixir has no such bound. Default: max_concurrency.
  std::optional<std::size_t> reorder_limit{};
  // Where function tasks run: on the workers (cpu), or on threads of their own (blocking: they
  // may sleep or wait on I/O). Coroutine tasks hold no thread while they wait, whatever this says.
  TaskKind kind = TaskKind::cpu;

  // Elements in flight or finished and not yet delivered, at most. Saturates: a sum past
  // SIZE_MAX is no bound, as SIZE_MAX itself is.
  std::size_t window() const noexcept {
    const std::size_t reorder = ordered ? reorder_limit.value_or(max_concurrency) : 0;
    return reorder > std::numeric_limits<std::size_t>::max() - max_concurrency ? std::numeric_limits<std::size_t>::max()
                                                                               : max_concurrency + reorder;
  }

  // Throws std::invalid_argument naming the option, its value and what is allowed.
  void validate() const {
    if (max_concurrency == 0) throw std::invalid_argument("max_concurrency must be > 0, got 0");
    if (timeout <= std::chrono::nanoseconds::zero())
      throw std::invalid_argument("timeout must be > 0 (or infinite_timeout), got " + std::to_string(timeout.count()) +
                                  " ns");
  }
};

// The error an async_stream's consumer gets when a task times out with on_timeout = exit.
class TaskTimeout : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace sluice
