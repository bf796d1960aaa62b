// Measures the two bf16 GEMM engines Debian 12 packages (docs/dependencies.md, "oneDNN"):
// libxsmm 1.17's bf16 small-matrix kernel alone vs oneDNN 2.6's whole matmul, one thread.
// Not part of the build (libxsmm is not a dependency); compile and run by hand:
//   apt-get install libxsmm-dev libdnnl-dev
//   g++ -O2 -march=native -std=c++17 -fopenmp -I/usr/include/eigen3 bench/tools/bf16_engine_choice.cpp -lxsmm -ldnnl -lblas -o /tmp/bf16_engine_choice
//   /tmp/bf16_engine_choice
#include <Eigen/Core>
#include <libxsmm.h>
#include <oneapi/dnnl/dnnl.hpp>
#include <chrono>
#include <cstdio>
#include <vector>
#include <omp.h>
int main(){ libxsmm_init();
 const int m=64,n=64,k=768; std::vector<libxsmm_bfloat16> A(m*k,0x3f80),B(k*n,0x3f80); std::vector<float> C(m*n);
 float alpha=1, beta=1; int flags = LIBXSMM_GEMM_FLAG_VNNI_A;
 libxsmm_bsmmfunction f = libxsmm_bsmmdispatch(m,n,k,NULL,NULL,NULL,&alpha,&beta,&flags,NULL);
 if(!f){ std::printf("no kernel\n"); return 1;}
 for(int i=0;i<100;++i) f(A.data(),B.data(),C.data());
 int reps=20000; auto t0=std::chrono::steady_clock::now(); for(int i=0;i<reps;++i) f(A.data(),B.data(),C.data());
 double t=std::chrono::duration<double>(std::chrono::steady_clock::now()-t0).count();
 std::printf("libxsmm %s bsmm %dx%dx%d kernel, 1 thread, cache-resident: %.1f GFLOP/s\n", LIBXSMM_VERSION, m,n,k, 2.0*m*n*k*reps/t*1e-9);
 using namespace dnnl; engine eng(engine::kind::cpu,0); stream s(eng); omp_set_num_threads(1);
 int64_t M=1024,N=768,K=768; std::vector<uint16_t> a(M*K,0x3f80),b(K*N,0x3f80); std::vector<float> c(M*N);
 memory::desc ad({M,K},memory::data_type::bf16,memory::format_tag::ab), bd({K,N},memory::data_type::bf16,memory::format_tag::ba), cd({M,N},memory::data_type::f32,memory::format_tag::ab);
 matmul mm(matmul::primitive_desc(matmul::desc(ad,bd,cd),eng)); memory am(ad,eng,a.data()),bm(bd,eng,b.data()),cm(cd,eng,c.data());
 auto run=[&]{mm.execute(s,{{DNNL_ARG_SRC,am},{DNNL_ARG_WEIGHTS,bm},{DNNL_ARG_DST,cm}});s.wait();}; run();
 reps=20; t0=std::chrono::steady_clock::now(); for(int i=0;i<reps;++i) run(); t=std::chrono::duration<double>(std::chrono::steady_clock::now()-t0).count();
 std::printf("oneDNN matmul bf16 %ldx%ldx%ld whole product, 1 thread: %.1f GFLOP/s\n",M,N,K,2.0*M*N*K*reps/t*1e-9);
 Eigen::setNbThreads(1);
 Eigen::MatrixXf ea = Eigen::MatrixXf::Ones(M, K), eb = Eigen::MatrixXf::Ones(K, N), ec(M, N);
 ec.noalias() = ea * eb;
 t0=std::chrono::steady_clock::now(); for(int i=0;i<reps;++i) ec.noalias() = ea * eb; t=std::chrono::duration<double>(std::chrono::steady_clock::now()-t0).count();
 std::printf("Eigen float32 %ldx%ldx%ld, 1 thread: %.1f GFLOP/s\n",M,N,K,2.0*M*N*K*reps/t*1e-9);
}
