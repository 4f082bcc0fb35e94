// Python binding of the filtered_lrelu activation kernel: argument checks, output
// allocation and dispatch on the element type. Built by torch_utils/custom_ops.py; used
// by filtered_lrelu.py (the resampling runs on the upfirdn2d plugin).

#include <torch/extension.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include "filtered_lrelu.h"

//----------------------------------------------------------------------------
// Runs the kernel in `mode` on x (and codes); returns the output in the layout of x.

static torch::Tensor run(torch::Tensor x, torch::Tensor codes, int mode, double gain, double slope, double clamp)
{
    TORCH_CHECK(x.is_cuda(), "filtered_lrelu plugin: x must be a CUDA tensor");
    TORCH_CHECK(x.is_non_overlapping_and_dense(), "filtered_lrelu plugin: x must be dense");
    auto st = x.scalar_type();
    TORCH_CHECK(st == at::kFloat || st == at::kHalf || st == at::kBFloat16,
        "filtered_lrelu plugin: x must be float32, float16 or bfloat16");
    TORCH_CHECK(codes.device() == x.device() && codes.scalar_type() == at::kByte, "filtered_lrelu plugin: codes must be uint8 on the device of x");
    TORCH_CHECK(codes.sizes() == x.sizes() && codes.strides() == x.strides(), "filtered_lrelu plugin: codes must match x in shape and strides");

    const c10::cuda::OptionalCUDAGuard device_guard(x.device());
    torch::Tensor y = torch::empty_like(x);
    TORCH_CHECK(y.strides() == x.strides(), "filtered_lrelu plugin: could not allocate the output in the layout of x");

    FilteredLReluActParams p;
    p.x     = x.data_ptr();
    p.y     = y.data_ptr();
    p.codes = codes.data_ptr<uint8_t>();
    p.numel = x.numel();
    p.mode  = mode;
    p.gain  = (float)gain;
    p.slope = (float)slope;
    p.clamp = (float)clamp;

    cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    if (st == at::kFloat)
        launch_filtered_lrelu_act<float>(p, stream);
    else if (st == at::kHalf)
        launch_filtered_lrelu_act<c10::Half>(p, stream);
    else
        launch_filtered_lrelu_act<c10::BFloat16>(p, stream);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return y;
}

//----------------------------------------------------------------------------
// Forward: (clamp(lrelu(x) * gain), codes); clamp < 0 = no clamping.

static std::vector<torch::Tensor> act_forward(torch::Tensor x, double gain, double slope, double clamp)
{
    TORCH_CHECK(x.is_cuda(), "filtered_lrelu plugin: x must be a CUDA tensor");
    torch::Tensor codes = torch::empty_like(x, x.options().dtype(at::kByte));
    return {run(x, codes, 0, gain, slope, clamp), codes};
}

//----------------------------------------------------------------------------
// Masked linear map: x * gain * {0, 1, slope}[codes].

static torch::Tensor act_masked(torch::Tensor x, torch::Tensor codes, double gain, double slope)
{
    return run(x, codes, 1, gain, slope, -1.0);
}

//----------------------------------------------------------------------------

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("act_forward", &act_forward, "Leaky ReLU, gain and clamp with the codes of the pieces taken");
    m.def("act_masked", &act_masked, "The derivative of act_forward at the recorded pieces, applied to x");
}

//----------------------------------------------------------------------------
