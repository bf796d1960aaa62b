// addrop::mpi in a consumer: the data-parallel communicator compiles and links from the
// installed package (built, not run, by the consumer test: starting MPI is mpirun's job).
#include <addrop/dist/mpi.hpp>
#include <addrop/train/distributed.hpp>

#include <cstdio>
#include <memory>

int main(int argc, char** argv) {
  std::unique_ptr<addrop::dist::MpiSession> session;
  addrop::dist::AnyCommunicator comm;
  if (addrop::dist::launched_by_mpi()) {
    session = std::make_unique<addrop::dist::MpiSession>(argc, argv);
    comm = addrop::dist::AnyCommunicator(addrop::dist::Mpi());
  }
  double x[2] = {1.0, 2.0};
  comm.host_all_reduce_sum(x);
  std::printf("rank %d of %d: %g %g\n", comm.rank(), comm.size(), x[0], x[1]);
  return x[0] == comm.size() ? 0 : 1;
}
