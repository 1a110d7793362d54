#pragma once
// How a producer hands its events to its consumers: policies chosen per stage with
// StageOptions::dispatcher (small tag types, as oneTBB's policies are).
#include <cstddef>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

namespace sluice {

// A partition's name: a number (0..N-1 when the partitions are counted) or a string.
using PartitionKey = std::variant<std::size_t, std::string>;

std::string to_string(const PartitionKey& key);

namespace dispatch {

// The default. Each batch goes to the consumer with the largest outstanding demand, up to that
// demand, then to the next; ties keep the order of GenStage's demand list.
struct Demand {
  // Shuffle the consumers once before the first dispatch, so that the first subscriber is not
  // always served first.
  bool shuffle_demands_on_first_dispatch = false;
};

// Every event goes to every consumer; the producer is asked for the smallest outstanding
// demand. A consumer may subscribe with a selector (SubscribeOptions::selector); events it
// rejects are credited back to its demand.
struct Broadcast {};

// Events go to the one consumer of the partition `hash` names; std::nullopt drops the event.
// A partition's events beyond its consumer's demand wait for that partition.
template <class T>
struct Partition {
  using Key = std::optional<PartitionKey>;
  std::vector<PartitionKey> partitions;
  std::function<Key(const T&)> hash;
  // Used instead of `hash` when set (one of the two must be): the keys of a whole batch at once,
  // one per event, appended to `keys`. For hashes that cost less per event over a column, as
  // the CLI's key expressions do.
  std::function<void(std::span<const T> events, std::vector<Key>& keys)> hash_batch{};

  // Partitions numbered 0..count-1.
  static Partition numbered(std::size_t count, std::function<Key(const T&)> hash) {
    Partition partition{{}, std::move(hash)};
    for (std::size_t i = 0; i < count; ++i) partition.partitions.emplace_back(i);
    return partition;
  }
  // Partitions with names.
  static Partition named(const std::vector<std::string>& names,
                         std::function<Key(const T&)> hash) {
    Partition partition{{}, std::move(hash)};
    for (const auto& name : names) partition.partitions.emplace_back(name);
    return partition;
  }
};

}  // namespace dispatch

inline std::string to_string(const PartitionKey& key) {
  if (const auto* number = std::get_if<std::size_t>(&key)) return std::to_string(*number);
  return std::get<std::string>(key);
}

}  // namespace sluice
