// The smoothed leaky relu's element loops (smoothed_leaky_relu.h) as
// TensorFlow CPU operations, sharded over TensorFlow's threads.
//
// keras_gsmooth/native_tensorflow.py compiles this file at first use and
// loads it with tf.load_op_library.

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <mutex>

#include "smoothed_leaky_relu.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

namespace keras_gsmooth {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

// Work units per element for TensorFlow's sharding: a few dozen vector operations.
constexpr int64_t kCostPerElement = 60;

// Runs work(begin, end) over [0, units) on TensorFlow's CPU threads, with
// subnormal floats flushed in each.
void ShardedFor(OpKernelContext* context, int64_t units, int64_t cost_per_unit,
                const std::function<void(int64_t, int64_t)>& work) {
  const auto* threads = context->device()->tensorflow_cpu_worker_threads();
  ::tensorflow::Shard(threads->num_threads, threads->workers, units, cost_per_unit,
                      [&work](int64_t begin, int64_t end) {
                        ScopedFlushSubnormals flush;
                        work(begin, end);
                      });
}

// ShardedFor of work(begin, end) -> N partial sums of non-negative terms;
// the totals, each written to its scalar output (never negative: rounding
// can leave a tiny negative variance where the variance is about 0).
template <size_t N>
void ShardedSums(OpKernelContext* context, int64_t units, int64_t cost_per_unit,
                 const std::function<std::array<double, N>(int64_t, int64_t)>& work,
                 const std::array<Tensor*, N>& outputs) {
  std::mutex mutex;
  std::array<double, N> totals{};
  ShardedFor(context, units, cost_per_unit, [&](int64_t begin, int64_t end) {
    const std::array<double, N> parts = work(begin, end);
    std::lock_guard<std::mutex> lock(mutex);
    for (size_t i = 0; i < N; ++i) totals[i] += parts[i];
  });
  for (size_t i = 0; i < N; ++i) outputs[i]->template scalar<float>()() = std::max(static_cast<float>(totals[i]), 0.0f);
}

// OK where a gradient kernel's input `name` has the shape it expects.
::tensorflow::Status CheckShape(const char* name, const Tensor& input, const TensorShape& shape) {
  if (input.shape() == shape) return absl::OkStatus();
  return ::tensorflow::errors::InvalidArgument(name, " shape ", input.shape().DebugString(),
                                               " differs from the expected shape ", shape.DebugString());
}

class SmoothedLeakyReluOp : public OpKernel {
 public:
  explicit SmoothedLeakyReluOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("alpha", &alpha_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& x = context->input(0);
    const float sigma = context->input(1).scalar<float>()();
    Tensor* mean = nullptr;
    Tensor* summed = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, x.shape(), &mean));
    OP_REQUIRES_OK(context, context->allocate_output(1, TensorShape({}), &summed));
    const float* x_data = x.flat<float>().data();
    float* mean_data = mean->flat<float>().data();
    const Constants constants = ConstantsOf(sigma, alpha_, 0.0f);
    ShardedSums<1>(
        context, x.NumElements(), kCostPerElement,
        [&](int64_t begin, int64_t end) {
          return std::array<double, 1>{ForwardRange(x_data, mean_data, begin, end, constants)};
        },
        {summed});
  }

 private:
  float alpha_;
};

class SmoothedLeakyReluGradOp : public OpKernel {
 public:
  explicit SmoothedLeakyReluGradOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("alpha", &alpha_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& x = context->input(0);
    const float sigma = context->input(1).scalar<float>()();
    const Tensor& upstream = context->input(2);
    const float upstream_sum = context->input(3).scalar<float>()();
    OP_REQUIRES_OK(context, CheckShape("upstream gradient", upstream, x.shape()));
    Tensor* gradient = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, x.shape(), &gradient));
    const float* x_data = x.flat<float>().data();
    const float* upstream_data = upstream.flat<float>().data();
    float* gradient_data = gradient->flat<float>().data();
    const Constants constants = ConstantsOf(sigma, alpha_, upstream_sum);
    ShardedFor(context, x.NumElements(), kCostPerElement, [&](int64_t begin, int64_t end) {
      BackwardRange(x_data, upstream_data, gradient_data, begin, end, constants);
    });
  }

 private:
  float alpha_;
};

// The output shape of a fused pooling over `pooling`.
TensorShape PooledShape(const Pooling& pooling) {
  return TensorShape({pooling.batch, pooling.pooled_height(), pooling.pooled_width(), pooling.channels});
}

// Checks the attributes and the input of a fused pooling kernel.
class FusedPoolingOp : public OpKernel {
 public:
  explicit FusedPoolingOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("alpha", &alpha_));
    OP_REQUIRES_OK(context, context->GetAttr("pool_height", &pool_height_));
    OP_REQUIRES_OK(context, context->GetAttr("pool_width", &pool_width_));
    OP_REQUIRES(context, pool_height_ >= 1 && pool_width_ >= 1,
                ::tensorflow::errors::InvalidArgument("pool sizes must be >= 1, got ", pool_height_, "x",
                                                      pool_width_));
  }

 protected:
  // The geometry of input `x`, which must be (batch, height, width, channels).
  ::tensorflow::Status PoolingOfInput(const Tensor& x, Pooling* pooling) const {
    if (x.dims() != 4) {
      return ::tensorflow::errors::InvalidArgument("x must be (batch, height, width, channels), got shape ",
                                                   x.shape().DebugString());
    }
    const TensorShape& shape = x.shape();
    *pooling = {shape.dim_size(0), shape.dim_size(1), shape.dim_size(2), shape.dim_size(3), pool_height_, pool_width_};
    return absl::OkStatus();
  }

  // Work units of the row groups: one per group of each image.
  static int64_t Units(const Pooling& pooling) { return pooling.batch * pooling.groups(); }
  static int64_t CostPerUnit(const Pooling& pooling) {
    return kCostPerElement * pooling.pool_height * pooling.row_size();
  }

  float alpha_;
  int64_t pool_height_;
  int64_t pool_width_;
};

class SmoothedLeakyReluAveragePoolOp : public FusedPoolingOp {
 public:
  using FusedPoolingOp::FusedPoolingOp;

  void Compute(OpKernelContext* context) override {
    const Tensor& x = context->input(0);
    const float sigma = context->input(1).scalar<float>()();
    Pooling pooling;
    OP_REQUIRES_OK(context, PoolingOfInput(x, &pooling));
    Tensor* pooled = nullptr;
    Tensor* summed = nullptr;
    Tensor* squares = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, PooledShape(pooling), &pooled));
    OP_REQUIRES_OK(context, context->allocate_output(1, TensorShape({}), &summed));
    OP_REQUIRES_OK(context, context->allocate_output(2, TensorShape({}), &squares));
    const float* x_data = x.flat<float>().data();
    float* pooled_data = pooled->flat<float>().data();
    const Constants constants = ConstantsOf(sigma, alpha_, 0.0f);
    auto work = [&](int64_t begin, int64_t end) {
      return PooledForwardUnits(x_data, pooled_data, pooling, constants, begin, end);
    };
    ShardedSums<2>(context, Units(pooling), CostPerUnit(pooling), work, {summed, squares});
  }
};

class SmoothedLeakyReluAveragePoolGradOp : public FusedPoolingOp {
 public:
  using FusedPoolingOp::FusedPoolingOp;

  void Compute(OpKernelContext* context) override {
    const Tensor& x = context->input(0);
    const float sigma = context->input(1).scalar<float>()();
    const Tensor& pooled = context->input(2);
    const Tensor& upstream = context->input(3);
    const float upstream_sum = context->input(4).scalar<float>()();
    const float upstream_squares = context->input(5).scalar<float>()();
    Pooling pooling;
    OP_REQUIRES_OK(context, PoolingOfInput(x, &pooling));
    OP_REQUIRES_OK(context, CheckShape("upstream gradient", upstream, PooledShape(pooling)));
    OP_REQUIRES_OK(context, CheckShape("pooled_mean", pooled, PooledShape(pooling)));
    Tensor* gradient = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, x.shape(), &gradient));
    const float* x_data = x.flat<float>().data();
    const float* pooled_data = pooled.flat<float>().data();
    const float* upstream_data = upstream.flat<float>().data();
    float* gradient_data = gradient->flat<float>().data();
    const Constants constants = ConstantsOf(sigma, alpha_, upstream_sum);
    auto work = [&](int64_t begin, int64_t end) {
      PooledBackwardUnits(x_data, pooled_data, upstream_data, gradient_data, upstream_squares, pooling, constants,
                          begin, end);
    };
    ShardedFor(context, Units(pooling), CostPerUnit(pooling), work);
  }
};

}  // namespace
}  // namespace keras_gsmooth

// A gradient kernel's output: the shape of its input x.
::tensorflow::Status GradientShape(::tensorflow::shape_inference::InferenceContext* context) {
  context->set_output(0, context->input(0));
  return absl::OkStatus();
}

REGISTER_OP("KerasGsmoothSmoothedLeakyRelu")
    .Input("x: float")
    .Input("sigma: float")
    .Output("mean: float")
    .Output("summed_variance: float")
    .Attr("alpha: float")
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* context) {
      context->set_output(0, context->input(0));
      context->set_output(1, context->Scalar());
      return absl::OkStatus();
    });

REGISTER_OP("KerasGsmoothSmoothedLeakyReluGrad")
    .Input("x: float")
    .Input("sigma: float")
    .Input("upstream_mean: float")
    .Input("upstream_summed_variance: float")
    .Output("gradient: float")
    .Attr("alpha: float")
    .SetShapeFn(GradientShape);

// A fused pooling kernel's outputs: the pooled shape ('valid' windows) and two scalars.
::tensorflow::Status PooledShape(::tensorflow::shape_inference::InferenceContext* context) {
  ::tensorflow::shape_inference::ShapeHandle x;
  TF_RETURN_IF_ERROR(context->WithRank(context->input(0), 4, &x));
  int64_t pool_height, pool_width;
  TF_RETURN_IF_ERROR(context->GetAttr("pool_height", &pool_height));
  TF_RETURN_IF_ERROR(context->GetAttr("pool_width", &pool_width));
  ::tensorflow::shape_inference::DimensionHandle height, width;
  TF_RETURN_IF_ERROR(context->Divide(context->Dim(x, 1), pool_height, false, &height));
  TF_RETURN_IF_ERROR(context->Divide(context->Dim(x, 2), pool_width, false, &width));
  context->set_output(0, context->MakeShape({context->Dim(x, 0), height, width, context->Dim(x, 3)}));
  context->set_output(1, context->Scalar());
  context->set_output(2, context->Scalar());
  return absl::OkStatus();
}

REGISTER_OP("KerasGsmoothSmoothedLeakyReluAveragePool")
    .Input("x: float")
    .Input("sigma: float")
    .Output("pooled_mean: float")
    .Output("summed_variance: float")
    .Output("pooled_sum_of_squares: float")
    .Attr("alpha: float")
    .Attr("pool_height: int >= 1")
    .Attr("pool_width: int >= 1")
    .SetShapeFn(PooledShape);

REGISTER_OP("KerasGsmoothSmoothedLeakyReluAveragePoolGrad")
    .Input("x: float")
    .Input("sigma: float")
    .Input("pooled_mean: float")
    .Input("upstream_pooled_mean: float")
    .Input("upstream_summed_variance: float")
    .Input("upstream_pooled_sum_of_squares: float")
    .Output("gradient: float")
    .Attr("alpha: float")
    .Attr("pool_height: int >= 1")
    .Attr("pool_width: int >= 1")
    .SetShapeFn(GradientShape);

REGISTER_KERNEL_BUILDER(Name("KerasGsmoothSmoothedLeakyRelu").Device(::tensorflow::DEVICE_CPU),
                        keras_gsmooth::SmoothedLeakyReluOp);
REGISTER_KERNEL_BUILDER(Name("KerasGsmoothSmoothedLeakyReluGrad").Device(::tensorflow::DEVICE_CPU),
                        keras_gsmooth::SmoothedLeakyReluGradOp);
REGISTER_KERNEL_BUILDER(Name("KerasGsmoothSmoothedLeakyReluAveragePool").Device(::tensorflow::DEVICE_CPU),
                        keras_gsmooth::SmoothedLeakyReluAveragePoolOp);
REGISTER_KERNEL_BUILDER(Name("KerasGsmoothSmoothedLeakyReluAveragePoolGrad").Device(::tensorflow::DEVICE_CPU),
                        keras_gsmooth::SmoothedLeakyReluAveragePoolGradOp);
