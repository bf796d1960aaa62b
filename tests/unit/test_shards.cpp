// Shards of a batch (models/batch_shard.hpp, docs/distributed.md), in one process: an
// AD-DROP step on rows [0, k) and one on rows [k, B) of a batch, each a shard, give keep
// masks that are the whole batch's rows and parameter gradients that sum to the whole
// batch's (float64, 1e-12), for sequence classification, regression, token
// classification and the Marian encoder-decoder, with dropout on. Also what the
// communicator helpers promise: row_range's split, and a trainer refusing several ranks
// for a batch type without shard_rows.
#define BOOST_TEST_MODULE shards
#include <boost/test/unit_test.hpp>

#include <addrop/addrop.hpp>
#include <addrop/dist/communicator.hpp>
#include <addrop/models/marian.hpp>
#include <addrop/train/distributed.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

using namespace addrop;

namespace {

models::ModelConfig encoder_config(models::Task task) {
  models::ModelConfig c;
  c.vocab_size = 30;
  c.hidden_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.intermediate_size = 24;
  c.max_position_embeddings = 16;
  c.num_labels = task == models::Task::Regression ? 1 : 3;
  c.task = task;
  c.hidden_dropout_prob = 0.2f;
  c.attention_probs_dropout_prob = 0.2f;
  return c;
}

models::Batch encoder_batch(models::Task task) {
  models::Batch b;
  b.size = 5;
  b.length = 9;
  const int lengths[5] = {9, 4, 7, 2, 6};
  for (int64_t r = 0; r < b.size; ++r)
    for (int64_t j = 0; j < b.length; ++j) {
      const bool real = j < lengths[r];
      b.input_ids.push_back(real ? 2 + static_cast<int32_t>((7 * r + 3 * j) % 27) : 0);
      b.attention_mask.push_back(real);
      b.token_type_ids.push_back(0);
      if (task == models::Task::TokenClassification) b.labels.push_back(real && (j % 4) ? (r + j) % 3 : -100);
    }
  for (int64_t r = 0; r < b.size; ++r) {
    if (task == models::Task::SequenceClassification) b.labels.push_back(static_cast<int32_t>(r % 3));
    if (task == models::Task::Regression) b.targets.push_back(0.3 * static_cast<double>(r) - 0.5);
  }
  return b;
}

template <class Model>
std::vector<std::vector<double>> gradients(Model& model) {
  std::vector<std::vector<double>> out;
  for (auto* p : model.parameters()) out.emplace_back(p->grad.data(), p->grad.data() + p->grad.numel());
  return out;
}

// One GA step (top-p, every layer, dropout on) on `batch` as step `step` of the streams.
template <class Model, class Batch>
auto addrop_step(Model& model, const Batch& batch, int64_t step, std::vector<std::vector<double>>& keep) {
  AdDrop<attribution::Gradient, selection::TopP, schedule::Always> reg(
      AdDropOptions{.p = 0.4, .q = 0.5, .layers = {0, 1}, .seed = 9, .record_masks = true});
  reg.set_step_count(step);
  model.zero_grad();
  const auto out = reg.step(model, batch, 0);
  keep.clear();
  for (const auto* k : out.keep) keep.emplace_back(k->data(), k->data() + k->numel());
  return out.loss;
}

template <class Model, class Batch>
void check_split(Model& model, const Batch& whole, int64_t split) {
  std::vector<std::vector<double>> keep_whole, keep_a, keep_b;
  const double loss = addrop_step(model, whole, 3, keep_whole);
  const auto grad_whole = gradients(model);
  const double loss_a = addrop_step(model, shard_rows(whole, 0, split), 3, keep_a);
  auto grad_sum = gradients(model);
  const double loss_b = addrop_step(model, shard_rows(whole, split, whole.size), 3, keep_b);
  const auto grad_b = gradients(model);
  BOOST_TEST(std::abs(loss_a + loss_b - loss) <= 1e-12 * std::abs(loss), loss_a + loss_b << " vs " << loss);
  double worst = 0;
  for (std::size_t i = 0; i < grad_sum.size(); ++i)
    for (std::size_t j = 0; j < grad_sum[i].size(); ++j) {
      const double s = grad_sum[i][j] + grad_b[i][j], w = grad_whole[i][j];
      worst = std::max(worst, std::abs(s - w) / std::max(1e-8, std::abs(w)));
    }
  BOOST_TEST(worst <= 1e-10, "worst relative gradient difference " << worst);
  for (std::size_t l = 0; l < keep_whole.size(); ++l) {
    std::vector<double> joined = keep_a[l];
    joined.insert(joined.end(), keep_b[l].begin(), keep_b[l].end());
    BOOST_TEST((joined == keep_whole[l]), "keep masks of site " << l << " differ");
    BOOST_TEST(std::count(keep_whole[l].begin(), keep_whole[l].end(), 0.0) > 0);  // something was dropped
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(encoder_shards_sum_to_the_whole_batch) {
  for (auto task : {models::Task::SequenceClassification, models::Task::Regression, models::Task::TokenClassification}) {
    models::EncoderModel<double> model(encoder_config(task), {.threads = 1});
    models::init_weights(model, 4);
    const auto batch = encoder_batch(task);
    for (int64_t split : {1, 2, 4}) check_split(model, batch, split);
  }
}

BOOST_AUTO_TEST_CASE(marian_shards_sum_to_the_whole_batch) {
  models::MarianConfig c = models::marian_preset("tiny", 40, 0, 1);
  c.dropout = 0.2f;
  c.attention_dropout = 0.2f;
  models::MarianModel<double> model(c, {.threads = 1});
  model.init_weights(5);
  const std::vector<std::vector<int32_t>> src{{5, 6, 7, 1}, {8, 9, 1}, {10, 11, 12, 13, 14, 1}},
      tgt{{15, 16, 1}, {17, 18, 19, 20, 1}, {21, 1}};
  const auto batch = models::make_seq2seq_batch(src, tgt, 0, 0);
  check_split(model, batch, 1);
  check_split(model, batch, 2);
}

BOOST_AUTO_TEST_CASE(row_ranges_split_evenly_in_rank_order) {
  for (int64_t total : {0, 1, 3, 8, 203})
    for (int ranks : {1, 2, 3, 8}) {
      int64_t next = 0;
      for (int r = 0; r < ranks; ++r) {
        const auto range = dist::row_range(total, r, ranks);
        BOOST_TEST(range.begin == next);
        BOOST_TEST((range.size() == total / ranks || range.size() == total / ranks + 1));
        next = range.end;
      }
      BOOST_TEST(next == total);
    }
}

BOOST_AUTO_TEST_CASE(a_shard_keeps_the_outermost_counts) {
  const auto whole = encoder_batch(models::Task::TokenClassification);
  int64_t labelled = 0, tokens = 0;
  for (int32_t l : whole.labels) labelled += l != -100;
  for (int32_t m : whole.attention_mask) tokens += m;
  const auto part = models::shard_rows(whole, 1, 4), inner = models::shard_rows(part, 1, 3);
  BOOST_TEST(part.shard.first_example == 1);
  BOOST_TEST(part.shard.loss_count == labelled);
  BOOST_TEST(part.shard.objective_count == tokens);
  BOOST_TEST(inner.shard.first_example == 2);
  BOOST_TEST(inner.shard.loss_count == labelled);
  BOOST_CHECK_THROW(models::shard_rows(whole, 3, 3), std::invalid_argument);
}
