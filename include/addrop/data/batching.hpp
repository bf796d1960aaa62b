#pragma once
// From tokenized features to padded mini-batches: an epoch sampler (shuffle, optional
// length bucketing, drop_last) that is a pure function of (seed, epoch), dynamic
// padding to the longest sequence of each batch, and SequenceBatches, the batch source
// (train::BatchSource) that feeds sequence features to train::Trainer.
//
// Shuffles are Fisher-Yates driven by Philox4x32-10 (backend/philox.hpp) with an
// unbiased bounded draw by rejection, so an epoch's order is the same on every platform
// and standard library (std::shuffle and std::uniform_int_distribution are not).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <span>
#include <vector>

#include "../backend/philox.hpp"
#include "../models/batch.hpp"

namespace addrop::data {

/// One tokenized example: ids with special tokens, segment ids (empty = all 0),
/// a class label or a regression target, and its position in the example list.
struct Feature {
  std::vector<int32_t> ids, type_ids;
  int32_t label = -1;
  double target = 0;
  int64_t index = 0;
};

struct SamplerOptions {
  int64_t batch_size = 32;
  bool shuffle = true;
  /// Sort each pool of `bucket_window` batches by length before cutting it into batches
  /// (less padding); batch order is then shuffled when `shuffle` is on.
  bool bucket_by_length = false;
  int64_t bucket_window = 100;  ///< batches per bucket pool
  uint64_t seed = 42;
  bool drop_last = false;  ///< drop the one incomplete batch, if any
};

namespace batching_detail {

/// 64-bit draws from the Philox stream (seed, tag ^ epoch); bounded draws by rejection.
class Draws {
 public:
  Draws(uint64_t seed, uint64_t stream) : seed_(seed), stream_(stream) {}
  uint64_t next() {
    if (used_ == 2) {
      random::Philox4x32::generate(seed_, counter_++, stream_, words_);
      used_ = 0;
    }
    const uint64_t v = (static_cast<uint64_t>(words_[2 * used_]) << 32) | words_[2 * used_ + 1];
    ++used_;
    return v;
  }
  /// Uniform in [0, n), n >= 1, without modulo bias.
  uint64_t below(uint64_t n) {
    const uint64_t limit = std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % n;
    for (;;) {
      const uint64_t v = next();
      if (v < limit) return v % n;
    }
  }

 private:
  uint64_t seed_, stream_, counter_ = 0;
  uint32_t words_[4] = {};
  int used_ = 2;
};

inline constexpr uint64_t kOrderTag = 0x6f72646572000000ull;    // "order"
inline constexpr uint64_t kBatchesTag = 0x6261746368000000ull;  // "batch"

template <class T>
void fisher_yates(std::vector<T>& v, Draws& draws) {
  for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[draws.below(i)]);
}

inline void check_sampler(const SamplerOptions& options) {
  if (options.batch_size <= 0)
    throw std::invalid_argument("epoch_batches: batch_size must be positive, got " + std::to_string(options.batch_size));
  if (options.bucket_by_length && options.bucket_window <= 0)
    throw std::invalid_argument("epoch_batches: bucket_window must be positive, got " +
                                std::to_string(options.bucket_window));
}

}  // namespace batching_detail

/// How many batches epoch_batches gives for `n` features, in every epoch.
inline int64_t batches_per_epoch(int64_t n, const SamplerOptions& options) {
  batching_detail::check_sampler(options);
  return n / options.batch_size + (n % options.batch_size != 0 && !options.drop_last ? 1 : 0);
}

/// The batches of one epoch as lists of positions into examples of the given lengths
/// (what bucketing sorts by). Without drop_last, every position occurs exactly once; the
/// result depends only on (lengths, options, epoch). Without shuffle and bucketing the
/// order is 0, 1, 2, ...
inline std::vector<std::vector<int64_t>> epoch_batches(std::span<const int64_t> lengths, const SamplerOptions& options,
                                                       int64_t epoch) {
  using namespace batching_detail;
  check_sampler(options);
  const auto n = static_cast<int64_t>(lengths.size());
  const auto e = static_cast<uint64_t>(epoch);
  std::vector<int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  if (options.shuffle) {
    Draws draws(options.seed, kOrderTag ^ e);
    fisher_yates(order, draws);
  }
  const int64_t bs = options.batch_size;
  if (options.bucket_by_length) {
    const int64_t pool = bs * options.bucket_window;
    for (int64_t start = 0; start < n; start += pool) {
      const auto first = order.begin() + start, last = order.begin() + std::min(n, start + pool);
      std::stable_sort(first, last, [&](int64_t a, int64_t b) {
        return lengths[static_cast<std::size_t>(a)] < lengths[static_cast<std::size_t>(b)];
      });
    }
  }
  // Pools hold whole batches, so only the very last batch can be incomplete.
  std::vector<std::vector<int64_t>> batches;
  batches.reserve(static_cast<std::size_t>((n + bs - 1) / bs));
  for (int64_t start = 0; start < n; start += bs) {
    const int64_t stop = std::min(n, start + bs);
    if (stop - start < bs && options.drop_last) break;
    batches.emplace_back(order.begin() + start, order.begin() + stop);
  }
  if (options.bucket_by_length && options.shuffle) {
    Draws draws(options.seed, kBatchesTag ^ e);
    fisher_yates(batches, draws);
  }
  return batches;
}

/// The batches of one epoch over `features`, bucketed by their token counts.
inline std::vector<std::vector<int64_t>> epoch_batches(const std::vector<Feature>& features,
                                                       const SamplerOptions& options, int64_t epoch) {
  std::vector<int64_t> lengths(features.size());
  for (std::size_t i = 0; i < features.size(); ++i) lengths[i] = static_cast<int64_t>(features[i].ids.size());
  return epoch_batches(std::span<const int64_t>(lengths), options, epoch);
}

/// Pads features[indices] to the longest of them: input_ids (pad_id), attention_mask
/// (1 token / 0 pad), token_type_ids (0 for pads; left empty when !with_type_ids),
/// and labels (classification) or targets (regression). Throws std::invalid_argument
/// for an empty selection, an index out of range, or type_ids of the wrong length.
inline models::Batch make_batch(const std::vector<Feature>& features, const std::vector<int64_t>& indices,
                                int32_t pad_id, bool regression, bool with_type_ids = true) {
  if (indices.empty()) throw std::invalid_argument("make_batch: no indices");
  std::size_t length = 0;
  for (std::size_t b = 0; b < indices.size(); ++b) {
    const int64_t i = indices[b];
    if (i < 0 || i >= static_cast<int64_t>(features.size()))
      throw std::invalid_argument("make_batch: index " + std::to_string(i) + " (batch row " + std::to_string(b) +
                                  ") is outside [0, " + std::to_string(features.size()) + ")");
    const Feature& f = features[static_cast<std::size_t>(i)];
    if (!f.type_ids.empty() && f.type_ids.size() != f.ids.size())
      throw std::invalid_argument("make_batch: feature " + std::to_string(i) + " has " +
                                  std::to_string(f.type_ids.size()) + " type ids for " + std::to_string(f.ids.size()) +
                                  " tokens");
    length = std::max(length, f.ids.size());
  }
  if (length == 0) throw std::invalid_argument("make_batch: every selected feature is empty");
  models::Batch batch;
  batch.size = static_cast<int64_t>(indices.size());
  batch.length = static_cast<int64_t>(length);
  const std::size_t total = indices.size() * length;
  batch.input_ids.assign(total, pad_id);
  batch.attention_mask.assign(total, 0);
  if (with_type_ids) batch.token_type_ids.assign(total, 0);
  if (regression) batch.targets.resize(indices.size());
  else batch.labels.resize(indices.size());
  for (std::size_t b = 0; b < indices.size(); ++b) {
    const Feature& f = features[static_cast<std::size_t>(indices[b])];
    const std::size_t row = b * length;
    std::copy(f.ids.begin(), f.ids.end(), batch.input_ids.begin() + static_cast<std::ptrdiff_t>(row));
    std::fill_n(batch.attention_mask.begin() + static_cast<std::ptrdiff_t>(row), f.ids.size(), 1);
    if (with_type_ids && !f.type_ids.empty())
      std::copy(f.type_ids.begin(), f.type_ids.end(), batch.token_type_ids.begin() + static_cast<std::ptrdiff_t>(row));
    if (regression) batch.targets[b] = f.target;
    else batch.labels[b] = f.label;
  }
  return batch;
}

/// One epoch's batches, made on demand: a sized input range over `plan` (lists of
/// positions, as epoch_batches gives them) whose elements are `make(indices)`, each built
/// only when the loop reaches it. What SequenceBatches and TokenBatches return per epoch.
template <class Make>
class LazyBatches {
 public:
  using value_type = std::remove_cvref_t<std::invoke_result_t<const Make&, const std::vector<int64_t>&>>;

  LazyBatches(std::vector<std::vector<int64_t>> plan, Make make) : plan_(std::move(plan)), make_(std::move(make)) {}

  class iterator {
   public:
    using iterator_concept = std::input_iterator_tag;
    using value_type = LazyBatches::value_type;
    using difference_type = std::ptrdiff_t;

    iterator() = default;
    value_type operator*() const { return owner_->make_(owner_->plan_[i_]); }
    iterator& operator++() {
      ++i_;
      return *this;
    }
    void operator++(int) { ++i_; }
    bool operator==(std::default_sentinel_t) const { return i_ == owner_->plan_.size(); }

   private:
    friend class LazyBatches;
    explicit iterator(const LazyBatches* owner) : owner_(owner) {}
    const LazyBatches* owner_ = nullptr;
    std::size_t i_ = 0;
  };

  iterator begin() const { return iterator(this); }
  std::default_sentinel_t end() const { return {}; }
  std::size_t size() const { return plan_.size(); }
  /// The positions of every batch, in order.
  const std::vector<std::vector<int64_t>>& plan() const { return plan_; }

 private:
  std::vector<std::vector<int64_t>> plan_;
  Make make_;
};

/// The batch source (train::BatchSource) of sequence classification and regression: in
/// epoch e, the batches of epoch_batches(features, sampler, e), each padded by make_batch
/// (labels, or targets when `regression`). Keeps a reference: `features` must outlive it
/// and the ranges batches() returns.
///
///   data::SequenceBatches source(train_features, {.batch_size = 32, .seed = 1}, pad_id, false);
///   trainer.fit(source, evaluate);
class SequenceBatches {
 public:
  SequenceBatches(const std::vector<Feature>& features, SamplerOptions sampler, int32_t pad_id, bool regression)
      : features_(&features), sampler_(sampler), pad_id_(pad_id), regression_(regression) {
    batching_detail::check_sampler(sampler_);
  }

  int64_t num_batches(int /*epoch*/) const {
    return batches_per_epoch(static_cast<int64_t>(features_->size()), sampler_);
  }
  auto batches(int epoch) const {
    return LazyBatches(epoch_batches(*features_, sampler_, epoch),
                       [features = features_, pad_id = pad_id_, regression = regression_](
                           const std::vector<int64_t>& indices) { return make_batch(*features, indices, pad_id, regression); });
  }
  const SamplerOptions& sampler() const { return sampler_; }

 private:
  const std::vector<Feature>* features_;
  SamplerOptions sampler_;
  int32_t pad_id_;
  bool regression_;
};

}  // namespace addrop::data
