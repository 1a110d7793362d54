#pragma once
// The container events travel in between stages.
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

namespace sluice::detail {

// std::allocator, except that a new element is default-initialised rather than value-
// initialised. Emitter::emit_bulk grows a batch and lets a loop overwrite the new slots, and
// with std::allocator each such growth first zero-fills them (a memset of every batch).
// Hand-written because neither the standard library nor our Debian libraries offer it.
template <class T>
class DefaultInitAllocator : public std::allocator<T> {
 public:
  template <class U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  using std::allocator<T>::allocator;

  template <class U>
  void construct(U* slot) noexcept(std::is_nothrow_default_constructible_v<U>) {
    ::new (static_cast<void*>(slot)) U;
  }
  template <class U, class... Args>
  void construct(U* slot, Args&&... args) {
    std::construct_at(slot, std::forward<Args>(args)...);
  }
};

template <class T>
using Batch = std::vector<T, DefaultInitAllocator<T>>;

}  // namespace sluice::detail
