// W2 (b) on a plain pool of std::threads pulling from a shared counter.
#include "workload.hpp"

#include <atomic>
#include <thread>
#include <vector>

namespace bench::async_map {

std::int64_t thread_pool_sleep(std::int64_t m, std::size_t threads, std::chrono::milliseconds sleep) {
  std::atomic<std::int64_t> next{1};
  std::atomic<std::int64_t> done{0};
  {
    std::vector<std::jthread> pool;
    for (std::size_t t = 0; t < threads; ++t)
      pool.emplace_back([&] {
        while (next.fetch_add(1) <= m) {
          std::this_thread::sleep_for(sleep);
          done.fetch_add(1);
        }
      });
  }
  return done.load();
}

}  // namespace bench::async_map
