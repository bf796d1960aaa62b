#pragma once
// What train::Trainer does with a communicator (dist/communicator.hpp) when several
// processes train one model (docs/distributed.md): each takes its rows of every global
// batch (models/batch_shard.hpp keeps the draws and the loss's denominator those of the
// whole batch), the gradients are summed over the ranks in fixed buckets, and the weights
// and the optimizer state start equal (broadcast from rank 0).
#include <algorithm>
#include <concepts>
#include <cstdint>
#include <utility>
#include <vector>

#include "../dist/communicator.hpp"
#include "../nn/parameter.hpp"
#include "../tensor.hpp"
#include "adamw.hpp"

namespace addrop::train {

/// A batch type whose rows a rank can take: shard_rows(batch, begin, end) (found by
/// argument-dependent lookup: models::Batch and models::Seq2SeqBatch have it) returns
/// rows [begin, end) with the whole batch's draws and denominators, and .size is the
/// row count.
template <class Batch>
concept ShardableBatch = requires(const Batch& b, int64_t i) {
  { b.size } -> std::convertible_to<int64_t>;
  { shard_rows(b, i, i) } -> std::same_as<Batch>;
};

/// Sums the gradients of a parameter list over the ranks. Parameters are packed, in
/// their fixed order, into buckets of about `bucket_bytes` (one collective per bucket
/// rather than per tensor); a parameter larger than a bucket is reduced where it lies.
/// The order and the buckets depend on the model alone, never on timing, so every run and
/// every rank sums the same way.
template <class T, class Backend>
class GradientReducer {
 public:
  using Context = typename Backend::Context;
  static constexpr int64_t kDefaultBucketBytes = int64_t{25} << 20;  // PyTorch DDP's default

  GradientReducer(const nn::ParameterList<T, Backend>& params, const Context& ctx,
                  int64_t bucket_bytes = kDefaultBucketBytes)
      : params_(params), ctx_(ctx) {
    const int64_t cap = std::max<int64_t>(1, bucket_bytes / static_cast<int64_t>(sizeof(T)));
    Bucket open;
    for (std::size_t i = 0; i < params_.size(); ++i) {
      const int64_t n = params_[i]->grad.numel();
      if (n >= cap) {  // alone, in place
        buckets_.push_back({{i}, n});
        continue;
      }
      if (open.elements + n > cap) buckets_.push_back(std::exchange(open, {}));
      open.members.push_back(i);
      open.elements += n;
    }
    if (!open.members.empty()) buckets_.push_back(std::move(open));
    for (const auto& b : buckets_)
      if (b.members.size() > 1) largest_packed_ = std::max(largest_packed_, b.elements);
  }

  std::size_t buckets() const { return buckets_.size(); }

  /// grad <- sum over ranks of grad, for every parameter.
  template <dist::Communicator Comm>
  void reduce(Comm& comm) {
    if (comm.size() == 1) return;
    if (flat_.numel() < largest_packed_) flat_.resize({largest_packed_});  // once, and only with peers
    for (const auto& b : buckets_) {
      if (b.members.size() == 1) {
        auto& g = params_[b.members[0]]->grad;
        comm.all_reduce_sum(g.data(), g.numel());
        continue;
      }
      int64_t at = 0;
      for (std::size_t i : b.members) {
        const auto& g = params_[i]->grad;
        Backend::copy(ctx_, g.numel(), g.data(), flat_.data() + at);
        at += g.numel();
      }
      comm.all_reduce_sum(flat_.data(), b.elements);
      at = 0;
      for (std::size_t i : b.members) {
        auto& g = params_[i]->grad;
        Backend::copy(ctx_, g.numel(), flat_.data() + at, g.data());
        at += g.numel();
      }
    }
  }

 private:
  struct Bucket {
    std::vector<std::size_t> members;
    int64_t elements = 0;
  };
  nn::ParameterList<T, Backend> params_;
  Context ctx_;
  std::vector<Bucket> buckets_;
  int64_t largest_packed_ = 0;
  Tensor<T, Backend> flat_;
};

/// Rank `root`'s parameter values on every rank.
template <class T, class Backend, dist::Communicator Comm>
void broadcast_parameters(const nn::ParameterList<T, Backend>& params, Comm& comm, int root = 0) {
  if (comm.size() == 1) return;
  for (auto* p : params) comm.broadcast(p->value.data(), p->value.numel(), root);
}

/// Rank `root`'s optimizer moments on every rank (the step count travels with the
/// trainer state).
template <class T, class Backend, dist::Communicator Comm>
void broadcast_optimizer(AdamW<T, Backend>& opt, Comm& comm, int root = 0) {
  if (comm.size() == 1) return;
  for (std::size_t i = 0; i < opt.size(); ++i) {
    comm.broadcast(opt.exp_avg(i).data(), opt.exp_avg(i).numel(), root);
    comm.broadcast(opt.exp_avg_sq(i).data(), opt.exp_avg_sq(i).numel(), root);
  }
}

}  // namespace addrop::train
