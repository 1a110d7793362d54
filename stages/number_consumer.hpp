#pragma once
// GenStage's classic NumberConsumer: prints each event on its own line.
#include <sluice/stage.hpp>

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>

namespace sluice::stages {

class NumberConsumer final : public Consumer<std::int64_t> {
 public:
  explicit NumberConsumer(std::FILE* out = stdout) : out_(out) {}

  // One write per batch, not per event.
  void handle_events(std::span<std::int64_t> events) override {
    text_.clear();
    char digits[24];
    for (std::int64_t x : events) {
      auto [end, ec] = std::to_chars(digits, digits + sizeof digits, x);
      text_.append(digits, end);
      text_.push_back('\n');
    }
    std::fwrite(text_.data(), 1, text_.size(), out_);
  }

 private:
  std::FILE* out_;
  std::string text_;
};

}  // namespace sluice::stages
