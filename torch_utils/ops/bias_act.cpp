// Python binding of the bias_act CUDA kernel: argument checks, output allocation and
// dispatch on the element type. Built by torch_utils/custom_ops.py; used by bias_act.py.

#include <torch/extension.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include "bias_act.h"

//----------------------------------------------------------------------------
// Whether t is laid out densely without overlaps (any dimension order).

static bool is_dense(const torch::Tensor& t)
{
    return t.is_non_overlapping_and_dense();
}

//----------------------------------------------------------------------------
// out = mode 0: clamp(act(x + b) * gain); mode 1: dy * gain * act'(x + b) * mask;
// mode 2: dy * gain * act''(x + b) * mask. b and dy may be empty tensors (= absent).

static torch::Tensor bias_act(torch::Tensor x, torch::Tensor b, torch::Tensor dy, int64_t mode,
    int64_t act, double alpha, double gain, double clamp, int64_t dim)
{
    // Checks.
    TORCH_CHECK(x.is_cuda(), "bias_act plugin: x must be a CUDA tensor");
    TORCH_CHECK(is_dense(x), "bias_act plugin: x must be dense (contiguous in some dimension order)");
    auto st = x.scalar_type();
    TORCH_CHECK(st == at::kFloat || st == at::kHalf || st == at::kBFloat16,
        "bias_act plugin: x must be float32, float16 or bfloat16");
    TORCH_CHECK(mode >= 0 && mode <= 2, "bias_act plugin: mode must be 0, 1 or 2");
    TORCH_CHECK(act >= BA_LINEAR && act <= BA_SWISH, "bias_act plugin: unknown activation number");
    bool has_b = b.numel() > 0;
    if (has_b)
    {
        TORCH_CHECK(dim >= 0 && dim < x.dim(), "bias_act plugin: dim out of range");
        TORCH_CHECK(b.device() == x.device() && b.scalar_type() == st, "bias_act plugin: b must match x in device and dtype");
        TORCH_CHECK(b.dim() == 1 && b.size(0) == x.size(dim) && b.is_contiguous(), "bias_act plugin: b must be contiguous [x.shape[dim]]");
    }
    if (mode != 0)
    {
        TORCH_CHECK(dy.device() == x.device() && dy.scalar_type() == st, "bias_act plugin: dy must match x in device and dtype");
        TORCH_CHECK(dy.sizes() == x.sizes() && dy.strides() == x.strides(), "bias_act plugin: dy must match x in shape and strides");
    }

    // Output with the layout of x.
    const c10::cuda::OptionalCUDAGuard device_guard(x.device());
    torch::Tensor out = torch::empty_like(x);
    TORCH_CHECK(out.strides() == x.strides(), "bias_act plugin: could not allocate the output in the layout of x");

    // Kernel arguments.
    BiasActParams p;
    p.x         = x.data_ptr();
    p.b         = has_b ? b.data_ptr() : nullptr;
    p.dy        = (mode != 0) ? dy.data_ptr() : nullptr;
    p.out       = out.data_ptr();
    p.numel     = x.numel();
    p.bias_step = has_b ? x.stride(dim) : 1;
    p.bias_len  = has_b ? x.size(dim) : 1;
    p.act       = (int)act;
    p.mode      = (int)mode;
    p.alpha     = (float)alpha;
    p.gain      = (float)gain;
    p.clamp     = (float)clamp;

    // Launch.
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    if (st == at::kFloat)
        launch_bias_act<float>(p, stream);
    else if (st == at::kHalf)
        launch_bias_act<c10::Half>(p, stream);
    else
        launch_bias_act<c10::BFloat16>(p, stream);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return out;
}

//----------------------------------------------------------------------------

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("bias_act", &bias_act, "Fused bias, activation, gain and clamp (and its derivatives)");
}

//----------------------------------------------------------------------------
