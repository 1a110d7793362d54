#pragma once
// A producer's buffer for events emitted beyond demand (GenStage's buffer_size/buffer_keep).
#include <sluice/detail/batch.hpp>
#include <sluice/stage.hpp>

#include <algorithm>
#include <cstddef>
#include <deque>
#include <iterator>
#include <vector>

namespace sluice::detail {

template <class T>
class EventBuffer {
 public:
  EventBuffer(std::size_t capacity, BufferKeep keep) : capacity_(capacity), keep_(keep) {}

  // Moves `incoming` (in order) into the buffer; returns how many events were discarded.
  std::size_t push(Batch<T>& incoming) {
    std::size_t discarded = 0;
    auto first = incoming.begin();
    if (keep_ == BufferKeep::first) {
      std::size_t room = capacity_ - std::min(capacity_, events_.size());
      if (incoming.size() > room) discarded = incoming.size() - room;
      events_.insert(events_.end(), std::make_move_iterator(first),
                     std::make_move_iterator(first + static_cast<std::ptrdiff_t>(incoming.size() - discarded)));
    } else {
      if (incoming.size() >= capacity_) {
        discarded = events_.size() + incoming.size() - capacity_;
        events_.clear();
        first += static_cast<std::ptrdiff_t>(incoming.size() - capacity_);
      } else if (events_.size() + incoming.size() > capacity_) {
        discarded = events_.size() + incoming.size() - capacity_;
        events_.erase(events_.begin(), events_.begin() + static_cast<std::ptrdiff_t>(discarded));
      }
      events_.insert(events_.end(), std::make_move_iterator(first), std::make_move_iterator(incoming.end()));
    }
    incoming.clear();
    return discarded;
  }

  // Puts events back at the head of the buffer, ahead of everything in it.
  void push_front(Batch<T>& events) {
    events_.insert(events_.begin(), std::make_move_iterator(events.begin()), std::make_move_iterator(events.end()));
    events.clear();
  }

  // Moves up to `count` of the oldest events into `out`.
  void take(std::size_t count, Batch<T>& out) {
    auto n = static_cast<std::ptrdiff_t>(std::min(count, events_.size()));
    out.insert(out.end(), std::make_move_iterator(events_.begin()), std::make_move_iterator(events_.begin() + n));
    events_.erase(events_.begin(), events_.begin() + n);
  }

  std::size_t size() const noexcept { return events_.size(); }
  bool empty() const noexcept { return events_.empty(); }
  void clear() noexcept { events_.clear(); }

 private:
  std::deque<T> events_;
  std::size_t capacity_;
  BufferKeep keep_;
};

}  // namespace sluice::detail
