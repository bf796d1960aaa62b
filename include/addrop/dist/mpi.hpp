#pragma once
// dist::Mpi: the communicator of processes started by mpirun (Open MPI, Debian's
// libopenmpi-dev), collectives on host memory: the CPU backend's gradients and weights,
// and every host collective of dist::Nccl. Optional: needs <mpi.h> and the CMake
// component addrop::mpi (ADDROP_WITH_MPI); the core headers never include it.
//
//   addrop::dist::MpiSession session(argc, argv);   // MPI_Init ... MPI_Finalize
//   addrop::dist::Mpi comm;                         // MPI_COMM_WORLD
//   train::Trainer trainer(model, reg, options, comm);
//
// Determinism: gradients are summed by MPI_Allreduce over fixed buckets in a fixed order
// (train/distributed.hpp); Open MPI picks its reduction algorithm from the message size
// and the process count alone, so a run repeats exactly, and every rank receives the
// same sums (docs/distributed.md).
#include <mpi.h>

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "communicator.hpp"

namespace addrop::dist {

/// Whether this process was started by an MPI launcher (mpirun, mpiexec, srun with PMI):
/// programs start MPI only then, so a plain run needs no MPI runtime at all.
inline bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}

/// MPI_Init_thread (funneled: only the thread that called it makes MPI calls; the
/// backends' worker threads never do) for its lifetime, MPI_Finalize after.
class MpiSession {
 public:
  MpiSession(int& argc, char**& argv) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) return;
    int provided = 0;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
      throw std::runtime_error("MPI_Init_thread failed");
    owner_ = true;
  }
  ~MpiSession() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owner_ && !finalized) MPI_Finalize();
  }
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

 private:
  bool owner_ = false;
};

namespace mpi_detail {
inline char termination_message[512];
inline std::size_t termination_length = 0;
extern "C" inline void on_termination(int signal) {
  // Only async-signal-safe calls: write the prepared line, then die of the signal.
  [[maybe_unused]] const auto written = ::write(2, termination_message, termination_length);
  std::signal(signal, SIG_DFL);
  std::raise(signal);
}
}  // namespace mpi_detail

/// When mpirun ends this rank because another failed (it sends SIGTERM first), print
/// "`program`: rank r of n ended by the launcher: ..." so every rank's end is explained,
/// not only the failing one's. Opt-in: a program calls it once after MPI starts.
inline void report_termination(std::string_view program, int rank, int size) {
  const std::string line = std::string(program) + ": rank " + std::to_string(rank) + " of " + std::to_string(size) +
                           " ended by the launcher (another rank failed, or the job was cancelled)\n";
  mpi_detail::termination_length = std::min(line.size(), sizeof mpi_detail::termination_message);
  std::memcpy(mpi_detail::termination_message, line.data(), mpi_detail::termination_length);
  std::signal(SIGTERM, mpi_detail::on_termination);
}

class Mpi {
 public:
  explicit Mpi(MPI_Comm comm = MPI_COMM_WORLD) : comm_(comm) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    // Errors of a collective (a peer gone) end the job rather than return codes nobody reads.
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_ARE_FATAL);
  }
  int rank() const { return rank_; }
  int size() const { return size_; }
  MPI_Comm native() const { return comm_; }

  void all_reduce_sum(float* data, int64_t n) { reduce(data, n, MPI_FLOAT); }
  void all_reduce_sum(double* data, int64_t n) { reduce(data, n, MPI_DOUBLE); }
  void broadcast(float* data, int64_t n, int root) { bcast(data, n, MPI_FLOAT, root); }
  void broadcast(double* data, int64_t n, int root) { bcast(data, n, MPI_DOUBLE, root); }
  void broadcast(int32_t* data, int64_t n, int root) { bcast(data, n, MPI_INT32_T, root); }

  void host_all_reduce_sum(std::span<double> values) {
    reduce(values.data(), static_cast<int64_t>(values.size()), MPI_DOUBLE);
  }
  void host_broadcast(std::string& text, int root) {
    uint64_t n = text.size();
    MPI_Bcast(&n, 1, MPI_UINT64_T, root, comm_);
    text.resize(n);
    bcast(text.data(), static_cast<int64_t>(n), MPI_CHAR, root);
  }
  std::vector<std::vector<std::byte>> host_all_gather(std::span<const std::byte> mine) {
    const long long mine_n = static_cast<long long>(mine.size());
    std::vector<long long> sizes(static_cast<std::size_t>(size_));
    MPI_Allgather(&mine_n, 1, MPI_LONG_LONG, sizes.data(), 1, MPI_LONG_LONG, comm_);
    long long total = 0;
    for (long long s : sizes) total += s;
    if (total > INT_MAX)
      throw std::runtime_error("Mpi::host_all_gather: " + std::to_string(total) + " bytes in all, above 2 GiB");
    std::vector<int> counts(sizes.size()), offsets(sizes.size());
    for (std::size_t r = 0, at = 0; r < sizes.size(); ++r) {
      counts[r] = static_cast<int>(sizes[r]);
      offsets[r] = static_cast<int>(at);
      at += static_cast<std::size_t>(sizes[r]);
    }
    std::vector<std::byte> all(static_cast<std::size_t>(total));
    MPI_Allgatherv(mine.data(), static_cast<int>(mine_n), MPI_BYTE, all.data(), counts.data(), offsets.data(),
                   MPI_BYTE, comm_);
    std::vector<std::vector<std::byte>> out(sizes.size());
    for (std::size_t r = 0; r < sizes.size(); ++r)
      out[r].assign(all.begin() + offsets[r], all.begin() + offsets[r] + counts[r]);
    return out;
  }
  void barrier() { MPI_Barrier(comm_); }

  /// Prints `why` (naming this rank) and ends every process of the job: MPI_Abort makes
  /// mpirun kill the other ranks, wherever they wait.
  [[noreturn]] void abort(std::string_view why) {
    std::fprintf(stderr, "%.*s\n", static_cast<int>(why.size()), why.data());
    std::fflush(stderr);
    MPI_Abort(comm_, 1);
    std::abort();  // MPI_Abort does not return; for the compiler
  }

 private:
  // MPI counts are int: long buffers go in pieces of at most 2^30 elements.
  static constexpr int64_t kPiece = int64_t{1} << 30;
  void reduce(void* data, int64_t n, MPI_Datatype type) {
    int bytes = 0;
    MPI_Type_size(type, &bytes);
    auto* p = static_cast<char*>(data);
    for (int64_t at = 0; at < n; at += kPiece)
      MPI_Allreduce(MPI_IN_PLACE, p + at * bytes, static_cast<int>(std::min(kPiece, n - at)), type, MPI_SUM, comm_);
  }
  void bcast(void* data, int64_t n, MPI_Datatype type, int root) {
    int bytes = 0;
    MPI_Type_size(type, &bytes);
    auto* p = static_cast<char*>(data);
    for (int64_t at = 0; at < n; at += kPiece)
      MPI_Bcast(p + at * bytes, static_cast<int>(std::min(kPiece, n - at)), type, root, comm_);
  }

  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
};

static_assert(Communicator<Mpi>);

}  // namespace addrop::dist
