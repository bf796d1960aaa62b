#pragma once
// The communicator seam of data-parallel training (docs/distributed.md): the collectives
// train::Trainer and the evaluators call, and nothing else. Three implementations:
//   dist::Local   one process, every collective a no-op (this header; the default)
//   dist::Mpi     processes started by mpirun, collectives on host memory (dist/mpi.hpp,
//                 CMake component addrop::mpi, Open MPI)
//   dist::Nccl    one GPU per process, gradient collectives on GPU memory through NCCL,
//                 host collectives and the bootstrap through MPI (dist/nccl.hpp, addrop::nccl)
// A trainer author with another transport (Gloo, UCC, a job scheduler's own) implements
// the members below and passes the object to Trainer.
//
// Two memories: "buffer" collectives (all_reduce_sum, broadcast) take pointers in the
// memory of the backend the communicator serves (host for Local and Mpi, the GPU for
// Nccl); "host" collectives take host containers (losses, counts, predictions, the
// resumed trainer state, error flags). Every collective is called by every rank in the
// same order with the same sizes; sums are over ranks, identical on every rank after the
// call.
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <cstdlib>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

namespace addrop::dist {

/// What a communicator provides (see above). `abort` ends every process of the job with
/// `why` printed by the calling rank (a fault in one rank must not leave the others
/// waiting in a collective); it does not return.
template <class C>
concept Communicator = requires(C& c, const C& cc, float* f, double* d, int64_t n, int root, std::span<double> hd,
                                std::string& text, std::span<const std::byte> bytes, std::string_view why) {
  { cc.rank() } -> std::convertible_to<int>;
  { cc.size() } -> std::convertible_to<int>;
  c.all_reduce_sum(f, n);
  c.all_reduce_sum(d, n);
  c.broadcast(f, n, root);
  c.broadcast(d, n, root);
  c.host_all_reduce_sum(hd);
  c.host_broadcast(text, root);
  { c.host_all_gather(bytes) } -> std::same_as<std::vector<std::vector<std::byte>>>;
  c.barrier();
  c.abort(why);
};

/// One process: rank 0 of 1, every collective leaves its data as it is.
struct Local {
  int rank() const { return 0; }
  int size() const { return 1; }
  template <class T>
  void all_reduce_sum(T*, int64_t) {}
  template <class T>
  void broadcast(T*, int64_t, int) {}
  void host_all_reduce_sum(std::span<double>) {}
  void host_broadcast(std::string&, int) {}
  std::vector<std::vector<std::byte>> host_all_gather(std::span<const std::byte> mine) {
    return {std::vector<std::byte>(mine.begin(), mine.end())};
  }
  void barrier() {}
  [[noreturn]] void abort(std::string_view why);
};

/// Rows [begin, end) of a batch of `total` rows that rank `rank` of `ranks` trains on:
/// contiguous, in rank order, sizes differing by at most one (the first total % ranks
/// ranks take one more). A rank may get none when total < ranks.
struct RowRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};
inline RowRange row_range(int64_t total, int rank, int ranks) {
  const int64_t base = total / ranks, extra = total % ranks, r = rank;
  const int64_t begin = r * base + (r < extra ? r : extra);
  return {begin, begin + base + (r < extra ? 1 : 0)};
}

/// Any communicator behind one type, for programs that pick the transport at run time
/// (the example trainers: dist::Local, or dist::Mpi under mpirun). A virtual call per
/// collective, nothing per element.
class AnyCommunicator {
 public:
  AnyCommunicator() : AnyCommunicator(Local{}) {}
  template <Communicator C>
    requires(!std::same_as<std::remove_cvref_t<C>, AnyCommunicator>)
  explicit AnyCommunicator(C comm) : impl_(std::make_shared<Held<C>>(std::move(comm))) {}

  int rank() const { return impl_->rank(); }
  int size() const { return impl_->size(); }
  void all_reduce_sum(float* data, int64_t n) { impl_->all_reduce_sum(data, n); }
  void all_reduce_sum(double* data, int64_t n) { impl_->all_reduce_sum(data, n); }
  void broadcast(float* data, int64_t n, int root) { impl_->broadcast(data, n, root); }
  void broadcast(double* data, int64_t n, int root) { impl_->broadcast(data, n, root); }
  void host_all_reduce_sum(std::span<double> values) { impl_->host_all_reduce_sum(values); }
  void host_broadcast(std::string& text, int root) { impl_->host_broadcast(text, root); }
  std::vector<std::vector<std::byte>> host_all_gather(std::span<const std::byte> mine) {
    return impl_->host_all_gather(mine);
  }
  void barrier() { impl_->barrier(); }
  [[noreturn]] void abort(std::string_view why) {
    impl_->abort(why);
    std::abort();
  }

 private:
  struct Base {
    virtual ~Base() = default;
    virtual int rank() const = 0;
    virtual int size() const = 0;
    virtual void all_reduce_sum(float*, int64_t) = 0;
    virtual void all_reduce_sum(double*, int64_t) = 0;
    virtual void broadcast(float*, int64_t, int) = 0;
    virtual void broadcast(double*, int64_t, int) = 0;
    virtual void host_all_reduce_sum(std::span<double>) = 0;
    virtual void host_broadcast(std::string&, int) = 0;
    virtual std::vector<std::vector<std::byte>> host_all_gather(std::span<const std::byte>) = 0;
    virtual void barrier() = 0;
    virtual void abort(std::string_view) = 0;
  };
  template <class C>
  struct Held final : Base {
    explicit Held(C c) : comm(std::move(c)) {}
    int rank() const override { return comm.rank(); }
    int size() const override { return comm.size(); }
    void all_reduce_sum(float* d, int64_t n) override { comm.all_reduce_sum(d, n); }
    void all_reduce_sum(double* d, int64_t n) override { comm.all_reduce_sum(d, n); }
    void broadcast(float* d, int64_t n, int root) override { comm.broadcast(d, n, root); }
    void broadcast(double* d, int64_t n, int root) override { comm.broadcast(d, n, root); }
    void host_all_reduce_sum(std::span<double> v) override { comm.host_all_reduce_sum(v); }
    void host_broadcast(std::string& t, int root) override { comm.host_broadcast(t, root); }
    std::vector<std::vector<std::byte>> host_all_gather(std::span<const std::byte> m) override {
      return comm.host_all_gather(m);
    }
    void barrier() override { comm.barrier(); }
    void abort(std::string_view why) override { comm.abort(why); }
    C comm;
  };
  std::shared_ptr<Base> impl_;
};

}  // namespace addrop::dist

#include <cstdio>
#include <cstdlib>

inline void addrop::dist::Local::abort(std::string_view why) {
  std::fprintf(stderr, "%.*s\n", static_cast<int>(why.size()), why.data());
  std::exit(1);
}

static_assert(addrop::dist::Communicator<addrop::dist::Local>);
static_assert(addrop::dist::Communicator<addrop::dist::AnyCommunicator>);
