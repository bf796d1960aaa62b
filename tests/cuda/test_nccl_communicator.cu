// dist::Nccl (addrop/dist/nccl.hpp) on the GPUs of this machine: the bootstrap (GPU choice,
// unique id over MPI, ncclCommInitRank), the buffer collectives on device memory (in
// place, ordered after the work already queued on the context's stream, results readable
// on return), the host collectives through MPI, the argument checks, moving (the source
// left empty) and dist::AnyCommunicator holding one.
//
// ctest runs it as one process (MPI singleton: no mpirun), where every sum is the rank's
// own data, bit for bit. It also runs as `mpirun -np N` with N ranks on N GPUs, checking
// the sums and broadcasts across ranks (every value is a small multiple of 1/4, so the
// sums are exact whatever NCCL's order of additions); with more ranks on a node than it
// has GPUs, the constructor must refuse (one GPU per rank), and the test says so and
// exits 77.
//
// Exit codes: 0 every check passed, 1 a check failed, ADDROP_CUDA_SKIP_CODE (77) when no CUDA
// device can be used (ctest reports "skipped"). Option: --verbose (print every check).
#include <addrop/backend/cuda/cuda.hpp>
#include <addrop/dist/nccl.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#ifndef ADDROP_CUDA_SKIP_CODE
#define ADDROP_CUDA_SKIP_CODE 77
#endif

using namespace addrop;
using backend::Cuda;

namespace {

int checks = 0, failures = 0;
bool verbose = false;
int my_rank = 0;

void record(bool ok, const std::string& line) {
  ++checks;
  if (!ok) ++failures;
  if (!ok || verbose) std::printf("  [rank %d] %s %s\n", my_rank, ok ? "ok  " : "FAIL", line.c_str());
}

bool throws(const std::function<void()>& f, const char* needle) {
  try {
    f();
  } catch (const std::exception& e) {
    const bool named = std::strstr(e.what(), needle) != nullptr;
    if (!named || verbose) std::printf("  [rank %d] threw: %s\n", my_rank, e.what());
    return named;
  }
  return false;
}

/// Rank r's element i before a sum: a multiple of 1/4, so every sum over ranks is exact.
template <class T>
T summand(int64_t i, int r) {
  return static_cast<T>(static_cast<int>(i % 7) - 3) + static_cast<T>(0.25) * static_cast<T>(r);
}
template <class T>
T broadcast_value(int64_t i, int r) {
  return static_cast<T>(r * 1000 + static_cast<int>(i % 13));
}

template <class Comm, class T>
void check_buffer_collectives(Comm& comm, const Cuda::Context& ctx, const char* label, int64_t n) {
  const int rank = comm.rank(), size = comm.size();
  const std::string what = std::string(label) + " " + (sizeof(T) == 4 ? "float" : "double") + " n=" + std::to_string(n);
  Cuda::Buffer<T> dev;
  dev.reserve(n);
  std::vector<T> host(static_cast<std::size_t>(n)), back(static_cast<std::size_t>(n));

  // all_reduce_sum: one rank leaves the values as they were; N ranks give the exact sums.
  for (int64_t i = 0; i < n; ++i) host[static_cast<std::size_t>(i)] = summand<T>(i, rank);
  Cuda::to_device(ctx, n, host.data(), dev.data());
  comm.all_reduce_sum(dev.data(), n);
  Cuda::to_host(ctx, n, dev.data(), back.data());
  int64_t wrong = 0;
  for (int64_t i = 0; i < n; ++i) {
    T want = 0;
    for (int r = 0; r < size; ++r) want += summand<T>(i, r);
    if (size == 1) want = host[static_cast<std::size_t>(i)];
    if (std::memcmp(&back[static_cast<std::size_t>(i)], &want, sizeof(T)) != 0) ++wrong;
  }
  record(wrong == 0, what + ": all_reduce_sum exact (" + std::to_string(wrong) + " wrong)");

  // Ordered after the work already queued on the context's stream: fill, then the sum at once.
  Cuda::fill(ctx, n, static_cast<T>(1.5), dev.data());
  comm.all_reduce_sum(dev.data(), n);
  Cuda::to_host(ctx, n, dev.data(), back.data());
  wrong = 0;
  for (int64_t i = 0; i < n; ++i)
    if (back[static_cast<std::size_t>(i)] != static_cast<T>(1.5) * static_cast<T>(size)) ++wrong;
  record(wrong == 0, what + ": all_reduce_sum after a queued fill (" + std::to_string(wrong) + " wrong)");

  // broadcast from the last rank (rank 0 when alone): every rank holds the root's values.
  const int root = size - 1;
  for (int64_t i = 0; i < n; ++i) host[static_cast<std::size_t>(i)] = broadcast_value<T>(i, rank);
  Cuda::to_device(ctx, n, host.data(), dev.data());
  comm.broadcast(dev.data(), n, root);
  Cuda::to_host(ctx, n, dev.data(), back.data());
  wrong = 0;
  for (int64_t i = 0; i < n; ++i)
    if (back[static_cast<std::size_t>(i)] != broadcast_value<T>(i, root)) ++wrong;
  record(wrong == 0, what + ": broadcast from rank " + std::to_string(root) + " (" + std::to_string(wrong) + " wrong)");
}

template <class Comm>
void check_host_collectives(Comm& comm, const char* label) {
  const int rank = comm.rank(), size = comm.size();
  const std::string what = label;

  std::vector<double> values = {1.5 + rank, -2.25 * (rank + 1)};
  comm.host_all_reduce_sum(values);
  double want0 = 0, want1 = 0;
  for (int r = 0; r < size; ++r) want0 += 1.5 + r, want1 += -2.25 * (r + 1);
  record(values[0] == want0 && values[1] == want1, what + ": host_all_reduce_sum");

  std::string text = rank == 0 ? std::string("from rank 0, with a \0 inside", 27) : "not this";
  comm.host_broadcast(text, 0);
  record(text == std::string("from rank 0, with a \0 inside", 27), what + ": host_broadcast");

  std::string mine = "rank " + std::to_string(rank) + std::string(static_cast<std::size_t>(rank), '+');
  const auto gathered = comm.host_all_gather(std::as_bytes(std::span<const char>(mine.data(), mine.size())));
  bool ok = static_cast<int>(gathered.size()) == size;
  for (int r = 0; ok && r < size; ++r) {
    const std::string want = "rank " + std::to_string(r) + std::string(static_cast<std::size_t>(r), '+');
    ok = gathered[static_cast<std::size_t>(r)].size() == want.size() &&
         std::memcmp(gathered[static_cast<std::size_t>(r)].data(), want.data(), want.size()) == 0;
  }
  record(ok, what + ": host_all_gather");

  comm.barrier();
  record(true, what + ": barrier");
}

void run(dist::Nccl& comm) {
  const Cuda::Context ctx = comm.context();
  record(comm.rank() >= 0 && comm.rank() < comm.size(), "rank " + std::to_string(comm.rank()) + " of " +
                                                           std::to_string(comm.size()));
  record(comm.native() != nullptr, "NCCL communicator made");
  int devices = 0;
  cudaGetDeviceCount(&devices);
  record(comm.device() == comm.local_rank() % devices && ctx.device() == comm.device(),
         "GPU " + std::to_string(comm.device()) + " = node rank " + std::to_string(comm.local_rank()) + " % " +
             std::to_string(devices) + " GPUs");
  int nccl_device = -1, nccl_rank = -1, nccl_count = -1;
  ncclCommCuDevice(comm.native(), &nccl_device);
  ncclCommUserRank(comm.native(), &nccl_rank);
  ncclCommCount(comm.native(), &nccl_count);
  record(nccl_device == comm.device() && nccl_rank == comm.rank() && nccl_count == comm.size(),
         "NCCL's device, rank and count agree");

  for (int64_t n : {int64_t{1}, int64_t{5}, int64_t{1000}, (int64_t{1} << 20) + 3}) {
    check_buffer_collectives<dist::Nccl, float>(comm, ctx, "Nccl", n);
    check_buffer_collectives<dist::Nccl, double>(comm, ctx, "Nccl", n);
  }
  comm.all_reduce_sum(static_cast<float*>(nullptr), 0);  // nothing to do, on every rank
  comm.broadcast(static_cast<double*>(nullptr), 0, 0);
  record(true, "n = 0 is a no-op");
  check_host_collectives(comm, "Nccl");

  Cuda::Buffer<float> one;
  one.reserve(1);
  record(throws([&] { comm.broadcast(one.data(), 1, comm.size()); }, "root"), "broadcast: root out of range throws");
  record(throws([&] { comm.all_reduce_sum(one.data(), -1); }, "negative"), "all_reduce_sum: negative count throws");

  // A second communicator on the caller's Context (same GPU, its own stream).
  {
    const Cuda::Context own = Cuda::Context::create(comm.device());
    dist::Nccl second(comm.mpi(), own);
    record(second.device() == comm.device() && second.context().stream() == own.stream() &&
               second.context().stream() != ctx.stream(),
           "Nccl(Mpi, Context): the context's device and stream");
    check_buffer_collectives<dist::Nccl, float>(second, own, "Nccl(Mpi, Context)", 4099);
  }

  // Moving leaves the source empty; AnyCommunicator holds a moved Nccl.
  dist::Nccl moved(std::move(comm));
  record(comm.native() == nullptr && moved.native() != nullptr, "move: the source is empty");
  record(throws([&] { comm.all_reduce_sum(one.data(), 1); }, "moved from"), "move: the source's collectives throw");
  check_buffer_collectives<dist::Nccl, float>(moved, ctx, "moved Nccl", 777);
  dist::AnyCommunicator any(std::move(moved));
  record(moved.native() == nullptr && any.rank() == comm.rank() && any.size() == comm.size(),
         "AnyCommunicator(std::move(nccl))");
  check_buffer_collectives<dist::AnyCommunicator, double>(any, ctx, "AnyCommunicator", 777);
  check_host_collectives(any, "AnyCommunicator");
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--verbose") {
      verbose = true;
    } else {
      std::printf("usage: %s [--verbose]\n", argv[0]);
      return 2;
    }
  }
  // No GPU: skipped before MPI starts (a machine without a GPU needs no MPI runtime either).
  const std::string why = Cuda::unavailable_reason(0);
  if (!why.empty()) {
    std::printf("skipped: %s\n", why.c_str());
    return ADDROP_CUDA_SKIP_CODE;
  }
  try {
    dist::MpiSession session(argc, argv);
    dist::Mpi mpi;
    my_rank = mpi.rank();

    MPI_Comm node = MPI_COMM_NULL;
    MPI_Comm_split_type(mpi.native(), MPI_COMM_TYPE_SHARED, mpi.rank(), MPI_INFO_NULL, &node);
    int node_ranks = 1, devices = 0;
    MPI_Comm_size(node, &node_ranks);
    MPI_Comm_free(&node);
    cudaGetDeviceCount(&devices);

    {
      std::optional<dist::Nccl> made;
      try {
        made.emplace(mpi);
      } catch (const std::exception& e) {
        // More ranks on this node than GPUs (each seeing them all): refused on every rank.
        const bool shared = std::strstr(e.what(), "both use GPU") || std::strstr(e.what(), "failed to select its GPU");
        if (node_ranks > devices && shared) {
          std::printf("[rank %d] %d ranks on this node, %d GPU(s): refused as it must be (one GPU per rank); "
                      "skipped\n  %s\n", my_rank, node_ranks, devices, e.what());
          return ADDROP_CUDA_SKIP_CODE;
        }
        throw;
      }
      dist::Nccl& comm = *made;
      if (my_rank == 0) {
        int version = 0;
        ncclGetVersion(&version);
        cudaDeviceProp prop{};
        cudaGetDeviceProperties(&prop, comm.device());
        std::printf("NCCL %d, %d rank(s), rank 0 on GPU %d: %s\n", version, comm.size(), comm.device(), prop.name);
      }
      run(comm);
    }  // every NCCL communicator destroyed before MPI_Finalize

    // The verdict of every rank.
    double failed = failures;
    mpi.host_all_reduce_sum(std::span<double>(&failed, 1));
    if (my_rank == 0)
      std::printf("%s: %d checks on rank 0, %g failure(s) over all ranks\n",
                  failed == 0 ? "nccl communicator: ok" : "nccl communicator: FAILED", checks, failed);
    return failed == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::printf("[rank %d] FAILED: %s\n", my_rank, e.what());
    return 1;
  }
}
