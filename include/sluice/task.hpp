#pragma once
// sluice::Task<T>: a C++20 coroutine that async_stream runs without holding a thread while it
// waits, and sluice::sleep_for, a timer it can co_await.
//
//   sluice::Task<int> fetch(int id) {
//     co_await sluice::sleep_for(10ms);   // no thread is held meanwhile
//     co_return id * 2;
//   }
//
// A Task starts when it is awaited (co_await another_task()) or when async_stream starts it;
// it may co_await any awaitable. Resumptions after a sleep run on the oneTBB workers.
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

namespace sluice {

template <class T>
class Task;

namespace detail {

template <class T>
struct TaskPromise {
  // What a finished task yields: its value, or what escaped it.
  struct Outcome {
    std::optional<T> value;
    std::exception_ptr error;
    // The value; rethrows what escaped the coroutine.
    T take() {
      if (error) std::rethrow_exception(error);
      return std::move(*value);
    }
  };
  // Called when a task that nothing awaits finishes (async_stream's slot), once its frame is
  // freed. `owner` is kept alive until then.
  using Ticket = std::pair<std::uint64_t, std::uint64_t>;  // the owner's, to tell tasks apart
  using Report = void (*)(void* owner, Ticket ticket, Outcome&& outcome);

  Task<T> get_return_object() noexcept;
  std::suspend_always initial_suspend() const noexcept { return {}; }
  auto final_suspend() const noexcept;
  template <class U>
    requires std::convertible_to<U&&, T>
  void return_value(U&& value) {
    outcome.value.emplace(std::forward<U>(value));
  }
  void unhandled_exception() noexcept { outcome.error = std::current_exception(); }

  // Moves the outcome out of the frame; a value that throws as it moves becomes the error.
  void take_outcome(Outcome& taken) noexcept {
    if (outcome.error) {
      taken.error = outcome.error;
      return;
    }
    try {
      taken.value.emplace(std::move(*outcome.value));
    } catch (...) {
      taken.error = std::current_exception();
    }
  }

  Outcome outcome;
  std::coroutine_handle<> continuation;  // the coroutine awaiting this one
  Report report = nullptr;
  std::shared_ptr<void> owner;
  Ticket ticket{};
};

template <class T>
auto TaskPromise<T>::final_suspend() const noexcept {
  struct Final {
    bool await_ready() const noexcept { return false; }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<TaskPromise> finished) const noexcept {
      TaskPromise& promise = finished.promise();
      // Awaited: resume the awaiter, which reads the result; its Task frees this frame.
      if (promise.continuation) return promise.continuation;
      // Detached: free the frame (it is suspended, so this is allowed), then report, so that
      // the owner hears of the end only once nothing of the task is left (the frame holds the
      // coroutine's parameters: destroying them may run the caller's code).
      Outcome outcome;
      promise.take_outcome(outcome);
      const std::shared_ptr<void> owner = std::move(promise.owner);
      const Report report = promise.report;
      const Ticket ticket = promise.ticket;
      finished.destroy();
      if (report != nullptr) report(owner.get(), ticket, std::move(outcome));
      return std::noop_coroutine();
    }
    void await_resume() const noexcept {}
  };
  return Final{};
}

}  // namespace detail

template <class T>
class [[nodiscard]] Task {
 public:
  static_assert(!std::is_void_v<T> && !std::is_reference_v<T>, "a Task yields a value");
  using promise_type = detail::TaskPromise<T>;
  using value_type = T;

  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      if (handle_) handle_.destroy();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  ~Task() {
    if (handle_) handle_.destroy();
  }

  // Awaiting a task starts it; the awaiter resumes with its value when it finishes.
  auto operator co_await() && noexcept {
    struct Awaiter {
      std::coroutine_handle<promise_type> child;
      bool await_ready() const noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) const noexcept {
        child.promise().continuation = awaiting;
        return child;
      }
      T await_resume() const { return child.promise().outcome.take(); }
    };
    return Awaiter{handle_};
  }

  // Starts the task with nothing awaiting it, on this thread until its first suspension.
  // When it finishes, its frame frees itself, then `report(owner, ticket, outcome)` runs.
  void start_detached(std::shared_ptr<void> owner, typename promise_type::Report report,
                      typename promise_type::Ticket ticket) && {
    auto handle = std::exchange(handle_, {});
    handle.promise().owner = std::move(owner);
    handle.promise().report = report;
    handle.promise().ticket = ticket;
    handle.resume();
  }

 private:
  friend promise_type;
  explicit Task(std::coroutine_handle<promise_type> handle) noexcept : handle_(handle) {}
  std::coroutine_handle<promise_type> handle_;
};

template <class T>
Task<T> detail::TaskPromise<T>::get_return_object() noexcept {
  return Task<T>(std::coroutine_handle<TaskPromise>::from_promise(*this));
}

namespace detail {
// Resumes `waiting` on the workers at `delay` from now (the async runtime's timer).
void resume_after(std::chrono::nanoseconds delay, std::coroutine_handle<> waiting);
}  // namespace detail

// An awaitable timer: the coroutine is suspended, holding no thread, for `delay`.
struct SleepFor {
  std::chrono::nanoseconds delay;
  bool await_ready() const noexcept { return delay <= std::chrono::nanoseconds::zero(); }
  void await_suspend(std::coroutine_handle<> waiting) const { detail::resume_after(delay, waiting); }
  void await_resume() const noexcept {}
};

inline SleepFor sleep_for(std::chrono::nanoseconds delay) noexcept { return SleepFor{delay}; }

}  // namespace sluice
