#pragma once
// Evaluation over several processes (docs/distributed.md): the evaluators of
// train/evaluate*.hpp form their batches exactly as one process does, each rank runs
// every size()-th batch, and the per-example outputs and the loss sums are shared so that
// every rank ends with the whole set's predictions and computes the same metrics. The
// batches are those of one process, so the numbers are too.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "../dist/communicator.hpp"

namespace addrop::train {

/// Whether this rank runs evaluation batch `batch` (round robin over the ranks).
template <class Comm>
bool runs_batch(const Comm& comm, int64_t batch) {
  return batch % comm.size() == comm.rank();
}

/// items[i] for every i in `mine` (this rank's) sent to every rank; afterwards every rank
/// holds every rank's items. Item: a contiguous container of trivially copyable values
/// (std::string, std::vector<int32_t>).
template <class Comm, class Item>
void share_items(Comm& comm, std::vector<Item>& items, const std::vector<int64_t>& mine) {
  using V = typename Item::value_type;
  static_assert(std::is_trivially_copyable_v<V>);
  if (comm.size() == 1) return;
  std::vector<std::byte> bytes;
  auto put = [&](const void* p, std::size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    bytes.insert(bytes.end(), b, b + n);
  };
  for (int64_t i : mine) {
    const Item& item = items.at(static_cast<std::size_t>(i));
    const int64_t n = static_cast<int64_t>(item.size());
    put(&i, sizeof i);
    put(&n, sizeof n);
    put(item.data(), static_cast<std::size_t>(n) * sizeof(V));
  }
  for (const auto& from : comm.host_all_gather(bytes)) {
    std::size_t at = 0;
    auto get = [&](void* p, std::size_t n) {
      if (at + n > from.size()) throw std::runtime_error("share_items: a truncated message");
      std::memcpy(p, from.data() + at, n);
      at += n;
    };
    while (at < from.size()) {
      int64_t i = 0, n = 0;
      get(&i, sizeof i);
      get(&n, sizeof n);
      Item& item = items.at(static_cast<std::size_t>(i));
      item.resize(static_cast<std::size_t>(n));
      get(item.data(), static_cast<std::size_t>(n) * sizeof(V));
    }
  }
}

/// Sums of a few host values over the ranks, in place.
template <class Comm>
void sum_over_ranks(Comm& comm, std::span<double> values) {
  if (comm.size() > 1) comm.host_all_reduce_sum(values);
}

}  // namespace addrop::train
