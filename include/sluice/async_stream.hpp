#pragma once
// async_stream: a parallel map over an input range with bounded concurrency, with the
// semantics of Elixir's Task.async_stream.
//
//   for (auto& result : sluice::async_stream(urls, fetch, {.max_concurrency = 10,
//                                                           .timeout = 2s,
//                                                           .on_timeout = sluice::OnTimeout::kill_task})) {
//     if (result.ok()) use(result.value());
//     else log(result.exit().reason);
//   }
//
// The input is pulled lazily, on the iterating thread: never more than max_concurrency
// elements ahead of the tasks that run them, so an endless input is fine. `fn(element)` may
// also take a std::stop_token (asked to stop on timeout and when the stream is destroyed), and
// may be a coroutine returning sluice::Task<T> (it holds no thread while it waits).
#include <sluice/defaults.hpp>
#include <sluice/detail/async_core.hpp>
#include <sluice/task.hpp>
#include <sluice/task_kind.hpp>

#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <utility>

namespace sluice {

// The lazy range of results that async_stream returns. Destroying it drops the tasks not
// begun, asks the running ones to stop, and returns once they have all returned (as
// std::jthread joins); their results are discarded. A temporary in a range-for is destroyed
// as the loop ends, however it ends; a named stream when it goes out of scope.
template <std::ranges::input_range R, class F>
class AsyncStream {
 public:
  using Element = std::ranges::range_value_t<R>;
  using Core = detail::AsyncCore<Element, F>;
  using Result = typename Core::Result;

  AsyncStream(R input, F fn, AsyncOptions options)
      : input_(std::move(input)), core_(std::make_shared<Core>(std::move(fn), options)) {}
  // Iterators point into the stream: it stays where it was made.
  AsyncStream(const AsyncStream&) = delete;
  AsyncStream& operator=(const AsyncStream&) = delete;
  ~AsyncStream() { core_->close(); }

  class iterator {
   public:
    using iterator_concept = std::input_iterator_tag;
    using value_type = Result;
    using difference_type = std::ptrdiff_t;

    iterator() = default;
    Result& operator*() const { return *stream_->current_; }
    Result* operator->() const { return &*stream_->current_; }
    // Waits for the next result. Throws TaskTimeout (on_timeout = exit), or what the input
    // range threw.
    iterator& operator++() {
      stream_->advance();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.at_end(); }

   private:
    friend AsyncStream;
    explicit iterator(AsyncStream* stream) : stream_(stream) {}
    bool at_end() const noexcept { return !stream_->current_; }
    AsyncStream* stream_ = nullptr;
  };

  // Starts the first tasks and waits for the first result. Single pass: call it once.
  iterator begin() {
    advance();
    return iterator(this);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

  // What was pulled from the input so far (lazy pulling is observable).
  std::uint64_t pulled() const noexcept { return pulled_; }

 private:
  void advance() {
    current_.reset();
    current_ = core_->next([this] { return pull(); });
  }

  // The iterator moves to the next element only when that element is needed, so that
  // pulling n elements reads exactly n.
  std::optional<Element> pull() {
    if (!position_) {
      position_.emplace(std::ranges::begin(input_));
    } else {
      ++*position_;
    }
    if (*position_ == std::ranges::end(input_)) return std::nullopt;
    ++pulled_;
    return std::optional<Element>(**position_);
  }

  R input_;
  std::optional<std::ranges::iterator_t<R>> position_;
  std::optional<Result> current_;
  std::uint64_t pulled_ = 0;
  std::shared_ptr<Core> core_;
};

// Maps `fn` over `input` with at most options.max_concurrency tasks at once; see AsyncOptions.
// An lvalue input is referenced, not copied: it must outlive the stream.
template <std::ranges::input_range R, class F>
  requires detail::AsyncFunction<F, std::ranges::range_value_t<R>>
AsyncStream<std::views::all_t<R>, F> async_stream(R&& input, F fn, AsyncOptions options = {}) {
  return AsyncStream<std::views::all_t<R>, F>(std::views::all(std::forward<R>(input)), std::move(fn), options);
}

}  // namespace sluice
