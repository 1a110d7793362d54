#pragma once
// The stages behind the pipeline DSL's lambda steps.
#include <sluice/stage.hpp>

#include <functional>
#include <optional>
#include <ranges>
#include <span>
#include <type_traits>
#include <utility>

namespace sluice::detail {

template <class In, class F>
using map_result_t = std::remove_cvref_t<std::invoke_result_t<F&, In&&>>;

template <class In, class F>
class MapStage final : public ProducerConsumer<In, map_result_t<In, F>> {
 public:
  explicit MapStage(F f) : f_(std::move(f)) {}
  void handle_events(std::span<In> events, Emitter<map_result_t<In, F>>& out) override {
    out.reserve(events.size());
    for (In& event : events) out.emit(std::invoke(f_, std::move(event)));
  }

 private:
  F f_;
};

template <class T, class F>
class FilterStage final : public ProducerConsumer<T, T> {
 public:
  explicit FilterStage(F f) : f_(std::move(f)) {}
  void handle_events(std::span<T> events, Emitter<T>& out) override {
    out.reserve(events.size());
    for (T& event : events)
      if (std::invoke(f_, std::as_const(event))) out.emit(std::move(event));
  }

 private:
  F f_;
};

template <class In, class F>
class EachStage final : public Consumer<In> {
 public:
  explicit EachStage(F f) : f_(std::move(f)) {}
  void handle_events(std::span<In> events) override {
    for (In& event : events) std::invoke(f_, std::move(event));
  }

 private:
  F f_;
};

// Emits a range's elements on demand, lazily: an endless range is fine.
template <std::ranges::input_range R>
class RangeSource final : public Producer<std::ranges::range_value_t<R>> {
 public:
  using Out = std::ranges::range_value_t<R>;
  explicit RangeSource(R range) : range_(std::move(range)) {}

  void handle_demand(std::size_t demand, Emitter<Out>& out) override {
    if (!next_) next_.emplace(std::ranges::begin(range_));
    auto& next = *next_;
    const auto end = std::ranges::end(range_);
    for (; demand > 0 && next != end; --demand, ++next) out.emit(*next);
    if (next == end) out.done();
  }

 private:
  R range_;
  std::optional<std::ranges::iterator_t<R>> next_;  // begun on first demand: the stage never moves then
};

}  // namespace sluice::detail
