// Links the installed sluice and runs the seed workload: exits 0 only if the sum is right.
#include <sluice/sluice.hpp>
#include <sluice/stages/number_processor.hpp>
#include <sluice/stages/number_producer.hpp>
#include <sluice/stages/sum_consumer.hpp>

#include <cstdio>

int main() {
  using namespace sluice::stages;
  sluice::System system;
  auto sum = sluice::from<NumberProducer>(system, 1, 100) | sluice::via<NumberProcessor>(1000) | sluice::into<SumConsumer>();
  system.wait();
  std::printf("sum of the squares below 1000: %llu\n", static_cast<unsigned long long>(sum->sum()));
  return sum->sum() == 10416 ? 0 : 1;
}
