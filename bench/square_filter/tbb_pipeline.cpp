// W1 on oneTBB's parallel_pipeline: a serial source, a parallel square-and-filter, a serial sum.
#include "workload.hpp"

#include <sluice/stages/number_processor.hpp>
#include <sluice/stages/number_producer.hpp>
#include <sluice/stages/sum_consumer.hpp>

#include <oneapi/tbb/parallel_pipeline.h>
#include <oneapi/tbb/task_arena.h>

#include <cstddef>
#include <limits>
#include <vector>

namespace bench::square_filter {

namespace {

using sluice::stages::NumberProcessor;
using sluice::stages::NumberProducer;
using sluice::stages::SumConsumer;

// parallel_pipeline filters cannot drop an item, so a dropped value travels as this sentinel.
constexpr std::int64_t dropped = std::numeric_limits<std::int64_t>::max();

std::uint64_t per_item(std::int64_t n, std::int64_t limit, std::size_t tokens) {
  std::int64_t next = 1;
  std::uint64_t sum = 0;
  oneapi::tbb::parallel_pipeline(
      tokens,
      oneapi::tbb::make_filter<void, std::int64_t>(oneapi::tbb::filter_mode::serial_in_order,
                                                   [&](oneapi::tbb::flow_control& control) -> std::int64_t {
                                                     if (next > n) {
                                                       control.stop();
                                                       return 0;
                                                     }
                                                     return next++;
                                                   }) &
          oneapi::tbb::make_filter<std::int64_t, std::int64_t>(oneapi::tbb::filter_mode::parallel,
                                                               [limit](std::int64_t x) {
                                                                 const std::int64_t s = square(x);
                                                                 return s < limit ? s : dropped;
                                                               }) &
          oneapi::tbb::make_filter<std::int64_t, void>(oneapi::tbb::filter_mode::serial_in_order, [&](std::int64_t s) {
            if (s != dropped) sum += static_cast<std::uint64_t>(s);
          }));
  return sum;
}

// Batches are made, filtered and summed by the sluice stages' own loops (NumberProducer::fill_from
// and the others), so that oneTBB and sluice differ only in how they move batches. Batches travel
// as indices into a ring of `tokens` buffers: at most `tokens` batches are in flight, so batch i's
// buffer is free again by the time batch i + tokens is made.
std::uint64_t batched(std::int64_t n, std::int64_t limit, std::size_t batch, std::size_t tokens) {
  std::vector<std::vector<std::int64_t>> buffers(tokens);
  for (auto& buffer : buffers) buffer.reserve(batch);
  std::int64_t next = 1;
  std::size_t made = 0;
  std::uint64_t sum = 0;
  oneapi::tbb::parallel_pipeline(
      tokens,
      oneapi::tbb::make_filter<void, std::vector<std::int64_t>*>(
          oneapi::tbb::filter_mode::serial_in_order,
          [&](oneapi::tbb::flow_control& control) -> std::vector<std::int64_t>* {
            if (next > n) {
              control.stop();
              return nullptr;
            }
            auto* buffer = &buffers[made++ % tokens];
            buffer->resize(static_cast<std::size_t>(std::min<std::int64_t>(static_cast<std::int64_t>(batch), n - next + 1)));
            NumberProducer::fill_from(*buffer, next);
            next += static_cast<std::int64_t>(buffer->size());
            return buffer;
          }) &
          oneapi::tbb::make_filter<std::vector<std::int64_t>*, std::vector<std::int64_t>*>(
              oneapi::tbb::filter_mode::parallel,
              [limit](std::vector<std::int64_t>* buffer) {
                buffer->resize(NumberProcessor::keep_squares_below(*buffer, buffer->data(), limit));
                return buffer;
              }) &
          oneapi::tbb::make_filter<std::vector<std::int64_t>*, void>(oneapi::tbb::filter_mode::serial_in_order,
                                                                      [&](std::vector<std::int64_t>* buffer) {
                                                                        sum = SumConsumer::add_all(sum, *buffer);
                                                                      }));
  return sum;
}

}  // namespace

std::uint64_t tbb_pipeline(std::int64_t n, std::int64_t limit, std::size_t batch, std::size_t tokens) {
  return batch == 1 ? per_item(n, limit, tokens) : batched(n, limit, batch, tokens);
}

std::uint64_t tbb_pipeline_one_thread(std::int64_t n, std::int64_t limit, std::size_t batch, std::size_t tokens) {
  oneapi::tbb::task_arena one_thread(1);
  std::uint64_t sum = 0;
  one_thread.execute([&] { sum = tbb_pipeline(n, limit, batch, tokens); });
  return sum;
}

}  // namespace bench::square_filter
