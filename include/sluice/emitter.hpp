#pragma once
// The one way a callback hands events downstream.
#include <sluice/detail/batch.hpp>

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <ranges>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

namespace sluice {

// Appends events to the stage's outgoing batch, a vector reused from batch to batch (unless a
// whole batch replaces it, emit_all): emitting allocates nothing once the batch has grown to its
// working size, and costs no virtual call.
template <class Out>
class Emitter {
 public:
  Emitter(detail::Batch<Out>& batch, bool& done) noexcept : batch_(batch), done_(done) {}

  void emit(const Out& event) { batch_.push_back(event); }
  void emit(Out&& event) { batch_.push_back(std::move(event)); }

  // A whole batch of events, as a stage that makes its output in one vector has it: the
  // batch becomes the outgoing one when nothing was emitted yet in this callback, with no copy
  // (the empty vector it replaces, with its capacity, goes with `events`); else it is appended.
  void emit_all(detail::Batch<Out>&& events) {
    if (batch_.empty()) {
      batch_.swap(events);
    } else {
      batch_.insert(batch_.end(), std::make_move_iterator(events.begin()), std::make_move_iterator(events.end()));
    }
  }

  template <std::ranges::input_range R>
  void emit_all(R&& events) {
    if constexpr (std::ranges::sized_range<R>) reserve(std::ranges::size(events));
    for (auto&& event : events) batch_.push_back(std::forward<decltype(event)>(event));
  }

  // Bulk emission for tight loops: `fill` receives a span of `max_count` default-initialised
  // slots at the end of the batch (indeterminate for trivial types) and returns how many of them
  // it filled; the rest are dropped, as all of them are if `fill` throws. A loop writing into a
  // span has no capacity check per event, so it can vectorise. Always inlined: in a stage's
  // large event path GCC may leave it out of line, a call for every batch.
  template <class Fill>
    requires std::is_invocable_r_v<std::size_t, Fill&, std::span<Out>>
  [[gnu::always_inline]] void emit_bulk(std::size_t max_count, Fill&& fill) {
    const std::size_t old_size = batch_.size();
    // resize is a call, not inlined: one slot, as at max_demand 1, is an emplace_back, which is.
    if (max_count == 1) {
      batch_.emplace_back();
    } else {
      batch_.resize(old_size + max_count);
    }
    std::size_t filled = 0;
    try {
      filled = fill(std::span<Out>(batch_.data() + old_size, max_count));
    } catch (...) {
      batch_.resize(old_size);  // a callback that catches this must not send the slots on
      throw;
    }
    // A full fill, the usual case, keeps the size; one slot left is a pop_back, not a call.
    if (filled < max_count) {
      if (filled + 1 == max_count) {
        batch_.pop_back();
      } else {
        batch_.resize(old_size + filled);
      }
    }
  }

  // Room for n more events without reallocating mid-callback.
  void reserve(std::size_t n) { batch_.reserve(batch_.size() + n); }

  // No more events will come from this stage: once what it emitted and buffered has been
  // delivered, it completes and its consumers learn it.
  void done() noexcept { done_ = true; }

  std::size_t size() const noexcept { return batch_.size(); }

 private:
  detail::Batch<Out>& batch_;
  bool& done_;
};

}  // namespace sluice
