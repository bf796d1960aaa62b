// Batching: dynamic padding (ids, masks, type ids, labels / targets) and the epoch
// sampler (every index exactly once, drop_last, determinism from (seed, epoch),
// different orders across epochs and seeds, a roughly uniform shuffle, length
// bucketing that groups similar lengths), plus a pinned order that guards the
// platform-independent shuffle against accidental change.
#define BOOST_TEST_MODULE batching
#include <boost/test/unit_test.hpp>

#include <addrop/data/batching.hpp>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <set>
#include <vector>

#include "support/helpers.hpp"

using namespace addrop;
using addrop::testing::has;

namespace {

std::vector<data::Feature> features_with_lengths(const std::vector<std::size_t>& lengths) {
  std::vector<data::Feature> fs;
  for (std::size_t i = 0; i < lengths.size(); ++i) {
    data::Feature f;
    for (std::size_t j = 0; j < lengths[i]; ++j) f.ids.push_back(static_cast<int32_t>(100 + j));
    f.label = static_cast<int32_t>(i % 3);
    f.target = 0.5 * static_cast<double>(i);
    f.index = static_cast<int64_t>(i);
    fs.push_back(f);
  }
  return fs;
}

/// Pseudo-random lengths in [1, 128] from a fixed LCG.
std::vector<std::size_t> varied_lengths(std::size_t n) {
  std::vector<std::size_t> v;
  uint64_t s = 12345;
  for (std::size_t i = 0; i < n; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    v.push_back(1 + (s >> 33) % 128);
  }
  return v;
}

std::vector<int64_t> flatten(const std::vector<std::vector<int64_t>>& batches) {
  std::vector<int64_t> all;
  for (const auto& b : batches) all.insert(all.end(), b.begin(), b.end());
  return all;
}

void check_each_index_once(const std::vector<std::vector<int64_t>>& batches, std::size_t n) {
  auto all = flatten(batches);
  std::sort(all.begin(), all.end());
  std::vector<int64_t> want(n);
  std::iota(want.begin(), want.end(), int64_t{0});
  BOOST_TEST(all == want, boost::test_tools::per_element());
}

int64_t padding(const std::vector<data::Feature>& fs, const std::vector<std::vector<int64_t>>& batches) {
  int64_t pad = 0;
  for (const auto& b : batches) {
    std::size_t longest = 0;
    for (auto i : b) longest = std::max(longest, fs[static_cast<std::size_t>(i)].ids.size());
    for (auto i : b) pad += static_cast<int64_t>(longest - fs[static_cast<std::size_t>(i)].ids.size());
  }
  return pad;
}

}  // namespace

// ---------------------------------------------------------------- make_batch
BOOST_AUTO_TEST_CASE(pads_to_the_longest_in_the_batch) {
  std::vector<data::Feature> fs(3);
  fs[0].ids = {101, 7, 8, 102};
  fs[0].type_ids = {0, 0, 0, 0};
  fs[0].label = 1;
  fs[1].ids = {101, 9, 102, 10, 11, 102};
  fs[1].type_ids = {0, 0, 0, 1, 1, 1};
  fs[1].label = 0;
  fs[2].ids = {101, 102};  // no type ids: all zero
  fs[2].label = 2;
  const auto b = data::make_batch(fs, {2, 1, 0}, /*pad_id=*/5, /*regression=*/false);
  BOOST_TEST(b.size == 3);
  BOOST_TEST(b.length == 6);
  const std::vector<int32_t> ids = {101, 102, 5, 5, 5, 5,  //
                                    101, 9, 102, 10, 11, 102,  //
                                    101, 7, 8, 102, 5, 5};
  const std::vector<int32_t> mask = {1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
  const std::vector<int32_t> types = {0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0};
  BOOST_TEST(b.input_ids == ids, boost::test_tools::per_element());
  BOOST_TEST(b.attention_mask == mask, boost::test_tools::per_element());
  BOOST_TEST(b.token_type_ids == types, boost::test_tools::per_element());
  BOOST_TEST(b.labels == (std::vector<int32_t>{2, 0, 1}), boost::test_tools::per_element());
  BOOST_TEST(b.targets.empty());
  BOOST_TEST(b.key_length(0) == 2);
  BOOST_TEST(b.key_length(1) == 6);
  models::ModelConfig c;
  c.num_labels = 3;
  BOOST_CHECK_NO_THROW(b.validate(c, true));
}

BOOST_AUTO_TEST_CASE(regression_targets_and_no_type_ids) {
  auto fs = features_with_lengths({3, 1, 2});
  const auto b = data::make_batch(fs, {0, 2}, 0, /*regression=*/true, /*with_type_ids=*/false);
  BOOST_TEST(b.length == 3);
  BOOST_TEST(b.token_type_ids.empty());
  BOOST_TEST(b.labels.empty());
  BOOST_TEST(b.targets == (std::vector<double>{0.0, 1.0}), boost::test_tools::per_element());
  BOOST_TEST(b.input_ids == (std::vector<int32_t>{100, 101, 102, 100, 101, 0}), boost::test_tools::per_element());
  models::ModelConfig c;
  c.task = models::Task::Regression;
  c.num_labels = 1;
  BOOST_CHECK_NO_THROW(b.validate(c, true));
}

BOOST_AUTO_TEST_CASE(make_batch_rejects_bad_input) {
  auto fs = features_with_lengths({3, 0, 2});
  BOOST_CHECK_EXCEPTION(data::make_batch(fs, {0, 3}, 0, false), std::invalid_argument, has({"index 3", "row 1"}));
  BOOST_CHECK_EXCEPTION(data::make_batch(fs, {}, 0, false), std::invalid_argument, has({"no indices"}));
  BOOST_CHECK_EXCEPTION(data::make_batch(fs, {1}, 0, false), std::invalid_argument, has({"empty"}));
  fs[2].type_ids = {0};
  BOOST_CHECK_EXCEPTION(data::make_batch(fs, {2}, 0, false), std::invalid_argument,
                        has({"feature 2", "1 type ids", "2 tokens"}));
}

// ---------------------------------------------------------------- epoch_batches
BOOST_AUTO_TEST_CASE(every_index_once_and_batch_sizes) {
  const auto fs = features_with_lengths(varied_lengths(103));
  for (bool shuffle : {false, true})
    for (bool bucket : {false, true}) {
      data::SamplerOptions o{.batch_size = 8, .shuffle = shuffle, .bucket_by_length = bucket, .bucket_window = 3};
      const auto batches = data::epoch_batches(fs, o, 0);
      BOOST_TEST(batches.size() == 13u);
      check_each_index_once(batches, fs.size());
      std::size_t short_batches = 0;
      for (const auto& b : batches) short_batches += b.size() != 8;
      BOOST_TEST(short_batches == 1u);
      o.drop_last = true;
      const auto dropped = data::epoch_batches(fs, o, 0);
      BOOST_TEST(dropped.size() == 12u);
      for (const auto& b : dropped) BOOST_TEST(b.size() == 8u);
      std::set<int64_t> seen;
      for (auto i : flatten(dropped)) BOOST_TEST(seen.insert(i).second);
    }
  // no shuffle, no bucketing: file order
  const auto plain = data::epoch_batches(fs, {.batch_size = 10, .shuffle = false}, 3);
  std::vector<int64_t> in_order(fs.size());
  std::iota(in_order.begin(), in_order.end(), int64_t{0});
  BOOST_TEST(flatten(plain) == in_order, boost::test_tools::per_element());
  // exact multiple with drop_last: nothing dropped; empty input: no batches
  BOOST_TEST(data::epoch_batches(features_with_lengths(std::vector<std::size_t>(16, 2)),
                                 {.batch_size = 8, .drop_last = true}, 0)
                 .size() == 2u);
  BOOST_TEST(data::epoch_batches(std::vector<data::Feature>{}, {}, 0).empty());
  BOOST_CHECK_EXCEPTION(data::epoch_batches(fs, {.batch_size = 0}, 0), std::invalid_argument, has({"batch_size"}));
}

BOOST_AUTO_TEST_CASE(deterministic_per_seed_and_epoch) {
  const auto fs = features_with_lengths(varied_lengths(500));
  for (bool bucket : {false, true}) {
    const data::SamplerOptions o{.batch_size = 16, .bucket_by_length = bucket, .bucket_window = 4, .seed = 7};
    const auto a = data::epoch_batches(fs, o, 2), b = data::epoch_batches(fs, o, 2);
    BOOST_TEST((a == b));
    BOOST_TEST((a != data::epoch_batches(fs, o, 3)));  // another epoch
    auto other = o;
    other.seed = 8;
    BOOST_TEST((a != data::epoch_batches(fs, other, 2)));  // another seed
  }
}

BOOST_AUTO_TEST_CASE(pinned_order_for_seed_42) {
  // The shuffle is Philox + rejection sampling, identical on every platform. If this
  // fails, the sampler changed: runs are no longer reproducible from their seeds.
  const auto fs = features_with_lengths(std::vector<std::size_t>(10, 1));
  const auto order = flatten(data::epoch_batches(fs, {.batch_size = 4, .seed = 42}, 0));
  const std::vector<int64_t> pinned = {0, 2, 6, 4, 7, 1, 9, 8, 3, 5};  // also from an independent Python port
  BOOST_TEST(order == pinned, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(shuffle_is_roughly_uniform) {
  // Where item 0 lands over 2000 epochs: each of 10 positions ~200 times.
  const auto fs = features_with_lengths(std::vector<std::size_t>(10, 1));
  std::vector<int> where(10, 0);
  for (int64_t epoch = 0; epoch < 2000; ++epoch) {
    const auto order = flatten(data::epoch_batches(fs, {.batch_size = 10, .seed = 3}, epoch));
    ++where[static_cast<std::size_t>(std::find(order.begin(), order.end(), 0) - order.begin())];
  }
  double chi2 = 0;
  for (int w : where) chi2 += (w - 200.0) * (w - 200.0) / 200.0;
  BOOST_TEST(chi2 < 27.9, "chi-square " << chi2 << " (9 dof, p = 0.001 cut-off 27.9)");
}

BOOST_AUTO_TEST_CASE(bucketing_groups_similar_lengths) {
  const auto fs = features_with_lengths(varied_lengths(2000));
  const data::SamplerOptions plain{.batch_size = 16, .seed = 1};
  data::SamplerOptions bucket = plain;
  bucket.bucket_by_length = true;
  bucket.bucket_window = 25;
  const auto pb = data::epoch_batches(fs, plain, 0), bb = data::epoch_batches(fs, bucket, 0);
  const int64_t pad_plain = padding(fs, pb), pad_bucket = padding(fs, bb);
  BOOST_TEST_MESSAGE("padding tokens: " << pad_plain << " shuffled, " << pad_bucket << " bucketed");
  BOOST_TEST(pad_bucket * 5 < pad_plain);
  // within a pool batches are consecutive slices of the length-sorted pool: a batch's
  // length spread is small
  std::size_t max_spread = 0;
  for (const auto& b : bb) {
    std::size_t lo = 1000, hi = 0;
    for (auto i : b) {
      lo = std::min(lo, fs[static_cast<std::size_t>(i)].ids.size());
      hi = std::max(hi, fs[static_cast<std::size_t>(i)].ids.size());
    }
    max_spread = std::max(max_spread, hi - lo);
  }
  BOOST_TEST(max_spread < 30u);
  // batch order is shuffled: the first batches are not the shortest ones
  std::vector<std::size_t> first_lengths;
  for (std::size_t k = 0; k < 5; ++k) first_lengths.push_back(fs[static_cast<std::size_t>(bb[k][0])].ids.size());
  BOOST_TEST(!std::is_sorted(first_lengths.begin(), first_lengths.end()));
  // without shuffle, each pool is sorted by length and pools follow file order
  const auto sorted = data::epoch_batches(fs, {.batch_size = 16, .shuffle = false, .bucket_by_length = true,
                                               .bucket_window = 25},
                                          0);
  const auto flat = flatten(sorted);
  const std::size_t pool = 16 * 25;
  for (std::size_t start = 0; start < flat.size(); start += pool) {
    std::vector<std::size_t> lengths;
    for (std::size_t k = start; k < std::min(flat.size(), start + pool); ++k) {
      lengths.push_back(fs[static_cast<std::size_t>(flat[k])].ids.size());
      BOOST_TEST(static_cast<std::size_t>(flat[k]) / pool == start / pool);
    }
    BOOST_TEST(std::is_sorted(lengths.begin(), lengths.end()));
  }
}

// ---------------------------------------------------------------- SequenceBatches
// The trainer's source: per epoch, exactly epoch_batches' batches in its order, each made
// by make_batch (the seeded runs of before the source existed are reproduced), and as
// many as num_batches says.
BOOST_AUTO_TEST_CASE(sequence_batches_are_the_sampler_s_batches) {
  const auto fs = features_with_lengths(varied_lengths(203));
  for (bool bucket : {false, true})
    for (bool drop_last : {false, true})
      for (bool regression : {false, true}) {
        const data::SamplerOptions o{
            .batch_size = 16, .bucket_by_length = bucket, .bucket_window = 3, .seed = 9, .drop_last = drop_last};
        const data::SequenceBatches source(fs, o, 7, regression);
        BOOST_TEST(source.num_batches(0) == (drop_last ? 12 : 13));
        for (int epoch = 0; epoch < 3; ++epoch) {
          const auto plan = data::epoch_batches(fs, o, epoch);
          BOOST_TEST(source.num_batches(epoch) == static_cast<int64_t>(plan.size()));
          const auto batches = source.batches(epoch);
          BOOST_TEST(batches.size() == plan.size());
          std::size_t i = 0;
          for (const models::Batch& b : batches) {
            BOOST_REQUIRE_LT(i, plan.size());
            const models::Batch want = data::make_batch(fs, plan[i], 7, regression);
            BOOST_TEST(b.size == want.size);
            BOOST_TEST(b.length == want.length);
            BOOST_TEST(b.input_ids == want.input_ids);
            BOOST_TEST(b.attention_mask == want.attention_mask);
            BOOST_TEST(b.token_type_ids == want.token_type_ids);
            BOOST_TEST(b.labels == want.labels);
            BOOST_TEST(b.targets == want.targets);
            ++i;
          }
          BOOST_TEST(i == plan.size());
        }
      }
  BOOST_TEST(data::batches_per_epoch(0, {.batch_size = 4}) == 0);
  BOOST_TEST(data::batches_per_epoch(9, {.batch_size = 4}) == 3);
  BOOST_TEST(data::batches_per_epoch(9, {.batch_size = 4, .drop_last = true}) == 2);
  BOOST_CHECK_EXCEPTION(data::SequenceBatches(fs, {.batch_size = 0}, 0, false), std::invalid_argument,
                        has({"batch_size must be positive"}));
}
