#pragma once
// mpirun support of the example trainers (docs/distributed.md): main() makes a
// ProcessGroup first; under mpirun (and built with addrop::mpi) every rank joins
// dist::Mpi, otherwise the program is one process (dist::Local). The model code gets the
// communicator from communicator_for<Backend>(); rank 0 alone writes the run files
// (writes_files()). A failure on any rank ends the whole job with a message naming the
// rank and the cause (ProcessGroup::fail). Only the programs' main files are compiled
// with ADDROP_WITH_MPI (examples/CMakeLists.txt): the model code sees the communicator
// through dist::AnyCommunicator alone.
#include <addrop/dist/communicator.hpp>
#if defined(ADDROP_WITH_MPI) || defined(ADDROP_WITH_NCCL)
#include <addrop/dist/mpi.hpp>
#endif
#if defined(ADDROP_WITH_NCCL) && defined(__CUDACC__)
#include <addrop/dist/nccl.hpp>
#endif

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>

#include <addrop/backend/cpu.hpp>
#include <addrop/io/checkpoint.hpp>
#include <addrop/train/distributed.hpp>
#include <addrop/train/run_files.hpp>

namespace addrop_examples {

/// The communicator of this process: dist::Local until a ProcessGroup joins an MPI job.
inline addrop::dist::AnyCommunicator& communicator() {
  static addrop::dist::AnyCommunicator comm;
  return comm;
}

/// Whether this process writes run files (summaries, curves, tables): rank 0.
inline bool writes_files() { return communicator().rank() == 0; }

/// The communicator the model code of `Backend` trains with, on the model's context
/// `ctx`. The CPU backend's gradients are host memory, which MPI reduces; a GPU backend's
/// are reduced by NCCL on the context's stream (dist::Nccl, addrop::nccl), its host values
/// still over MPI. The copy shares the communicator; keep it for the run.
template <class Backend>
addrop::dist::AnyCommunicator communicator_for([[maybe_unused]] const typename Backend::Context& ctx) {
  auto& comm = communicator();
  if constexpr (!std::is_same_v<Backend, addrop::backend::Cpu>) {
    if (comm.size() > 1) {
#if defined(ADDROP_WITH_NCCL) && defined(__CUDACC__)
      return addrop::dist::AnyCommunicator(addrop::dist::Nccl(addrop::dist::Mpi(), ctx));
#else
      throw std::runtime_error("--device cuda with " + std::to_string(comm.size()) +
                               " MPI ranks needs NCCL, which this build has not (addrop::nccl: CUDA, MPI and the "
                               "toolkit's nccl.h; docs/distributed.md)");
#endif
    }
  }
  return comm;
}

/// This process's rank among the ranks of its node (0 without a launcher): the GPU a rank
/// of a multi-GPU job uses (one rank per GPU).
inline int local_rank() {
  for (const char* v : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"})
    if (const char* s = std::getenv(v)) return std::max(0, std::atoi(s));
  return 0;
}

/// Loads `dir`/model.safetensors into `model` on every rank when rank 0 has it (rank 0
/// reads, the others receive the weights); false, and nothing changed, when it has not.
template <class Model, class Comm>
bool load_checkpoint_everywhere(Model& model, const std::filesystem::path& dir, Comm& comm) {
  double found = 0;
  if (comm.rank() == 0 && std::filesystem::exists(dir / "model.safetensors")) {
    addrop::io::load_weights(model, addrop::io::SafeTensors::load(dir / "model.safetensors"), true);
    found = 1;
  }
  comm.host_all_reduce_sum(std::span<double>(&found, 1));
  if (found > 0) addrop::train::broadcast_parameters(model.parameters(), comm);
  return found > 0;
}

/// A folder that rank 0 makes (`make()` writes it into `dir`) and every rank loads
/// (`load(folder)`): rank 0 from `dir`, the others from a private copy of its files sent
/// over the communicator, so no rank reads a half-written file and no disk needs sharing.
template <class Make, class Load>
auto shared_folder(const std::filesystem::path& dir, Make&& make, Load&& load) {
  namespace fs = std::filesystem;
  auto& comm = communicator();
  if (comm.size() == 1) {
    make();
    return load(dir);
  }
  std::string packed;  // name \0 size \0 bytes, per file
  if (comm.rank() == 0) {
    make();
    for (const auto& entry : fs::directory_iterator(dir)) {
      if (!entry.is_regular_file()) continue;
      const std::string bytes = addrop::train::read_file(entry.path());
      packed += entry.path().filename().string() + '\0' + std::to_string(bytes.size()) + '\0' + bytes;
    }
  }
  comm.host_broadcast(packed, 0);
  if (comm.rank() == 0) return load(dir);
  const fs::path copy = fs::temp_directory_path() /
                        ("addrop-rank" + std::to_string(comm.rank()) + "-" + dir.filename().string() + "-" +
                         std::to_string(static_cast<long long>(std::hash<std::string>{}(dir.string()) % 1000000007)));
  fs::remove_all(copy);
  fs::create_directories(copy);
  for (std::size_t at = 0; at < packed.size();) {
    const std::size_t name_end = packed.find('\0', at), size_end = packed.find('\0', name_end + 1);
    const std::string name = packed.substr(at, name_end - at);
    const std::size_t n = std::stoull(packed.substr(name_end + 1, size_end - name_end - 1));
    addrop::train::write_file_atomic(copy / name, packed.substr(size_end + 1, n));
    at = size_end + 1 + n;
  }
  auto loaded = load(copy);
  fs::remove_all(copy);
  return loaded;
}

/// Number of processes an MPI launcher started this one among (1 when none did).
inline int launched_world_size() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
    if (const char* s = std::getenv(v)) return std::max(1, std::atoi(s));
  return 1;
}

class ProcessGroup {
 public:
  ProcessGroup(int& argc, char**& argv, std::string program) : program_(std::move(program)) {
#if defined(ADDROP_WITH_MPI)
    if (addrop::dist::launched_by_mpi()) {
      session_ = std::make_shared<addrop::dist::MpiSession>(argc, argv);
      communicator() = addrop::dist::AnyCommunicator(addrop::dist::Mpi());
      addrop::dist::report_termination(program_, communicator().rank(), communicator().size());
      if (communicator().rank() == 0 && communicator().size() > 1)
        std::fprintf(stderr, "%s: data parallel over %d MPI processes\n", program_.c_str(), communicator().size());
    }
#else
    (void)argc;
    (void)argv;
    if (launched_world_size() > 1) {
      std::fprintf(stderr,
                   "%s: started by mpirun with %d processes, but this build has no MPI (install libopenmpi-dev "
                   "and reconfigure: docs/distributed.md); each process would train alone into the same folder\n",
                   program_.c_str(), launched_world_size());
      std::exit(2);
    }
#endif
  }

  /// What main's catch does: one process prints and returns 1; a rank of a job prints
  /// "program: rank r of n: what" and ends every rank (no other rank is left waiting).
  int fail(const std::exception& e) {
    auto& comm = communicator();
    if (comm.size() == 1) {
      std::fprintf(stderr, "%s: %s\n", program_.c_str(), e.what());
      return 1;
    }
    comm.abort(program_ + ": rank " + std::to_string(comm.rank()) + " of " + std::to_string(comm.size()) +
               " failed: " + e.what() + " (ending every rank)");
  }

 private:
  std::string program_;
  std::shared_ptr<void> session_;  // the MpiSession, when this process is a rank of a job
};

}  // namespace addrop_examples
