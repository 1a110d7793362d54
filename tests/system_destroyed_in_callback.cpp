// Destroys a System from inside one of its own stages' callbacks. The destructor would wait for
// that stage for ever, so it aborts instead, naming the stage: ctest matches the message.
#include <sluice/sluice.hpp>

#include <any>
#include <cstdint>
#include <optional>

namespace {

class Destroyer final : public sluice::Producer<std::int64_t> {
 public:
  explicit Destroyer(std::optional<sluice::System>& system) : system_(system) {}
  void handle_demand(std::size_t, sluice::Emitter<std::int64_t>&) override {}
  void handle_info(std::any&, sluice::Emitter<std::int64_t>&) override { system_.reset(); }

 private:
  std::optional<sluice::System>& system_;
};

}  // namespace

int main() {
  std::optional<sluice::System> system(std::in_place, 1);
  auto destroyer = system->spawn<Destroyer>("destroyer", system);
  system->send_info(destroyer, std::any());
  // Never returns: the destroyer aborts the process, or, were it to hang, ctest's timeout fails
  // the test.
  system->wait();
}
