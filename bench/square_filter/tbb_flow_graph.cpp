// W1 on a oneTBB flow graph: input_node -> limiter_node -> function_node (square) ->
// multifunction_node (keep) -> serial function_node (sum). The limiter bounds what is in
// flight, as demand does for sluice, so memory stays flat. The keep node really drops: a
// dropped item only returns its limiter token, through a second port. Batches are made and
// summed by the sluice stages' own loops, as in tbb_pipeline.cpp.
#include "workload.hpp"

#include <sluice/stages/number_producer.hpp>
#include <sluice/stages/sum_consumer.hpp>

#include <oneapi/tbb/flow_graph.h>

#include <algorithm>
#include <memory>
#include <thread>
#include <tuple>
#include <vector>

namespace bench::square_filter {

namespace {

namespace flow = oneapi::tbb::flow;
using Batch = std::shared_ptr<std::vector<std::int64_t>>;

// `make` produces the next item, `square_all` squares it in place, `keep` returns whether
// anything of it is kept (trimming a batch), `add` adds a kept item to the sum.
template <class Item, class Make, class Square, class Keep, class Add>
std::uint64_t run_graph(std::int64_t n, Make make, Square square_all, Keep keep, Add add) {
  const std::size_t in_flight = 8 * std::max(1u, std::thread::hardware_concurrency());
  flow::graph graph;
  std::int64_t next = 1;
  std::uint64_t sum = 0;
  flow::input_node<Item> source(graph, [&](oneapi::tbb::flow_control& control) -> Item {
    if (next > n) {
      control.stop();
      return Item{};
    }
    return make(next);
  });
  // An int decrementer counts each message; a continue_msg one would wait for every predecessor.
  flow::limiter_node<Item, int> limiter(graph, in_flight);
  flow::function_node<Item, Item> squares(graph, flow::unlimited, square_all);
  flow::multifunction_node<Item, std::tuple<Item, int>> kept(
      graph, flow::unlimited, [&](const Item& item, auto& ports) {
        if (keep(item)) {
          std::get<0>(ports).try_put(item);
        } else {
          std::get<1>(ports).try_put(1);
        }
      });
  flow::function_node<Item, int> summing(graph, flow::serial, [&](const Item& item) {
    add(item, sum);
    return 1;
  });
  flow::make_edge(source, limiter);
  flow::make_edge(limiter, squares);
  flow::make_edge(squares, kept);
  flow::make_edge(flow::output_port<0>(kept), summing);
  flow::make_edge(flow::output_port<1>(kept), limiter.decrementer());
  flow::make_edge(summing, limiter.decrementer());
  source.activate();
  graph.wait_for_all();
  return sum;
}

}  // namespace

std::uint64_t tbb_flow_graph(std::int64_t n, std::int64_t limit, std::size_t batch) {
  if (batch == 1) {
    return run_graph<std::int64_t>(
        n, [](std::int64_t& next) { return next++; }, [](std::int64_t x) { return square(x); },
        [limit](std::int64_t s) { return s < limit; },
        [](std::int64_t s, std::uint64_t& sum) { sum += static_cast<std::uint64_t>(s); });
  }
  return run_graph<Batch>(
      n,
      [n, batch](std::int64_t& next) {
        const auto size = static_cast<std::size_t>(std::min<std::int64_t>(static_cast<std::int64_t>(batch), n - next + 1));
        auto values = std::make_shared<std::vector<std::int64_t>>(size);
        sluice::stages::NumberProducer::fill_from(*values, next);
        next += static_cast<std::int64_t>(size);
        return values;
      },
      [](const Batch& values) {
        for (auto& value : *values) value = square(value);
        return values;
      },
      [limit](const Batch& values) {
        std::size_t kept_count = 0;
        for (std::int64_t s : *values) {
          (*values)[kept_count] = s;
          kept_count += s < limit ? 1 : 0;
        }
        values->resize(kept_count);
        return true;  // the (possibly empty) batch still goes on: the sum returns its token
      },
      [](const Batch& values, std::uint64_t& sum) { sum = sluice::stages::SumConsumer::add_all(sum, *values); });
}

}  // namespace bench::square_filter
