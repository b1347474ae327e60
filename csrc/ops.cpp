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
  // Gaussian-kernel MMD^2 between the feature sets x (B, N, C) and y (B or 1, M, C), k(a, b) =
  // exp(-gamma ||a - b||^2), computed in tiles (never an N x M matrix). Returns (loss (B,),
  // grad_x (B, N, C) per unit of loss or an empty tensor unless grad_x, grad_y (B, M, C) unreduced
  // over the batch or an empty tensor unless grad_y). yy: the cached y-y sums (float64, (B_y,)),
  // from mmd_gaussian_self, for a constant y. gamma: a (1,) or (B,) tensor, one bandwidth for
  // all pairs or one per pair (a tensor, so compiled graphs do not specialise on its value).
  // See csrc/mmd.h.
  m.def(
      "mmd_gaussian(Tensor x, Tensor y, Tensor gamma, bool unbiased, bool grad_x, bool grad_y, "
      "Tensor? yy) -> (Tensor, Tensor, Tensor)");
  // sum_ij exp(-gamma_b ||y_i - y_j||^2) per batch element of y (B, M, C), float64 (B,); gamma
  // (1,) or (B,), or (G,) for a y of batch 1 (one sum per value).
  m.def("mmd_gaussian_self(Tensor y, Tensor gamma) -> Tensor");
}
