// Parameters of the upfirdn2d CUDA kernel (see upfirdn2d.py for the op's definition).
//
// Per output pixel (oy, ox) the kernel computes the correlation
//   y[n, c, oy, ox] = sum_{ty, tx} f[ty, tx] * u[n, c, oy * down_y + ty - pad_y0, ox * down_x + tx - pad_x0]
// where u is x up-sampled by zero insertion (u[k * up] = x[k], zero elsewhere and
// outside the image). f arrives already flipped (or not) and scaled by the gain.

#pragma once
#include <cstdint>
#include <cuda_runtime.h>

//----------------------------------------------------------------------------
// Kernel arguments. Strides are in elements, in the order (n, c, h, w).

struct UpFirDn2DParams
{
    const void*  x;             // Input [n, c, in_h, in_w].
    const float* f;             // Filter [fh, fw], contiguous float32.
    void*        y;             // Output [n, c, out_h, out_w].
    int64_t      x_stride[4];   // Strides of x.
    int64_t      y_stride[4];   // Strides of y.
    int64_t      numel;         // Number of output elements.
    int          n, c;          // Batch size and channels.
    int          in_h, in_w;    // Input size.
    int          out_h, out_w;  // Output size.
    int          fh, fw;        // Filter size.
    int          up_x, up_y;    // Up-sampling factors.
    int          down_x, down_y;// Down-sampling factors.
    int          pad_x0, pad_y0;// Leading padding (negative = crop).
    bool         c_fastest;     // Enumerate outputs with the channel fastest (channels_last).
};

//----------------------------------------------------------------------------
// Launches the kernel for element type T (float, c10::Half or c10::BFloat16).

template <class T> void launch_upfirdn2d(const UpFirDn2DParams& p, cudaStream_t stream);

//----------------------------------------------------------------------------
