#pragma once
// dist::Nccl: the communicator of backend::Cuda training, one process per GPU started by
// mpirun. The gradient and weight collectives (all_reduce_sum, broadcast) run through
// NCCL on GPU memory, on the stream of a backend::Cuda::Context; the host collectives,
// abort and the bootstrap go through the held dist::Mpi (dist/mpi.hpp). Optional: needs
// <nccl.h>, <mpi.h> and nvcc (it includes backend/cuda/cuda.hpp), and the CMake component
// addrop::nccl (ADDROP_WITH_NCCL; addrop::mpi + addrop::cuda + the toolkit's libnccl).
//
//   addrop::dist::MpiSession session(argc, argv);
//   addrop::dist::Nccl comm{addrop::dist::Mpi()};   // GPU: node-local rank % GPUs
//   models::EncoderModel<float, backend::Cuda> model(config, comm.context());
//   train::Trainer trainer(model, reg, options, comm);
//
// One rank per GPU is the model. The constructor picks this rank's GPU as its rank among
// the ranks of its node (MPI_Comm_split_type, MPI_COMM_TYPE_SHARED) modulo the GPUs it
// sees, unless the caller names a device or hands over a Context (whose device is then
// the one); two ranks of a node on one GPU are refused (NCCL does not allow it), naming
// both. Bootstrap: rank 0 makes the ncclUniqueId, MPI_Bcast hands it to every rank, and
// every rank calls ncclCommInitRank(size, id, rank). A failure of any rank during the
// setup is agreed over MPI before the next step, so every rank throws rather than some
// waiting for the others.
//
// Streams: the buffer collectives are queued on the Context's stream, after whatever was
// queued there before (the backward pass), and return once the stream has drained, so
// the caller reads the results at once. Build the model on context() (or on a Context
// sharing its stream): work queued on another stream is not waited for.
//
// Determinism: NVIDIA documents no guarantee, but NCCL's ring and tree reductions add in
// an order fixed by the algorithm, protocol and channel count it picks, and it picks them
// from the world size, the message size, the topology it detects and its version (and the
// NCCL_ALGO / NCCL_PROTO / NCCL_*_CHANNELS settings). The gradient buckets are fixed by the
// model (train/distributed.hpp), so a run on the same machines with the same NCCL repeats
// exactly, and every rank receives the same sums (the reduced values are broadcast, not
// recomputed per rank). Across NCCL versions or machines, or when NCCL switches to
// in-network reduction (NVLS, CollNet), the last bits may differ; the sums never agree
// bit for bit with dist::Mpi's or one process's. Pin NCCL_ALGO=Ring NCCL_PROTO=Simple to
// rule out algorithm changes between runs.
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "../backend/cuda/cuda.hpp"
#include "communicator.hpp"
#include "mpi.hpp"

namespace addrop::dist {

/// NCCL collectives on one GPU per rank (see above). Not copyable (it owns an NCCL
/// communicator); movable, the source left empty (its destructor destroys nothing and any
/// buffer collective on it throws), so that AnyCommunicator(std::move(nccl)) holds it. The
/// destructor calls ncclCommDestroy, or ncclCommAbort when a collective failed or NCCL
/// reported an asynchronous error (a destroy could then wait for ever). Destroy it before
/// main returns (not from a static: the CUDA runtime may be gone by then).
class Nccl {
 public:
  /// Device argument meaning "this rank's rank on its node, modulo the GPUs it sees".
  static constexpr int kLocalDevice = -1;

  /// Joins every rank of `mpi` (a collective over its communicator: every rank constructs
  /// its Nccl at the same point) on GPU `device` (kLocalDevice: node-local rank % GPUs),
  /// with a Context of its own stream on that device (context()). Throws
  /// std::runtime_error on every rank when any rank fails to set up.
  explicit Nccl(Mpi mpi, int device = kLocalDevice) : mpi_(mpi) { setup(device, nullptr); }

  /// As above, the collectives running on `ctx`'s stream and device (a default Context:
  /// the legacy default stream of the device current now).
  Nccl(Mpi mpi, backend::Cuda::Context ctx) : mpi_(mpi) { setup(kLocalDevice, &ctx); }

  Nccl(const Nccl&) = delete;
  Nccl& operator=(const Nccl&) = delete;
  Nccl(Nccl&& o) noexcept
      : mpi_(o.mpi_), ctx_(std::move(o.ctx_)), stream_(o.stream_), device_(o.device_),
        local_rank_(o.local_rank_), broken_(o.broken_), comm_(std::exchange(o.comm_, nullptr)) {}
  Nccl& operator=(Nccl&& o) noexcept {
    if (this != &o) {
      destroy();
      mpi_ = o.mpi_;
      ctx_ = std::move(o.ctx_);
      stream_ = o.stream_;
      device_ = o.device_;
      local_rank_ = o.local_rank_;
      broken_ = o.broken_;
      comm_ = std::exchange(o.comm_, nullptr);
    }
    return *this;
  }
  ~Nccl() { destroy(); }

  int rank() const { return mpi_.rank(); }
  int size() const { return mpi_.size(); }
  /// This rank's GPU, its rank among the ranks of its node, the Context the collectives
  /// run on (build the model on it), the MPI side and the NCCL communicator.
  int device() const { return device_; }
  int local_rank() const { return local_rank_; }
  const backend::Cuda::Context& context() const { return ctx_; }
  Mpi& mpi() { return mpi_; }
  ncclComm_t native() const { return comm_; }

  /// Buffer collectives: `data` is device memory of this rank's GPU; in place, on the
  /// context's stream, returning once it has drained.
  void all_reduce_sum(float* data, int64_t n) { all_reduce(data, n, ncclFloat, "all_reduce_sum"); }
  void all_reduce_sum(double* data, int64_t n) { all_reduce(data, n, ncclDouble, "all_reduce_sum"); }
  void broadcast(float* data, int64_t n, int root) { bcast(data, n, ncclFloat, root, "broadcast"); }
  void broadcast(double* data, int64_t n, int root) { bcast(data, n, ncclDouble, root, "broadcast"); }

  /// Host collectives: through MPI.
  void host_all_reduce_sum(std::span<double> values) { mpi_.host_all_reduce_sum(values); }
  void host_broadcast(std::string& text, int root) { mpi_.host_broadcast(text, root); }
  std::vector<std::vector<std::byte>> host_all_gather(std::span<const std::byte> mine) {
    return mpi_.host_all_gather(mine);
  }
  void barrier() { mpi_.barrier(); }

  /// Aborts the NCCL communicator (its kernels stop waiting for peers), then Mpi::abort:
  /// prints `why` and ends every process of the job.
  [[noreturn]] void abort(std::string_view why) {
    if (comm_) ncclCommAbort(std::exchange(comm_, nullptr));  // errors ignored: the job ends anyway
    mpi_.abort(why);
  }

 private:
  [[noreturn]] static void fail(const char* op, const std::string& what) {
    throw std::runtime_error(std::string("addrop::dist::Nccl::") + op + ": " + what);
  }
  static void check(cudaError_t e, const char* op, const char* call) {
    if (e != cudaSuccess) fail(op, std::string(call) + " failed: " + backend::cuda_detail::error_text(e));
  }
  void check(ncclResult_t r, const char* op, const char* call) const {
    if (r == ncclSuccess) return;
    std::string what = std::string(call) + " failed: " + ncclGetErrorString(r);
    if (comm_) {
      const char* last = ncclGetLastError(comm_);
      if (last && *last) what += std::string(" (") + last + ")";
    }
    fail(op, what);
  }

  /// Throws on every rank of `comm` when `failure` is non-empty on any: this rank's own
  /// message, or one naming the lowest failing rank.
  static void agree(const std::string& failure, MPI_Comm comm, int rank, int size, const char* step) {
    const int mine = failure.empty() ? size : rank;
    int first = size;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
    if (first == size) return;
    if (!failure.empty()) throw std::runtime_error(failure);
    throw std::runtime_error("addrop::dist::Nccl: rank " + std::to_string(first) + " failed to " + step +
                             " (see that rank's error)");
  }

  void setup(int device, const backend::Cuda::Context* given) {
    const MPI_Comm world = mpi_.native();
    const int rank = mpi_.rank(), size = mpi_.size();

    // 1. This rank's rank on its node.
    MPI_Comm node = MPI_COMM_NULL;
    MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
    int node_size = 1;
    MPI_Comm_rank(node, &local_rank_);
    MPI_Comm_size(node, &node_size);

    // 2. Its GPU and Context (no collective here: a failure is agreed below).
    struct Claim {
      int world_rank = -1, device = -1;
      char bus[64] = {};
    } claim;
    claim.world_rank = rank;
    std::string failure;
    try {
      if (given) {
        auto& state = given->state();
        ctx_ = *given;
        device_ = state.device;
        stream_ = state.stream;
      } else {
        std::string why;
        const int gpus = backend::cuda_detail::device_count(&why);
        if (gpus == 0) fail("Nccl", "no CUDA device (" + why + ")");
        device_ = device == kLocalDevice ? local_rank_ % gpus : device;
        ctx_ = backend::Cuda::Context::create(device_);  // throws naming the device when it can't be used
        stream_ = ctx_.stream();
      }
      check(cudaDeviceGetPCIBusId(claim.bus, sizeof claim.bus - 1, device_), "Nccl", "cudaDeviceGetPCIBusId");
      claim.device = device_;
    } catch (const std::exception& e) {
      failure = "rank " + std::to_string(rank) + ": " + e.what();
      std::memset(claim.bus, 0, sizeof claim.bus);
    }

    // 3. One GPU per rank: the ranks of a node compare the PCI addresses they claimed.
    std::vector<Claim> claims(static_cast<std::size_t>(node_size));
    MPI_Allgather(&claim, sizeof(Claim), MPI_BYTE, claims.data(), sizeof(Claim), MPI_BYTE, node);
    MPI_Comm_free(&node);
    if (failure.empty())
      for (const Claim& other : claims)
        if (other.world_rank != rank && other.bus[0] && std::strcmp(other.bus, claim.bus) == 0) {
          failure = "addrop::dist::Nccl: ranks " + std::to_string(rank) + " and " + std::to_string(other.world_rank) +
                    " both use GPU " + claim.bus + " (device " + std::to_string(device_) + " of rank " +
                    std::to_string(rank) + ", " + std::to_string(other.device) + " of rank " +
                    std::to_string(other.world_rank) + "): NCCL needs one GPU per rank; start at most as many ranks "
                    "per node as it has GPUs";
          break;
        }
    agree(failure, world, rank, size, "select its GPU");

    // 4. Rank 0's unique id to every rank.
    ncclUniqueId id{};
    failure.clear();
    if (rank == 0) {
      const ncclResult_t r = ncclGetUniqueId(&id);
      if (r != ncclSuccess) failure = std::string("addrop::dist::Nccl: ncclGetUniqueId failed: ") + ncclGetErrorString(r);
    }
    agree(failure, world, rank, size, "make the NCCL unique id");
    MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, world);

    // 5. The communicator (ncclCommInitRank waits for every rank).
    failure.clear();
    try {
      check(cudaSetDevice(device_), "Nccl", "cudaSetDevice");
      ncclComm_t made = nullptr;
      const ncclResult_t r = ncclCommInitRank(&made, size, id, rank);
      if (r != ncclSuccess) {
        std::string what = std::string("ncclCommInitRank failed: ") + ncclGetErrorString(r);
        if (made) {
          if (const char* last = ncclGetLastError(made); last && *last) what += std::string(" (") + last + ")";
          ncclCommAbort(made);
        }
        fail("Nccl", "rank " + std::to_string(rank) + ": " + what);
      }
      comm_ = made;
    } catch (const std::exception& e) {
      failure = e.what();
    }
    try {
      agree(failure, world, rank, size, "join the NCCL communicator");
    } catch (...) {
      if (comm_) ncclCommAbort(std::exchange(comm_, nullptr));
      throw;
    }
  }

  void activate(const char* op) const {
    if (!comm_) fail(op, "empty communicator (moved from)");
    int current = -1;
    check(cudaGetDevice(&current), op, "cudaGetDevice");
    if (current != device_) check(cudaSetDevice(device_), op, "cudaSetDevice");
  }

  /// Waits for the stream, watching the communicator: a peer gone or a network error
  /// throws rather than leaving this rank waiting (and the destructor then aborts the
  /// communicator instead of waiting for its operations).
  void wait(const char* op) {
    for (;;) {
      const cudaError_t e = cudaStreamQuery(stream_);
      if (e == cudaSuccess) {
        broken_ = false;
        return;
      }
      if (e != cudaErrorNotReady) check(e, op, "cudaStreamQuery");
      ncclResult_t async = ncclSuccess;
      check(ncclCommGetAsyncError(comm_, &async), op, "ncclCommGetAsyncError");
      check(async, op, "NCCL (asynchronous error)");
      std::this_thread::yield();
    }
  }

  void all_reduce(void* data, int64_t n, ncclDataType_t type, const char* op) {
    if (n < 0) fail(op, "negative count " + std::to_string(n));
    activate(op);
    if (n == 0) return;  // every rank passes the same n, so every rank skips
    check(ncclAllReduce(data, data, static_cast<std::size_t>(n), type, ncclSum, comm_, stream_), op, "ncclAllReduce");
    broken_ = true;  // queued: until wait() sees it done
    wait(op);
  }
  void bcast(void* data, int64_t n, ncclDataType_t type, int root, const char* op) {
    if (n < 0) fail(op, "negative count " + std::to_string(n));
    if (root < 0 || root >= size()) fail(op, "root " + std::to_string(root) + " outside 0.." + std::to_string(size() - 1));
    activate(op);
    if (n == 0) return;
    check(ncclBroadcast(data, data, static_cast<std::size_t>(n), type, root, comm_, stream_), op, "ncclBroadcast");
    broken_ = true;
    wait(op);
  }

  void destroy() noexcept {
    if (!comm_) return;
    // Errors are ignored: a destructor must not throw (and at exit the runtime may be gone).
    int current = -1;
    if (cudaGetDevice(&current) == cudaSuccess && current != device_) cudaSetDevice(device_);
    // A collective that failed or was left unfinished, or an asynchronous error: abort
    // (ncclCommDestroy would wait for operations that may never end).
    ncclResult_t async = ncclSuccess;
    if (broken_ || ncclCommGetAsyncError(comm_, &async) != ncclSuccess || async != ncclSuccess)
      ncclCommAbort(std::exchange(comm_, nullptr));
    else
      ncclCommDestroy(std::exchange(comm_, nullptr));
  }

  Mpi mpi_;
  backend::Cuda::Context ctx_;  ///< keeps the stream alive
  cudaStream_t stream_ = nullptr;
  int device_ = -1, local_rank_ = 0;
  bool broken_ = false;  ///< a collective was queued and not seen to finish
  ncclComm_t comm_ = nullptr;
};

static_assert(Communicator<Nccl>);

}  // namespace addrop::dist
