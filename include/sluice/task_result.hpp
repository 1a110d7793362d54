#pragma once
// What an async task yields: ok(value), or exit(reason), as {:ok, value} and {:exit, reason}
// in Elixir's Task.async_stream.
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>

namespace sluice {

template <class In>
struct TaskExit {
  std::string reason;       // "timeout", or the message of the exception the task threw
  bool timed_out = false;
  std::optional<In> input;  // the element, with zip_input_on_exit
};

template <class T, class In>
class TaskResult {
 public:
  explicit TaskResult(T value) : result_(std::in_place_index<0>, std::move(value)) {}
  explicit TaskResult(TaskExit<In> exit) : result_(std::in_place_index<1>, std::move(exit)) {}
  // exit(reason), without its element (the stream adds it, with zip_input_on_exit).
  static TaskResult exited(std::string reason, bool timed_out = false) {
    return TaskResult(TaskExit<In>{std::move(reason), timed_out, std::nullopt});
  }

  bool ok() const noexcept { return result_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  // The value; throws std::logic_error with the exit reason if the task exited.
  T& value() & { return std::get<0>(checked()); }
  const T& value() const& { return std::get<0>(checked()); }
  T&& value() && { return std::get<0>(std::move(checked())); }

  // Why the task exited; throws std::logic_error if it did not.
  TaskExit<In>& exit() & {
    if (ok()) throw std::logic_error("the task did not exit: it returned a value");
    return std::get<1>(result_);
  }
  const TaskExit<In>& exit() const& { return const_cast<TaskResult&>(*this).exit(); }

 private:
  std::variant<T, TaskExit<In>>& checked() const {
    auto& result = const_cast<std::variant<T, TaskExit<In>>&>(result_);
    if (!ok()) throw std::logic_error("the task exited: " + std::get<1>(result).reason);
    return result;
  }

  std::variant<T, TaskExit<In>> result_;
};

}  // namespace sluice
