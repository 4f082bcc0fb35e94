// Parameters of the bias_act CUDA kernel (see bias_act.py for the op's definition).
//
// One kernel serves three modes, chosen by `mode`:
//   0: y  = clamp(act(x + b) * gain)                        (forward)
//   1: dx = dy * gain * act'(x + b) * [not clamped]          (first derivative)
//   2: d  = dy * gain * act''(x + b) * [not clamped]         (used for the second derivative)
// x is always the forward input, so every derivative is recomputed from it.

#pragma once
#include <cstdint>
#include <cuda_runtime.h>

//----------------------------------------------------------------------------
// Activation numbers; they equal activation_funcs[name].cuda_idx in bias_act.py.

enum BiasActFunc : int
{
    BA_LINEAR   = 1,
    BA_RELU     = 2,
    BA_LRELU    = 3,
    BA_TANH     = 4,
    BA_SIGMOID  = 5,
    BA_ELU      = 6,
    BA_SELU     = 7,
    BA_SOFTPLUS = 8,
    BA_SWISH    = 9,
};

//----------------------------------------------------------------------------
// Kernel arguments. x, dy and out share one dense layout; b is indexed by the
// coordinate along the bias dimension: (i / bias_step) % bias_len for flat index i.

struct BiasActParams
{
    const void* x;          // Forward input, numel elements.
    const void* b;          // Bias [bias_len], or nullptr.
    const void* dy;         // Incoming gradient (modes 1 and 2), or nullptr.
    void*       out;        // Result, numel elements.
    int64_t     numel;      // Number of elements of x.
    int64_t     bias_step;  // Memory stride of the bias dimension in x.
    int64_t     bias_len;   // Size of the bias dimension.
    int         act;        // BiasActFunc.
    int         mode;       // 0 forward, 1 first derivative, 2 second derivative factor.
    float       alpha;      // Shape parameter (lrelu slope, elu alpha).
    float       gain;       // Gain applied after the activation.
    float       clamp;      // Clamp limit; negative = no clamping.
};

//----------------------------------------------------------------------------
// Launches the kernel for element type T (float, c10::Half or c10::BFloat16).

template <class T> void launch_bias_act(const BiasActParams& p, cudaStream_t stream);

//----------------------------------------------------------------------------
