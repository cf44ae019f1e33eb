// The smoothed leaky relu's element loops (smoothed_leaky_relu.h) as plain C
// functions on contiguous float32 buffers, single-threaded, for PyTorch.
//
// keras_gsmooth/native_torch.py compiles this file at first use and calls it
// through ctypes on the tensors' memory. Each function flushes subnormal
// floats while it runs, as the TensorFlow operations do.

#include <algorithm>
#include <cstdint>

#include "smoothed_leaky_relu.h"

namespace {

keras_gsmooth::Pooling PoolingOf(int64_t batch, int64_t height, int64_t width, int64_t channels, int64_t pool_height,
                                 int64_t pool_width) {
  return {batch, height, width, channels, pool_height, pool_width};
}

}  // namespace

extern "C" {

// h_σ of `size` values of x into `mean`; returns Σ Var_σ, clipped at 0.
float keras_gsmooth_smoothed_leaky_relu(const float* x, float* mean, int64_t size, float sigma, float alpha) {
  keras_gsmooth::ScopedFlushSubnormals flush;
  const double total = keras_gsmooth::ForwardRange(x, mean, 0, size, keras_gsmooth::ConstantsOf(sigma, alpha, 0.0f));
  return std::max(static_cast<float>(total), 0.0f);
}

// The gradient in x of Σ upstream·h_σ + upstream_sum·Σ Var_σ, into `gradient`.
void keras_gsmooth_smoothed_leaky_relu_grad(const float* x, const float* upstream, float* gradient, int64_t size,
                                            float sigma, float alpha, float upstream_sum) {
  keras_gsmooth::ScopedFlushSubnormals flush;
  keras_gsmooth::BackwardRange(x, upstream, gradient, 0, size, keras_gsmooth::ConstantsOf(sigma, alpha, upstream_sum));
}

// The average pooling of h_σ over (batch, height, width, channels) into
// `pooled`; writes Σ Var_σ and Σ pooled², each clipped at 0, to `summed`
// and `squares`.
void keras_gsmooth_smoothed_leaky_relu_average_pool(const float* x, float* pooled, float* summed, float* squares,
                                                    int64_t batch,
                                                    int64_t height, int64_t width, int64_t channels,
                                                    int64_t pool_height, int64_t pool_width, float sigma,
                                                    float alpha) {
  keras_gsmooth::ScopedFlushSubnormals flush;
  const keras_gsmooth::Pooling pooling = PoolingOf(batch, height, width, channels, pool_height, pool_width);
  const auto totals = keras_gsmooth::PooledForwardUnits(x, pooled, pooling, keras_gsmooth::ConstantsOf(sigma, alpha, 0.0f),
                                                        0, batch * pooling.groups());
  *summed = std::max(static_cast<float>(totals[0]), 0.0f);
  *squares = std::max(static_cast<float>(totals[1]), 0.0f);
}

// The gradient in x of the fused pooling's three outputs, into `gradient`.
void keras_gsmooth_smoothed_leaky_relu_average_pool_grad(const float* x, const float* pooled, const float* upstream,
                                                         float* gradient, int64_t batch, int64_t height, int64_t width,
                                                         int64_t channels, int64_t pool_height, int64_t pool_width,
                                                         float sigma, float alpha, float upstream_sum,
                                                         float upstream_squares) {
  keras_gsmooth::ScopedFlushSubnormals flush;
  const keras_gsmooth::Pooling pooling = PoolingOf(batch, height, width, channels, pool_height, pool_width);
  keras_gsmooth::PooledBackwardUnits(x, pooled, upstream, gradient, upstream_squares, pooling,
                                     keras_gsmooth::ConstantsOf(sigma, alpha, upstream_sum), 0,
                                     batch * pooling.groups());
}

}  // extern "C"
