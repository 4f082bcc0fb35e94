// Python binding of the upfirdn2d CUDA kernel: argument checks, output allocation and
// dispatch on the element type. Built by torch_utils/custom_ops.py; used by upfirdn2d.py.

#include <torch/extension.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include "upfirdn2d.h"

//----------------------------------------------------------------------------
// Correlates the up-sampled, padded x with the 2-D float32 filter f and keeps every
// down-th output: see upfirdn2d.h. Padding counts up-sampled pixels; negative crops.

static torch::Tensor upfirdn2d(torch::Tensor x, torch::Tensor f, int64_t up_x, int64_t up_y,
    int64_t down_x, int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1)
{
    // Checks.
    TORCH_CHECK(x.is_cuda(), "upfirdn2d plugin: x must be a CUDA tensor");
    TORCH_CHECK(x.dim() == 4, "upfirdn2d plugin: x must be [N, C, H, W]");
    auto st = x.scalar_type();
    TORCH_CHECK(st == at::kFloat || st == at::kHalf || st == at::kBFloat16,
        "upfirdn2d plugin: x must be float32, float16 or bfloat16");
    TORCH_CHECK(f.device() == x.device() && f.scalar_type() == at::kFloat && f.dim() == 2 && f.is_contiguous(),
        "upfirdn2d plugin: f must be a contiguous float32 [fh, fw] tensor on the device of x");
    TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1, "upfirdn2d plugin: factors must be >= 1");
    TORCH_CHECK(x.size(0) <= INT32_MAX && x.size(1) <= INT32_MAX && x.size(2) <= INT32_MAX / up_y && x.size(3) <= INT32_MAX / up_x,
        "upfirdn2d plugin: x is too large");

    // Output size.
    int64_t fh = f.size(0), fw = f.size(1);
    int64_t out_h = (x.size(2) * up_y + pad_y0 + pad_y1 - fh) / down_y + 1;
    int64_t out_w = (x.size(3) * up_x + pad_x0 + pad_x1 - fw) / down_x + 1;
    TORCH_CHECK(x.size(2) * up_y + pad_y0 + pad_y1 >= fh && x.size(3) * up_x + pad_x0 + pad_x1 >= fw,
        "upfirdn2d plugin: output would be smaller than 1 pixel");

    // Output in the layout of x (channels_last stays channels_last).
    const c10::cuda::OptionalCUDAGuard device_guard(x.device());
    bool channels_last = x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous();
    auto fmt = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    torch::Tensor y = torch::empty({x.size(0), x.size(1), out_h, out_w}, x.options().memory_format(fmt));

    // Kernel arguments.
    UpFirDn2DParams p;
    p.x = x.data_ptr();
    p.f = f.data_ptr<float>();
    p.y = y.data_ptr();
    for (int d = 0; d < 4; d++)
    {
        p.x_stride[d] = x.stride(d);
        p.y_stride[d] = y.stride(d);
    }
    p.numel = y.numel();
    p.n = (int)x.size(0);           p.c = (int)x.size(1);
    p.in_h = (int)x.size(2);        p.in_w = (int)x.size(3);
    p.out_h = (int)out_h;           p.out_w = (int)out_w;
    p.fh = (int)fh;                 p.fw = (int)fw;
    p.up_x = (int)up_x;             p.up_y = (int)up_y;
    p.down_x = (int)down_x;         p.down_y = (int)down_y;
    p.pad_x0 = (int)pad_x0;         p.pad_y0 = (int)pad_y0;
    p.c_fastest = channels_last;

    // Launch.
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    if (st == at::kFloat)
        launch_upfirdn2d<float>(p, stream);
    else if (st == at::kHalf)
        launch_upfirdn2d<c10::Half>(p, stream);
    else
        launch_upfirdn2d<c10::BFloat16>(p, stream);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return y;
}

//----------------------------------------------------------------------------

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("upfirdn2d", &upfirdn2d, "Up-sample, pad, FIR-filter and down-sample 2-D images");
}

//----------------------------------------------------------------------------
