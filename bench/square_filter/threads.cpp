// W1 as two plain threads pipelined by stage, with no framework: the main thread makes and sums
// batches, a second thread squares and filters them, and batches cross between the two cores
// through spinning queues. This is the most that splitting W1's stages across this machine's two
// cores can give any engine whose stages each run on one thread at a time (sluice, GenStage);
// oneTBB's pipeline instead runs its middle filter on both cores at once.
#include "workload.hpp"

#include <sluice/stages/number_processor.hpp>
#include <sluice/stages/number_producer.hpp>
#include <sluice/stages/sum_consumer.hpp>

#include <oneapi/tbb/concurrent_queue.h>

#include <algorithm>
#include <thread>
#include <vector>

namespace bench::square_filter {

namespace {

struct Slot {
  std::vector<std::int64_t> values;
  std::size_t size = 0;
};
using Queue = oneapi::tbb::concurrent_queue<Slot*>;

// Spins: both threads have a core of their own, and sleeping would measure the wake-ups.
Slot* take(Queue& queue) {
  Slot* slot = nullptr;
  while (!queue.try_pop(slot)) {
  }
  return slot;
}

}  // namespace

std::uint64_t two_threads_pipelined(std::int64_t n, std::int64_t limit, std::size_t batch, std::size_t in_flight) {
  using namespace sluice::stages;
  std::vector<Slot> made(in_flight), kept(in_flight);
  Queue free_made, to_filter, free_kept, to_sum;
  for (Slot& slot : made) {
    slot.values.resize(batch);
    free_made.push(&slot);
  }
  for (Slot& slot : kept) {
    slot.values.resize(batch);
    free_kept.push(&slot);
  }
  const auto batches = static_cast<std::size_t>((n + static_cast<std::int64_t>(batch) - 1) / static_cast<std::int64_t>(batch));
  std::jthread filter([&] {
    for (std::size_t i = 0; i < batches; ++i) {
      Slot* in = take(to_filter);
      Slot* out = take(free_kept);
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
