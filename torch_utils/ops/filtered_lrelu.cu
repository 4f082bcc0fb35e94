// CUDA kernel of the middle stage of filtered_lrelu: leaky ReLU, gain and clamp on the
// up-sampled image, recording per element which linear piece was taken, and the masked
// linear map that the gradients use. Computes in float32.

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include "filtered_lrelu.h"

//----------------------------------------------------------------------------
// Grid-stride loop over the elements in storage order.

template <class T>
static __global__ void filtered_lrelu_act_kernel(FilteredLReluActParams p)
{
    const T* x = static_cast<const T*>(p.x);
    T* y = static_cast<T*>(p.y);
    int64_t stride = (int64_t)blockDim.x * gridDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.numel; i += stride)
    {
        float v = (float)x[i];
        if (p.mode == 0)
        {
            // Forward: the piece taken (as torch.leaky_relu's gradient: t > 0), then the clamp.
            uint8_t code = (v > 0.0f) ? 1 : 2;
            float a = ((v > 0.0f) ? v : v * p.slope) * p.gain;
            if (p.clamp >= 0.0f && (a > p.clamp || a < -p.clamp))
            {
                a = (a > 0.0f) ? p.clamp : -p.clamp;
                code = 0;
            }
            y[i] = (T)a;
            p.codes[i] = code;
        }
        else
        {
            // Masked linear map: the derivative of the forward at the recorded piece.
            uint8_t code = p.codes[i];
            float factor = (code == 1) ? p.gain : (code == 2) ? p.gain * p.slope : 0.0f;
            y[i] = (T)(v * factor);
        }
    }
}

//----------------------------------------------------------------------------
// Host-side launch on the given stream.

template <class T>
void launch_filtered_lrelu_act(const FilteredLReluActParams& p, cudaStream_t stream)
{
    const int block = 256;
    int64_t grid = (p.numel + block - 1) / block;
    if (grid > 65536)
        grid = 65536;
    if (grid < 1)
        return;
    filtered_lrelu_act_kernel<T><<<(unsigned int)grid, block, 0, stream>>>(p);
}

//----------------------------------------------------------------------------
// The element types the extension dispatches to.

template void launch_filtered_lrelu_act<float>(const FilteredLReluActParams& p, cudaStream_t stream);
template void launch_filtered_lrelu_act<c10::Half>(const FilteredLReluActParams& p, cudaStream_t stream);
template void launch_filtered_lrelu_act<c10::BFloat16>(const FilteredLReluActParams& p, cudaStream_t stream);

//----------------------------------------------------------------------------
