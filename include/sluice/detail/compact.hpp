#pragma once
// The loop behind every filter over a batch: the DSL's filter step and the expression
// language's Expression::select.
#include <cstddef>
#include <functional>
#include <type_traits>

namespace sluice::detail {

// Copies the events whose key passes `keep` to `kept`, in order; returns how many. `keys[i]` is
// events[i]'s key; `keys` is nullptr when the events are their own keys (a loop with one
// cursor fewer). `kept` needs room for every event.
// Out of line, unrolled, and with `kept` restrict-qualified: inlined into an emit_bulk callback,
// GCC addressed each slot from two registers and reloaded what `keep` captured after every
// write to a slot (include/sluice/detail/pipeline_stages.hpp's bulk loops say more). `kept` must
// be storage nothing else reads or writes meanwhile: a stage's outgoing batch, or a fresh one.
template <class T, class Keys, class Keep>
[[gnu::noinline]] std::size_t compact(const T* events, Keys keys, std::size_t count, T* __restrict kept, Keep&& keep) {
  std::size_t kept_count = 0;
  const T* const end = events + count;
#pragma GCC unroll 4
  for (const T* event = events; event != end; ++event) {
    bool keeps = false;
    if constexpr (std::is_null_pointer_v<Keys>) {
      keeps = std::invoke(keep, *event);
    } else {
      keeps = std::invoke(keep, *keys++);
    }
    if constexpr (sizeof(T) <= 2 * sizeof(void*)) {
      // Branch-free: every event is copied, and only a kept one moves the cursor on. It pays
      // while a copy is a register or two; a larger event is copied only when kept.
      kept[kept_count] = *event;
      kept_count += keeps ? 1 : 0;
    } else if (keeps) {
      kept[kept_count++] = *event;
    }
  }
  return kept_count;
}

}  // namespace sluice::detail
