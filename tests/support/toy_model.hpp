#pragma once
// A model that is not EncoderModel, written the way a user with their own network would:
// its own batch struct, plain loops on the CPU, and one attention site whose geometry is
// not the batch's square: Lq learned query slots per head attend over the batch's tokens
// (a cross-attention, [B, H, Lq, L]). It implements every member of the model contracts
// (models/concepts.hpp) and nothing more; ADDROP_TOY_WITHOUT_<MEMBER> leaves one out (the
// contract tests compile that and expect the contract's message).
//
//   x[b,j]        = E[token]                                  (the site's input, [B*L, D])
//   A[b,h,i,j]    = softmax_j(Qv[h,i]·x[b,j] / sqrt(D) + key bias + AD-DROP's additive mask)
//   context[b,h,i] = alpha_b Σ_j A[b,h,i,j] x[b,j]              (alpha_b: IG's per-example scale)
//   logits[b,c]   = Σ_{h,i,d} W[c,h,i,d] context[b,h,i,d] + bias[c]
//
// F = z_c is linear in A, so GA = W_c·x, IGA = A ⊙ GA · (m+1)/(2m) and AA = A in closed form.
#include <cmath>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <addrop/backend/cpu.hpp>
#include <addrop/models/concepts.hpp>
#include <addrop/tensor.hpp>

namespace addrop::testing {

struct ToyBatch {
  int64_t size = 0, length = 0;
  std::vector<int32_t> tokens, mask, labels;  // [B*L], [B*L] (1 = token), [B]
};

class ToyCrossAttention {
 public:
  using value_type = double;
  using backend_type = backend::Cpu;
  using TensorT = Tensor<double, backend::Cpu>;

  ToyCrossAttention(int64_t vocab, int64_t dim, int64_t heads, int64_t slots, int64_t classes, uint64_t seed)
      : V_(vocab), D_(dim), H_(heads), Q_(slots), C_(classes) {
    auto fill = [&](std::vector<double>& v, std::size_t n, uint64_t stream, double scale) {
      v.resize(n);
      for (std::size_t i = 0; i < n; ++i) {
        const uint64_t z = (seed * 0x9E3779B97F4A7C15ull) ^ (stream << 40) ^ (i * 0xBF58476D1CE4E5B9ull);
        v[i] = scale * (static_cast<double>((z >> 11) % 2001) / 1000.0 - 1.0);
      }
    };
    fill(E_, static_cast<std::size_t>(V_ * D_), 1, 1.0);
    fill(Qv_, static_cast<std::size_t>(H_ * Q_ * D_), 2, 1.0);
    fill(W_, static_cast<std::size_t>(C_ * H_ * Q_ * D_), 3, 0.5);
    fill(bias_, static_cast<std::size_t>(C_), 4, 0.1);
    for (auto* g : {&dE_, &dQv_, &dW_, &dbias_}) g->clear();
    dE_.assign(E_.size(), 0);
    dQv_.assign(Qv_.size(), 0);
    dW_.assign(W_.size(), 0);
    dbias_.assign(bias_.size(), 0);
  }

  const backend::Cpu::Context& context() const { return ctx_; }
  const std::vector<double>& W() const { return W_; }
  const std::vector<double>& embedding() const { return E_; }
  int64_t slots() const { return Q_; }
  int64_t heads() const { return H_; }
  int forward_calls = 0;  // how many full forwards ran (tests count AdDrop's passes)

  // ------------------------------------------------------------ AdDrop's own contract
  int num_attention_sites() const { return 1; }
#ifndef ADDROP_TOY_WITHOUT_ATTENTION_SITE
  models::AttentionSite attention_site(int site, const ToyBatch& batch) const {
    check_site(site);
    return {.batch = batch.size, .heads = H_, .queries = Q_, .keys = batch.length, .key_mask = batch.mask};
  }
#endif
  void set_attention_mask(int site, const TensorT* additive) {
    check_site(site);
    additive_ = additive;
  }
  void reset_attention_sites() {
    additive_ = nullptr;
    for (auto& w : work_) w.alphas = {};
  }
  const TensorT& forward(const ToyBatch& batch, const models::PassOptions& = {}) {
    ++forward_calls;
    embed(batch);
    return run_site(batch);
  }
  double loss(const ToyBatch& batch) {
    auto& w = work();
    w.dlogits.resize({batch.size, C_});
    double total = 0;
    for (int64_t b = 0; b < batch.size; ++b) {
      const double* z = w.logits.data() + b * C_;
      double mx = z[0], s = 0;
      for (int64_t c = 1; c < C_; ++c) mx = std::max(mx, z[c]);
      for (int64_t c = 0; c < C_; ++c) s += std::exp(z[c] - mx);
      total += mx + std::log(s) - z[batch.labels[b]];
      for (int64_t c = 0; c < C_; ++c)
        w.dlogits.data()[b * C_ + c] = (std::exp(z[c] - mx) / s - (c == batch.labels[b])) / batch.size;
    }
    return total / static_cast<double>(batch.size);
  }
  void backward(const models::BackwardOptions& opt = {}) {
    auto& w = work();
    const int64_t B = w.B, L = w.L, HQ = H_ * Q_;
    std::vector<double> dcontext(static_cast<std::size_t>(B * HQ * D_), 0.0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C_; ++c) {
        const double g = w.dlogits.data()[b * C_ + c];
        for (int64_t k = 0; k < HQ * D_; ++k) {
          dcontext[b * HQ * D_ + k] += g * W_[c * HQ * D_ + k];
          if (opt.weight_grads) dW_[c * HQ * D_ + k] += g * w.context[b * HQ * D_ + k];
        }
        if (opt.weight_grads) dbias_[c] += g;
      }
    w.probs_grad.resize({B, H_, Q_, L});
    for (int64_t b = 0; b < B; ++b)
      for (int64_t hi = 0; hi < HQ; ++hi)
        for (int64_t j = 0; j < L; ++j) {
          double s = 0;
          for (int64_t d = 0; d < D_; ++d) s += dcontext[(b * HQ + hi) * D_ + d] * w.x.data()[(b * L + j) * D_ + d];
          w.probs_grad.data()[(b * HQ + hi) * L + j] = alpha(w, b) * s;  // d F / d A (A before the scale)
        }
    w.has_probs_grad = true;
    if (opt.stop_at_layer == 0 || !opt.weight_grads) return;
    // Below the site: softmax, the query slots and the embeddings.
    const double r = 1 / std::sqrt(static_cast<double>(D_));
    std::vector<double> dx(static_cast<std::size_t>(B * L * D_), 0.0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t hi = 0; hi < HQ; ++hi) {
        const double* a = w.probs.data() + (b * HQ + hi) * L;
        const double* da = w.probs_grad.data() + (b * HQ + hi) * L;
        double dot = 0;
        for (int64_t j = 0; j < L; ++j) dot += a[j] * da[j];
        for (int64_t j = 0; j < L; ++j) {
          const double ds = a[j] * (da[j] - dot) * r;
          const double ax = alpha(w, b) * a[j];
          for (int64_t d = 0; d < D_; ++d) {
            dQv_[hi * D_ + d] += ds * w.x.data()[(b * L + j) * D_ + d];
            dx[(b * L + j) * D_ + d] += ds * Qv_[hi * D_ + d] + ax * dcontext[(b * HQ + hi) * D_ + d];
          }
        }
      }
    for (int64_t t = 0; t < B * L; ++t)
      for (int64_t d = 0; d < D_; ++d) dE_[w.tokens[t] * D_ + d] += dx[t * D_ + d];
  }
  const TensorT& logits() const { return work().logits; }

  // ------------------------------------------------------------ attribution contracts
  const TensorT& attention_probs(int site) const {
    check_site(site);
    return work().probs;
  }
  const TensorT& attention_probs_grad(int site) const {
    check_site(site);
    if (!work().has_probs_grad) throw std::logic_error("toy model: no backward reached the site");
    return work().probs_grad;
  }
  TensorT& logits_grad() { return work().dlogits; }
  models::AttributionTarget attribution_target(const ToyBatch& batch) const {
    return {.kind = models::AttributionTarget::Kind::SequenceClasses, .rows = batch.size, .classes = C_};
  }
  void forward_prefix(const ToyBatch& batch, int layers, const models::PassOptions& = {}) {
    check_site(layers);
    embed(batch);
  }
  const TensorT& forward_from(int site, const double* input, const ToyBatch& batch, const models::PassOptions& = {}) {
    check_site(site);
    auto& w = work();
    w.B = batch.size;
    w.L = batch.length;
    w.tokens = batch.tokens;
    w.x.resize({batch.size * batch.length, D_});
    std::copy(input, input + w.x.numel(), w.x.data());
    return run_site(batch);
  }
  const TensorT& layer_input(int site) const {
    check_site(site);
    return work().x;
  }
  void use_workspace(int index) { active_ = index; }
  void set_attention_example_scales(int site, std::span<const double> alphas) {
    check_site(site);
    work().alphas = alphas;
  }
#ifndef ADDROP_TOY_WITHOUT_STACK_BATCH
  void stack_batch(const ToyBatch& batch, int64_t copies, ToyBatch& out) const {
    out.size = batch.size * copies;
    out.length = batch.length;
    out.tokens.clear();
    out.mask.clear();
    for (int64_t k = 0; k < copies; ++k) {
      out.tokens.insert(out.tokens.end(), batch.tokens.begin(), batch.tokens.end());
      out.mask.insert(out.mask.end(), batch.mask.begin(), batch.mask.end());
    }
  }
#endif
  double pass_bytes(const ToyBatch& batch, int) const {
    return 8.0 * static_cast<double>(batch.size * (2 * H_ * Q_ * batch.length + batch.length * D_ + H_ * Q_ * D_));
  }

 private:
  struct Work {
    int64_t B = 0, L = 0;
    std::vector<int32_t> tokens;
    TensorT x, probs, probs_grad, logits, dlogits;
    std::vector<double> context;
    std::span<const double> alphas;
    bool has_probs_grad = false;
  };
  void check_site(int site) const {
    if (site != 0) throw std::invalid_argument("toy model: no attention site " + std::to_string(site));
  }
  static double alpha(const Work& w, int64_t b) { return w.alphas.empty() ? 1.0 : w.alphas[b]; }
  Work& work() { return work_[active_]; }
  const Work& work() const { return work_[active_]; }

  void embed(const ToyBatch& batch) {
    if (static_cast<int64_t>(batch.tokens.size()) != batch.size * batch.length)
      throw std::invalid_argument("toy batch: tokens has the wrong size");
    auto& w = work();
    w.B = batch.size;
    w.L = batch.length;
    w.tokens = batch.tokens;
    w.x.resize({batch.size * batch.length, D_});
    for (int64_t t = 0; t < batch.size * batch.length; ++t)
      for (int64_t d = 0; d < D_; ++d) w.x.data()[t * D_ + d] = E_[batch.tokens[t] * D_ + d];
  }

  const TensorT& run_site(const ToyBatch& batch) {
    auto& w = work();
    const int64_t B = batch.size, L = batch.length, HQ = H_ * Q_;
    if (!w.alphas.empty() && static_cast<int64_t>(w.alphas.size()) != B)
      throw std::invalid_argument("toy model: one scale per example expected");
    if (additive_ && !(additive_->shape() == Shape{B, H_, Q_, L}))
      throw std::invalid_argument("toy model: additive mask of shape " + additive_->shape().str());
    const double r = 1 / std::sqrt(static_cast<double>(D_));
    w.probs.resize({B, H_, Q_, L});
    w.context.assign(static_cast<std::size_t>(B * HQ * D_), 0.0);
    w.has_probs_grad = false;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t hi = 0; hi < HQ; ++hi) {
        double* a = w.probs.data() + (b * HQ + hi) * L;
        double mx = -1e300;
        for (int64_t j = 0; j < L; ++j) {
          double s = 0;
          for (int64_t d = 0; d < D_; ++d) s += Qv_[hi * D_ + d] * w.x.data()[(b * L + j) * D_ + d];
          a[j] = s * r + (batch.mask[b * L + j] ? 0.0 : -10000.0) +
                 (additive_ ? additive_->data()[(b * HQ + hi) * L + j] : 0.0);
          mx = std::max(mx, a[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j < L; ++j) sum += (a[j] = std::exp(a[j] - mx));
        for (int64_t j = 0; j < L; ++j) {
          a[j] /= sum;
          for (int64_t d = 0; d < D_; ++d)
            w.context[(b * HQ + hi) * D_ + d] += alpha(w, b) * a[j] * w.x.data()[(b * L + j) * D_ + d];
        }
      }
    w.logits.resize({B, C_});
    w.dlogits.resize({B, C_});  // logits_grad(): the attribution objective writes it before backward()
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C_; ++c) {
        double z = bias_[c];
        for (int64_t k = 0; k < HQ * D_; ++k) z += W_[c * HQ * D_ + k] * w.context[b * HQ * D_ + k];
        w.logits.data()[b * C_ + c] = z;
      }
    return w.logits;
  }

  int64_t V_, D_, H_, Q_, C_;
  backend::Cpu::Context ctx_{.threads = 1};
  std::vector<double> E_, Qv_, W_, bias_, dE_, dQv_, dW_, dbias_;
  const TensorT* additive_ = nullptr;
  Work work_[2];
  int active_ = 0;
};

}  // namespace addrop::testing
