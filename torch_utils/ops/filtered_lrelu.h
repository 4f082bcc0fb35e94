// Parameters of the filtered_lrelu activation kernel (see filtered_lrelu.py for the op).
//
// The resampling of filtered_lrelu runs on the upfirdn2d kernel; this kernel is the
// elementwise middle stage on the up-sampled image t:
//   mode 0 (forward): y = clamp(lrelu(t, slope) * gain, -clamp, clamp) and a code per
//                     element: 0 = clamped (|y| > clamp before clamping), 1 = t > 0,
//                     2 = t <= 0 (the slope side);
//   mode 1 (masked):  y = t * gain * {0, 1, slope}[code], the derivative of mode 0
//                     applied to t (used by the gradient and its transpose).
// All tensors are dense with the same strides, so elements are visited in storage order.

#pragma once
#include <cstdint>
#include <cuda_runtime.h>

//----------------------------------------------------------------------------
// Kernel arguments.

struct FilteredLReluActParams
{
    const void*  x;         // Input t (float, half or bfloat16).
    void*        y;         // Output, the dtype and strides of x.
    uint8_t*     codes;     // Codes: written in mode 0, read in mode 1.
    int64_t      numel;     // Number of elements.
    int          mode;      // 0 = forward, 1 = masked linear map.
    float        gain;      // Factor after the leaky ReLU.
    float        slope;     // Slope for t <= 0.
    float        clamp;     // Clamp bound; negative = no clamping.
};

//----------------------------------------------------------------------------
// Launches the kernel for element type T (float, c10::Half or c10::BFloat16).

template <class T> void launch_filtered_lrelu_act(const FilteredLReluActParams& p, cudaStream_t stream);

//----------------------------------------------------------------------------
