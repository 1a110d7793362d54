#pragma once
// The one way a callback hands events downstream.
#include <cstddef>
#include <iterator>
#include <ranges>
#include <utility>
#include <vector>

namespace sluice {

// Appends events to the stage's outgoing batch, a reused vector: emitting allocates nothing
// once the batch has grown to its working size, and costs no virtual call.
template <class Out>
class Emitter {
 public:
  Emitter(std::vector<Out>& batch, bool& done) noexcept : batch_(batch), done_(done) {}

  void emit(const Out& event) { batch_.push_back(event); }
  void emit(Out&& event) { batch_.push_back(std::move(event)); }

  template <std::ranges::input_range R>
  void emit_all(R&& events) {
    if constexpr (std::ranges::sized_range<R>) reserve(std::ranges::size(events));
    for (auto&& event : events) batch_.push_back(std::forward<decltype(event)>(event));
  }

  // Room for n more events without reallocating mid-callback.
  void reserve(std::size_t n) { batch_.reserve(batch_.size() + n); }

  // No more events will come from this stage: once what it emitted and buffered has been
  // delivered, it completes and its consumers learn it.
  void done() noexcept { done_ = true; }

  std::size_t size() const noexcept { return batch_.size(); }

 private:
  std::vector<Out>& batch_;
  bool& done_;
};

}  // namespace sluice
