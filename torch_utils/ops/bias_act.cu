// CUDA kernel of bias_act: bias, activation, gain and clamp in one elementwise pass,
// plus the derivative modes used by the autograd Functions in bias_act.py.
// Every element is computed in float32 whatever the storage type.

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include "bias_act.h"

//----------------------------------------------------------------------------
// Constants of SELU (Klambauer et al. 2017, eq. 2), as in torch.nn.functional.selu.

static __device__ const float kSeluLambda = 1.0507009873554804934193349852946f;
static __device__ const float kSeluAlpha  = 1.6732632423543772848170429916717f;

//----------------------------------------------------------------------------
// Logistic sigmoid.

static __device__ __forceinline__ float sigmoid_f(float z)
{
    return 1.0f / (1.0f + expf(-z));
}

//----------------------------------------------------------------------------
// Activation value a(z) and its first and second derivatives d1 = a'(z), d2 = a''(z).
// Derivatives at the kinks (z = 0) follow PyTorch's autograd formulas.

static __device__ __forceinline__ void eval_act(int act, float z, float alpha, float& a, float& d1, float& d2)
{
    switch (act)
    {
    case BA_RELU:
        a = z > 0.0f ? z : 0.0f; d1 = z > 0.0f ? 1.0f : 0.0f; d2 = 0.0f;
        break;
    case BA_LRELU:
        a = z > 0.0f ? z : alpha * z; d1 = z > 0.0f ? 1.0f : alpha; d2 = 0.0f;
        break;
    case BA_TANH:
    {
        float t = tanhf(z);
        a = t; d1 = 1.0f - t * t; d2 = -2.0f * t * d1;
        break;
    }
    case BA_SIGMOID:
    {
        float s = sigmoid_f(z);
        a = s; d1 = s * (1.0f - s); d2 = d1 * (1.0f - 2.0f * s);
        break;
    }
    case BA_ELU:
    case BA_SELU:
    {
        float scale = (act == BA_SELU) ? kSeluLambda : 1.0f;
        float neg = (act == BA_SELU) ? kSeluAlpha : alpha;
        if (z > 0.0f) { a = scale * z; d1 = scale; d2 = 0.0f; }
        else { float e = expf(z); a = scale * neg * (e - 1.0f); d1 = scale * neg * e; d2 = d1; }
        break;
    }
    case BA_SOFTPLUS:
        // torch.nn.functional.softplus returns z itself above the threshold 20.
        if (z > 20.0f) { a = z; d1 = 1.0f; d2 = 0.0f; }
        else { float s = sigmoid_f(z); a = log1pf(expf(z)); d1 = s; d2 = s * (1.0f - s); }
        break;
    case BA_SWISH:
    {
        float s = sigmoid_f(z);
        a = z * s; d1 = s * (1.0f + z * (1.0f - s)); d2 = s * (1.0f - s) * (2.0f + z * (1.0f - 2.0f * s));
        break;
    }
    default: // BA_LINEAR
        a = z; d1 = 1.0f; d2 = 0.0f;
        break;
    }
}

//----------------------------------------------------------------------------
// One thread per element, grid-stride loop over the flat (dense) storage.

template <class T>
static __global__ void bias_act_kernel(BiasActParams p)
{
    const T* x = static_cast<const T*>(p.x);
    const T* b = static_cast<const T*>(p.b);
    const T* dy = static_cast<const T*>(p.dy);
    T* out = static_cast<T*>(p.out);
    int64_t stride = (int64_t)blockDim.x * gridDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.numel; i += stride)
    {
        // Pre-activation z = x + b.
        float z = (float)x[i];
        if (b)
            z += (float)b[(i / p.bias_step) % p.bias_len];

        // Activation and gain.
        float a, d1, d2;
        eval_act(p.act, z, p.alpha, a, d1, d2);
        float v = a * p.gain;

        // Forward: clamp (NaN passes through, as in torch.clamp).
        if (p.mode == 0)
        {
            if (p.clamp >= 0.0f)
                v = (v < -p.clamp) ? -p.clamp : ((v > p.clamp) ? p.clamp : v);
            out[i] = (T)v;
            continue;
        }

        // Derivatives: zero where the clamp was active (torch.clamp keeps the gradient at the bounds).
        bool passed = !(p.clamp >= 0.0f) || (v >= -p.clamp && v <= p.clamp);
        float d = (p.mode == 1) ? d1 : d2;
        out[i] = (T)(passed ? (float)dy[i] * p.gain * d : 0.0f);
    }
}

//----------------------------------------------------------------------------
// Host-side launch on the given stream.

template <class T>
void launch_bias_act(const BiasActParams& p, cudaStream_t stream)
{
    const int block = 256;
    int64_t grid = (p.numel + block - 1) / block;
    if (grid > 65536)
        grid = 65536;
    if (grid < 1)
        return;
    bias_act_kernel<T><<<(unsigned int)grid, block, 0, stream>>>(p);
}

//----------------------------------------------------------------------------
// The element types the extension dispatches to.

template void launch_bias_act<float>(const BiasActParams& p, cudaStream_t stream);
template void launch_bias_act<c10::Half>(const BiasActParams& p, cudaStream_t stream);
template void launch_bias_act<c10::BFloat16>(const BiasActParams& p, cudaStream_t stream);

//----------------------------------------------------------------------------
