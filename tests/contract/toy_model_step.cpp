// The model contracts' failure messages (tests/CMakeLists.txt, test_contract_*): this file
// runs AdDrop over tests/support/toy_model.hpp. Built as is it must compile (target
// contract_toy_model_complete); with ADDROP_TOY_WITHOUT_<MEMBER> the toy model lacks that
// member and the build must fail with the contract's message naming it.
#include <addrop/ad_drop.hpp>

#include "support/toy_model.hpp"

int main() {
  addrop::testing::ToyCrossAttention model(10, 4, 1, 2, 2, 1);
  addrop::testing::ToyBatch batch;
  batch.size = 1;
  batch.length = 3;
  batch.tokens = {1, 2, 3};
  batch.mask = {1, 1, 1};
  batch.labels = {0};
  using namespace addrop;
  AdDrop<attribution::IntegratedGradients, selection::TopP, schedule::Always> reg({.layers = {0}});
  return reg.step(model, batch, 0).loss > 0 ? 0 : 1;
}
