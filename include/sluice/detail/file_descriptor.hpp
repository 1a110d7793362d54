#pragma once
// A POSIX file descriptor that closes itself, unless it was only borrowed (standard input or
// output). Hand-written: the standard library has no such type and no Debian library we use
// offers one.
#include <unistd.h>

#include <utility>

namespace sluice::detail {

class FileDescriptor {
 public:
  FileDescriptor() noexcept = default;
  // Takes `descriptor` (-1 for none); a borrowed one is never closed.
  explicit FileDescriptor(int descriptor, bool borrowed = false) noexcept
      : descriptor_(descriptor), owned_(descriptor >= 0 && !borrowed) {}
  FileDescriptor(FileDescriptor&& other) noexcept
      : descriptor_(std::exchange(other.descriptor_, -1)), owned_(std::exchange(other.owned_, false)) {}
  FileDescriptor& operator=(FileDescriptor&& other) noexcept {
    if (this != &other) {
      close();
      descriptor_ = std::exchange(other.descriptor_, -1);
      owned_ = std::exchange(other.owned_, false);
    }
    return *this;
  }
  ~FileDescriptor() { close(); }

  int get() const noexcept { return descriptor_; }
  bool valid() const noexcept { return descriptor_ >= 0; }
  void close() noexcept {
    if (owned_) ::close(descriptor_);
    descriptor_ = -1;
    owned_ = false;
  }

 private:
  int descriptor_ = -1;
  bool owned_ = false;
};

}  // namespace sluice::detail
