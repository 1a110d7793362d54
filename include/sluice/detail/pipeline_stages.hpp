#pragma once
// The stages behind the pipeline DSL's lambda steps.
#include <sluice/detail/compact.hpp>
#include <sluice/stage.hpp>

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <functional>
#include <iterator>
#include <optional>
#include <ranges>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>

namespace sluice::detail {

template <class In, class F>
using map_result_t = std::remove_cvref_t<std::invoke_result_t<F&, In&&>>;

// Events the steps below write straight into slots of the outgoing batch (Emitter::emit_bulk):
// no capacity check per event, so a cheap lambda's loop can vectorise. Only trivially copyable
// types: a slot of any other would be default-constructed first (an allocation, perhaps, or an
// allocator other than the event's), so those are emitted one by one.
template <class T>
concept SlotWritable = std::is_trivially_copyable_v<T> && std::default_initializable<T>;

// The bulk loops: each step's loop over a batch is a function of its own, out of line, unrolled,
// and with its slots (or, in `each`, its events) restrict-qualified. Inlined into emit_bulk's
// callback, GCC addressed each slot as the batch's start plus its old size plus the index, and
// reloaded the user function's captures after every write to a slot, since an int64 slot may
// alias an int64 capture. This took W1 in the DSL from 25.5 to 17.2 instructions an event at
// T = 1000 and from 32.1 to 20.2 at T = 2^62 (bench/instructions.sh, dsl_one_thread).
// `__restrict` holds: the slots are the stage's own outgoing batch, and the events a batch it
// was handed, which nothing else touches while the loop runs.

template <class In, class F>
class MapStage final : public ProducerConsumer<In, map_result_t<In, F>> {
 public:
  using Out = map_result_t<In, F>;
  explicit MapStage(F f) : f_(std::move(f)) {}
  void handle_events(std::span<In> events, Emitter<Out>& out) override {
    if constexpr (SlotWritable<Out> && std::assignable_from<Out&, std::invoke_result_t<F&, In&&>>) {
      out.emit_bulk(events.size(), [&](std::span<Out> slots) { return map_into(events, slots.data(), f_); });
    } else {
      out.reserve(events.size());
      for (In& event : events) out.emit(std::invoke(f_, std::move(event)));
    }
  }

 private:
  // One of the bulk loops (see above).
  [[gnu::noinline]] static std::size_t map_into(std::span<In> events, Out* __restrict slots, F& f) {
#pragma GCC unroll 4
    for (In& event : events) *slots++ = std::invoke(f, std::move(event));
    return events.size();
  }

  F f_;
};

template <class T, class F>
class FilterStage final : public ProducerConsumer<T, T> {
 public:
  explicit FilterStage(F f) : f_(std::move(f)) {}
  void handle_events(std::span<T> events, Emitter<T>& out) override {
    if constexpr (SlotWritable<T> && std::is_copy_assignable_v<T>) {
      out.emit_bulk(events.size(), [&](std::span<T> slots) {
        return compact(events.data(), nullptr, events.size(), slots.data(), f_);
      });
    } else {
      out.reserve(events.size());
      for (T& event : events)
        if (std::invoke(f_, std::as_const(event))) out.emit(std::move(event));
    }
  }

 private:
  F f_;
};

// The parts of a fused step (sluice::fuse): a map's function, or a filter's predicate.
template <class F>
struct Mapping {
  F f;
};
template <class F>
struct Keeping {
  F f;
};

// The events a chain of fused parts emits, for events In.
template <class In, class... Parts>
struct fused_result {
  using type = In;
};
template <class In, class F, class... Rest>
struct fused_result<In, Mapping<F>, Rest...> : fused_result<map_result_t<In, F>, Rest...> {};
template <class In, class F, class... Rest>
struct fused_result<In, Keeping<F>, Rest...> : fused_result<In, Rest...> {};
template <class In, class... Parts>
using fused_result_t = typename fused_result<In, Parts...>::type;

template <class Part>
inline constexpr bool is_mapping = false;
template <class F>
inline constexpr bool is_mapping<Mapping<F>> = true;

// Maps and filters run one after the other on each event, in one stage: no batch, message or
// demand between them (Akka's operator fusion, Elixir Flow's stages).
template <class In, class... Parts>
class FusedStage final : public ProducerConsumer<In, fused_result_t<In, Parts...>> {
 public:
  using Out = fused_result_t<In, Parts...>;
  explicit FusedStage(std::tuple<Parts...> parts) : parts_(std::move(parts)) {}
  void handle_events(std::span<In> events, Emitter<Out>& out) override {
    if constexpr (SlotWritable<Out>) {
      // Each event gives at most one: a slot for every event is enough.
      out.emit_bulk(events.size(), [&](std::span<Out> slots) { return fuse_into(events, slots.data()); });
    } else {
      out.reserve(events.size());
      for (In& event : events) push<0>(std::move(event), [&](auto&& result) { out.emit(std::forward<decltype(result)>(result)); });
    }
  }

 private:
  // One of the bulk loops (see above).
  [[gnu::noinline]] std::size_t fuse_into(std::span<In> events, Out* __restrict slots) {
    std::size_t kept = 0;
#pragma GCC unroll 4
    for (In& event : events)
      push<0>(std::move(event), [&](auto&& result) { slots[kept++] = std::forward<decltype(result)>(result); });
    return kept;
  }

  // Takes the event through part I and on, and hands what comes out to `emit`; a filter that
  // rejects it ends its way.
  template <std::size_t I, class T, class Emit>
  void push(T&& event, Emit&& emit) {
    if constexpr (I == sizeof...(Parts)) {
      static_assert(std::same_as<std::remove_cvref_t<T>, Out>, "fused_result_t must name what the parts give");
      emit(std::forward<T>(event));
    } else {
      auto& part = std::get<I>(parts_);
      if constexpr (is_mapping<std::remove_cvref_t<decltype(part)>>) {
        push<I + 1>(std::invoke(part.f, std::forward<T>(event)), emit);
      } else if (std::invoke(part.f, std::as_const(event))) {
        push<I + 1>(std::forward<T>(event), emit);
      }
    }
  }

  std::tuple<Parts...> parts_;
};

template <class In, class F>
class EachStage final : public Consumer<In> {
 public:
  explicit EachStage(F f) : f_(std::move(f)) {}
  void handle_events(std::span<In> events) override { each_of(events.data(), events.size(), f_); }

 private:
  // One of the bulk loops (see above): the events are restrict-qualified, so that what the
  // function writes (a sum it captured, say) may stay in a register.
  [[gnu::noinline]] static void each_of(In* __restrict events, std::size_t count, F& f) {
#pragma GCC unroll 4
    for (In* event = events; event != events + count; ++event) std::invoke(f, std::move(*event));
  }

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
    using Iterator = std::ranges::iterator_t<R>;
    if constexpr (SlotWritable<Out> && std::assignable_from<Out&, std::ranges::range_reference_t<R>> &&
                  std::sized_sentinel_for<std::ranges::sentinel_t<R>, Iterator>) {
      // The count is known, so the batch grows by no more than what the range still has. Compared
      // in the wider of the two types: a demand may not fit a narrow difference type.
      using Difference = std::iter_difference_t<Iterator>;
      const Difference left = end - next;
      std::size_t count = demand;
      if constexpr (sizeof(Difference) <= sizeof(std::size_t)) {
        count = std::min(demand, static_cast<std::size_t>(left));
      } else if (left < static_cast<Difference>(demand)) {
        count = static_cast<std::size_t>(left);
      }
      out.emit_bulk(count, [&](std::span<Out> slots) { return copy_into(next, slots.data(), slots.size()); });
    } else {
      for (; demand > 0 && next != end; --demand, ++next) out.emit(*next);
    }
    if (next == end) out.done();
  }

 private:
  // One of the bulk loops (see above).
  [[gnu::noinline]] static std::size_t copy_into(std::ranges::iterator_t<R>& next, Out* __restrict slots, std::size_t count) {
#pragma GCC unroll 4
    for (std::size_t i = 0; i < count; ++i, ++next) slots[i] = *next;
    return count;
  }

  R range_;
  std::optional<std::ranges::iterator_t<R>> next_;  // begun on first demand: the stage never moves then
};

}  // namespace sluice::detail
