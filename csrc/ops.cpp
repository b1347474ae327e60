// Every op's schema, in one place. Backends register implementations in cpu/ and cuda/;
// Python registers fake (meta) functions and autograd in genint_fast/ops/.
#include <torch/library.h>

TORCH_LIBRARY(genint_fast, m) {
  // Latent steering (SPEC section 4). mode is "add" or "set"; clamp bounds the output to
  // [-clamp, clamp] when given.
  m.def(
      "steer(Tensor z, Tensor directions, Tensor sigma, Tensor mu, Tensor idx, Tensor alpha, "
      "str mode, float? clamp) -> Tensor");
  // Backward of steer: returns (grad_z, dots) with dots[b, m] the dot product of the gradient
  // reaching step m with the direction used at that step (float32, float64 for float64 inputs).
  // The Python autograd formula assembles the other gradients from these two.
  m.def(
      "steer_backward(Tensor grad, Tensor z, Tensor directions, Tensor sigma, Tensor mu, "
      "Tensor idx, Tensor alpha, str mode, float? clamp) -> (Tensor, Tensor)");
}
