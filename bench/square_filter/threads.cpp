// W1 as two plain threads pipelined by stage, with no framework: the main thread makes and sums
// batches, a second thread squares and filters them, and batches cross between the two cores
// through spinning queues. It shows what one straightforward split of W1's stages over this
// machine's two cores gives, the kind of parallelism open to an engine whose stages each run on
// one thread at a time (sluice, GenStage); oneTBB's pipeline instead runs its middle filter on
// both cores at once.
#include "workload.hpp"

#include <sluice/stages/number_processor.hpp>
#include <sluice/stages/number_producer.hpp>
#include <sluice/stages/sum_consumer.hpp>

#include <oneapi/tbb/concurrent_queue.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <stop_token>
#include <thread>
#include <vector>

namespace bench::square_filter {

namespace {

using sluice::stages::NumberProcessor;
using sluice::stages::NumberProducer;
using sluice::stages::SumConsumer;

struct Slot {
  std::vector<std::int64_t> values;
  std::size_t size = 0;
};
using Queue = oneapi::tbb::concurrent_queue<Slot*>;

// Spins: each thread has a core of its own, and sleeping would measure the wake-ups. nullptr
// once `stop` is requested (the main thread left early).
Slot* take(Queue& queue, std::stop_token stop) {
  Slot* slot = nullptr;
  while (!queue.try_pop(slot))
    if (stop.stop_requested()) return nullptr;
  return slot;
}

}  // namespace

std::uint64_t two_threads_pipelined(std::int64_t n, std::int64_t limit, std::size_t batch, std::size_t in_flight) {
  if (batch == 0 || in_flight == 0) throw std::invalid_argument("two_threads_pipelined: batch and in_flight must be at least 1");
  if (n < 1) return 0;
  std::vector<Slot> made_slots(in_flight), kept_slots(in_flight);
  Queue free_made, to_filter, free_kept, to_sum;
  for (Slot& slot : made_slots) {
    slot.values.resize(batch);
    free_made.push(&slot);
  }
  for (Slot& slot : kept_slots) {
    slot.values.resize(batch);
    free_kept.push(&slot);
  }
  const std::size_t batches = (static_cast<std::size_t>(n) + batch - 1) / batch;
  // Declared after the queues, so that it is joined before they go.
  std::jthread filter([&](std::stop_token stop) {
    for (std::size_t i = 0; i < batches; ++i) {
      Slot* in = take(to_filter, stop);
      Slot* out = in != nullptr ? take(free_kept, stop) : nullptr;
      if (out == nullptr) return;
      out->size = NumberProcessor::keep_squares_below(std::span(in->values.data(), in->size), out->values.data(), limit);
      free_made.push(in);
      to_sum.push(out);
    }
  });
  std::uint64_t sum = 0;
  std::int64_t next = 1;
  std::size_t summed = 0;
  // Makes a batch whenever a slot is free, and sums whatever the filter has finished.
  while (summed < batches) {
    Slot* slot = nullptr;
    if (next <= n && free_made.try_pop(slot)) {
      slot->size = static_cast<std::size_t>(std::min<std::int64_t>(static_cast<std::int64_t>(batch), n - next + 1));
      NumberProducer::fill_from(std::span(slot->values.data(), slot->size), next);
      next += static_cast<std::int64_t>(slot->size);
      to_filter.push(slot);
    }
    if (to_sum.try_pop(slot)) {
      sum = SumConsumer::add_all(sum, std::span(slot->values.data(), slot->size));
      ++summed;
      free_kept.push(slot);
    }
  }
  return sum;
}

}  // namespace bench::square_filter
