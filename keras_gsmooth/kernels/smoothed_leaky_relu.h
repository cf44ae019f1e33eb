// The smoothed leaky relu of keras_gsmooth.activations.ReLU, element loops only:
// the forward pass (h_σ and Σ Var_σ) and its gradient, alone and fused with
// the average pooling that follows it (windows that tile the input, channels
// last), which then never writes or reads h_σ in full. The fused forward pass
// also gives Σ pooled², for a penalty on the pooled output, which its
// gradient takes in the same pass.
//
// Two libraries include it: smoothed_leaky_relu.cc, TensorFlow's operations
// (keras_gsmooth/native_tensorflow.py), and smoothed_leaky_relu_c.cc, plain C
// functions for PyTorch (keras_gsmooth/native_torch.py). Every formula is the
// keras.ops closed form of keras_gsmooth/activations/piecewise.py (ReLU) and
// activations/base.py (the fitted tails), evaluated in one vectorised loop
// per pass; the tests compare the two. With s = σ/√2, z = x/σ, Φ = ½erfc(−z),
// p = σ·e^(−z²)/(2√π):
//   relu_σ = xΦ + p,  Var[relu] = x(1−Φ)·xΦ + (σ²/2)Φ + p(x(1−Φ) − xΦ − p),
// and leaky relu with slope α is αx + (1−α)·relu.

#ifndef KERAS_GSMOOTH_KERNELS_SMOOTHED_LEAKY_RELU_H_
#define KERAS_GSMOOTH_KERNELS_SMOOTHED_LEAKY_RELU_H_

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// One clone per instruction-set level, chosen when the library loads.
#define KERAS_GSMOOTH_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KERAS_GSMOOTH_CLONES
#endif

namespace keras_gsmooth {
namespace {

// erfcx on [0, ∞) as a polynomial in t = 1/(1 + |z|/2), by Horner's rule:
// the coefficients of keras_gsmooth.activations.base._ERFCX_COEFFICIENTS
// (tools/fit_erfcx.py). Written out, so that the element loops have no inner
// loop and vectorise.
inline float Erfcx(float t) {
  return 0.2820947951888851f +
         t * (0.2820937538083044f +
              t * (0.24688457471655845f +
                   t * (0.17531597581202293f +
                        t * (0.09346243445705632f +
                             t * (-0.059211358141391515f +
                                  t * (0.1321770452506322f +
                                       t * (-0.45497398936981776f +
                                            t * (0.49369493279975446f +
                                                 t * (-0.2347335932904198f + t * 0.043195433358153595f)))))))));
}
constexpr float kHalfInverseSqrtPi = 0.28209479177387814f;
// Rows of one partial sum of the variance: short enough for float32.
constexpr int64_t kSumBlock = 4096;

// e^a for a <= 0: 2^k·e^r with |r| <= ln2/2, a degree-6 Taylor polynomial
// (relative error below 2e-7), and exactly 0 below float32's normal range.
inline float ExpNonPositive(float a) {
  const bool underflow = a < -87.0f;
  a = underflow ? -87.0f : a;
  const float k = std::floor(a * 1.44269504088896341f + 0.5f);
  const float r = a - k * 0.693145751953125f - k * 1.428606765330187e-06f;
  const float q =
      1.0f + r * (1.0f + r * (0.5f + r * (0.16666667f + r * (0.041666668f + r * (0.008333334f + r * 0.0013888889f)))));
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return underflow ? 0.0f : q * scale;
}

// Φ, 1 − Φ and p at one element, each accurate in its own tail.
struct Parts {
  float cdf;
  float survival;
  float p;
};

inline Parts PartsAt(float x, float inverse_sigma, float p_scale) {
  const float z = x * inverse_sigma;
  const float gaussian = ExpNonPositive(-z * z);
  const float t = 1.0f / (1.0f + 0.5f * std::fabs(z));
  const float tail = 0.5f * gaussian * t * Erfcx(t);
  const bool negative = z < 0.0f;
  return {negative ? tail : 1.0f - tail, negative ? 1.0f - tail : tail, gaussian * p_scale};
}

// The slope dh_σ/dx: exactly 1 where Φ = 1 and exactly α where Φ = 0.
inline float Slope(const Parts& parts, float alpha) {
  const float beta = 1.0f - alpha;
  return parts.cdf >= 0.5f ? 1.0f - beta * parts.survival : alpha + beta * parts.cdf;
}

struct Constants {
  float alpha;
  float inverse_sigma;
  float p_scale;        // σ/(2√π)
  float half_sigma2;    // σ²/2
  float upstream_sum2;  // 2·(the upstream gradient of Σ Var), backward only
};

Constants ConstantsOf(float sigma, float alpha, float upstream_sum) {
  return {alpha, 1.0f / std::max(sigma, std::numeric_limits<float>::min()), sigma * kHalfInverseSqrtPi,
          0.5f * sigma * sigma, 2.0f * upstream_sum};
}

// h_σ over [begin, end), and Σ Var_σ there (which costs little beside the
// mean: the loop is bound by Φ and p). Relu is the leaky form with α = 0
// exactly (products with 1 and sums with 0), so one loop serves both.
KERAS_GSMOOTH_CLONES
double ForwardRange(const float* __restrict x, float* __restrict mean, int64_t begin, int64_t end, Constants c) {
  const float alpha = c.alpha, beta = 1.0f - alpha;
  const float linear_variance = (alpha * alpha) * c.half_sigma2, cdf_variance = (2.0f * alpha * beta) * c.half_sigma2;
  double total = 0.0;
  for (int64_t block = begin; block < end; block += kSumBlock) {
    const int64_t stop = std::min(end, block + kSumBlock);
    float partial = 0.0f;
#pragma omp simd reduction(+ : partial)
    for (int64_t i = block; i < stop; ++i) {
      const float xi = x[i];
      const Parts parts = PartsAt(xi, c.inverse_sigma, c.p_scale);
      mean[i] = xi * Slope(parts, alpha) + beta * parts.p;
      const float x_cdf = xi * parts.cdf, x_survival = xi * parts.survival;
      const float relu_variance =
          x_survival * x_cdf + c.half_sigma2 * parts.cdf + parts.p * (x_survival - x_cdf - parts.p);
      partial += beta * beta * relu_variance + cdf_variance * parts.cdf + linear_variance;
    }
    total += partial;
  }
  return total;
}

// upstream·slope + 2·upstream_sum·½Var′ over [begin, end).
KERAS_GSMOOTH_CLONES
void BackwardRange(const float* __restrict x, const float* __restrict upstream, float* __restrict gradient,
                   int64_t begin, int64_t end, Constants c) {
  const float alpha = c.alpha, beta = 1.0f - alpha;
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    const float xi = x[i];
    const Parts parts = PartsAt(xi, c.inverse_sigma, c.p_scale);
    const float half_derivative = beta * beta * (xi * parts.cdf + parts.p) * parts.survival + alpha * beta * parts.p;
    gradient[i] = upstream[i] * Slope(parts, alpha) + c.upstream_sum2 * half_derivative;
  }
}

// Flushes subnormal floats to zero while it lives, on x86-64. The tails
// produce them (e^(−z²) near underflow, times σ/(2√π) or t), and each costs
// a microcode assist of about a hundred cycles: 1.3× the time of a whole
// pass on the paper CNN's activation. XLA's CPU code flushes them too.
class ScopedFlushSubnormals {
 public:
#if defined(__x86_64__)
  ScopedFlushSubnormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kFlushToZero | kSubnormalsAreZero); }
  ~ScopedFlushSubnormals() { _mm_setcsr(saved_); }

 private:
  static constexpr unsigned kFlushToZero = 0x8000;
  static constexpr unsigned kSubnormalsAreZero = 0x0040;
  unsigned saved_;
#endif
};

// The geometry of a fused average pooling over (batch, height, width,
// channels): windows of pool_height × pool_width that tile the input
// ('valid' padding, strides equal to the window), trailing rows and columns
// that fill no window left out of the mean, as Keras leaves them. The
// kernels work on groups of pool_height input rows, one pooled row each;
// the last group also holds the trailing rows (all rows, when no window fits).
struct Pooling {
  int64_t batch, height, width, channels, pool_height, pool_width;

  int64_t pooled_height() const { return height / pool_height; }
  int64_t pooled_width() const { return width / pool_width; }
  int64_t groups() const { return std::max<int64_t>(pooled_height(), 1); }
  int64_t row_size() const { return width * channels; }
  int64_t pooled_row_size() const { return pooled_width() * channels; }
  int64_t first_row(int64_t group) const { return group * pool_height; }
  int64_t end_row(int64_t group) const { return group == groups() - 1 ? height : (group + 1) * pool_height; }
  // Whether input row `row` lies in a window.
  bool pooled(int64_t row) const { return row < pooled_height() * pool_height; }
  float scale() const { return 1.0f / static_cast<float>(pool_height * pool_width); }
};

// Adds scale × the window sums of one row of h_σ to a pooled row.
KERAS_GSMOOTH_CLONES
void PoolRow(const float* __restrict row, float* __restrict pooled_row, const Pooling& pooling) {
  const int64_t channels = pooling.channels, pool_width = pooling.pool_width;
  const float scale = pooling.scale();
  for (int64_t column = 0; column < pooling.pooled_width(); ++column) {
    float* __restrict out = pooled_row + column * channels;
    for (int64_t offset = 0; offset < pool_width; ++offset) {
      const float* __restrict in = row + (column * pool_width + offset) * channels;
#pragma omp simd
      for (int64_t k = 0; k < channels; ++k) out[k] += scale * in[k];
    }
  }
}

// Σ v² over one pooled row.
KERAS_GSMOOTH_CLONES
double SumOfSquares(const float* __restrict values, int64_t size) {
  float total = 0.0f;
#pragma omp simd reduction(+ : total)
  for (int64_t k = 0; k < size; ++k) total += values[k] * values[k];
  return total;
}

// The upstream gradient of a pooled row, `upstream + 2·upstream_squares·pooled`
// (the second term the gradient of Σ pooled²), written to `total_row`.
KERAS_GSMOOTH_CLONES
void PooledRowGradient(const float* __restrict upstream_row, const float* __restrict pooled_row,
                       float upstream_squares, float* __restrict total_row, int64_t size) {
  const float twice = 2.0f * upstream_squares;
#pragma omp simd
  for (int64_t k = 0; k < size; ++k) total_row[k] = upstream_row[k] + twice * pooled_row[k];
}

// One row of the pooling's gradient: scale × the pooled row's upstream
// gradient at every position of its windows, 0 outside them.
KERAS_GSMOOTH_CLONES
void SpreadRow(const float* __restrict pooled_row, float* __restrict row, const Pooling& pooling) {
  const int64_t channels = pooling.channels, pool_width = pooling.pool_width;
  const float scale = pooling.scale();
  for (int64_t column = 0; column < pooling.pooled_width(); ++column) {
    const float* __restrict in = pooled_row + column * channels;
    for (int64_t offset = 0; offset < pool_width; ++offset) {
      float* __restrict out = row + (column * pool_width + offset) * channels;
#pragma omp simd
      for (int64_t k = 0; k < channels; ++k) out[k] = scale * in[k];
    }
  }
  std::fill(row + pooling.pooled_width() * pool_width * channels, row + pooling.row_size(), 0.0f);
}

// The forward pass over the row groups [begin, end) (unit = image × group):
// writes their pooled rows, and returns {Σ Var_σ, Σ pooled²} there.
std::array<double, 2> PooledForwardUnits(const float* x, float* pooled, const Pooling& pooling,
                                         const Constants& constants, int64_t begin, int64_t end) {
  std::vector<float> mean_row(pooling.row_size());
  std::array<double, 2> sums{};
  for (int64_t unit = begin; unit < end; ++unit) {
    const int64_t image = unit / pooling.groups(), group = unit % pooling.groups();
    float* pooled_row = pooled + (image * pooling.pooled_height() + group) * pooling.pooled_row_size();
    const bool has_window = group < pooling.pooled_height();
    if (has_window) std::fill(pooled_row, pooled_row + pooling.pooled_row_size(), 0.0f);
    for (int64_t row = pooling.first_row(group); row < pooling.end_row(group); ++row) {
      const float* x_row = x + (image * pooling.height + row) * pooling.row_size();
      sums[0] += ForwardRange(x_row, mean_row.data(), 0, pooling.row_size(), constants);
      if (pooling.pooled(row)) PoolRow(mean_row.data(), pooled_row, pooling);
    }
    if (has_window) sums[1] += SumOfSquares(pooled_row, pooling.pooled_row_size());
  }
  return sums;
}

// The gradient over the row groups [begin, end), from the pooled output, its
// upstream gradient, and the upstream gradient of Σ pooled² (in `constants`,
// that of Σ Var_σ).
void PooledBackwardUnits(const float* x, const float* pooled, const float* upstream, float* gradient,
                         float upstream_squares, const Pooling& pooling, const Constants& constants, int64_t begin,
                         int64_t end) {
  std::vector<float> upstream_row(pooling.row_size());
  std::vector<float> total_row(upstream_squares == 0.0f ? 0 : pooling.pooled_row_size());
  for (int64_t unit = begin; unit < end; ++unit) {
    const int64_t image = unit / pooling.groups(), group = unit % pooling.groups();
    const int64_t pooled_offset = (image * pooling.pooled_height() + group) * pooling.pooled_row_size();
    for (int64_t row = pooling.first_row(group); row < pooling.end_row(group); ++row) {
      // The rows of a window share one upstream row; trailing rows get none.
      if (!pooling.pooled(row)) {
        std::fill(upstream_row.begin(), upstream_row.end(), 0.0f);
      } else if (row == pooling.first_row(group)) {
        const float* pooled_upstream = upstream + pooled_offset;
        if (!total_row.empty()) {
          PooledRowGradient(pooled_upstream, pooled + pooled_offset, upstream_squares, total_row.data(),
                            pooling.pooled_row_size());
          pooled_upstream = total_row.data();
        }
        SpreadRow(pooled_upstream, upstream_row.data(), pooling);
      }
      const int64_t offset = (image * pooling.height + row) * pooling.row_size();
      BackwardRange(x + offset, upstream_row.data(), gradient + offset, 0, pooling.row_size(), constants);
    }
  }
}

}  // namespace
}  // namespace keras_gsmooth

#endif  // KERAS_GSMOOTH_KERNELS_SMOOTHED_LEAKY_RELU_H_
