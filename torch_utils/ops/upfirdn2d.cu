// CUDA kernel of upfirdn2d: zero-insertion up-sampling, padding, FIR filtering and
// down-sampling in one pass, one thread per output pixel. Only the taps that land on
// non-zero (input) samples are visited. Accumulation is in float32.

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include "upfirdn2d.h"

//----------------------------------------------------------------------------
// Filters with at most this many taps are staged in shared memory.

static const int kMaxSharedTaps = 4096;

//----------------------------------------------------------------------------
// Non-negative remainder of a / b for b > 0.

static __device__ __forceinline__ int64_t pos_mod(int64_t a, int64_t b)
{
    int64_t r = a % b;
    return r < 0 ? r + b : r;
}

//----------------------------------------------------------------------------
// First tap t >= 0 for which k0 + t is a multiple of `up` and k0 + t >= 0.

static __device__ __forceinline__ int first_tap(int64_t k0, int up)
{
    int64_t t = pos_mod(-k0, up);
    if (k0 + t < 0)
        t += ((-(k0 + t) + up - 1) / up) * up;
    return (int)t;
}

//----------------------------------------------------------------------------
// Grid-stride loop over the output pixels.

template <class T>
static __global__ void upfirdn2d_kernel(UpFirDn2DParams p, bool shared_filter)
{
    // Stage the filter in shared memory.
    extern __shared__ float s_f[];
    const float* f = p.f;
    if (shared_filter)
    {
        for (int i = threadIdx.x; i < p.fh * p.fw; i += blockDim.x)
            s_f[i] = p.f[i];
        __syncthreads();
        f = s_f;
    }

    const T* x = static_cast<const T*>(p.x);
    T* y = static_cast<T*>(p.y);
    int64_t stride = (int64_t)blockDim.x * gridDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.numel; i += stride)
    {
        // Output coordinates, in the enumeration order that matches the output layout.
        int64_t r = i;
        int c, ox, oy, n;
        if (p.c_fastest) { c = (int)(r % p.c); r /= p.c; ox = (int)(r % p.out_w); r /= p.out_w; oy = (int)(r % p.out_h); r /= p.out_h; }
        else { ox = (int)(r % p.out_w); r /= p.out_w; oy = (int)(r % p.out_h); r /= p.out_h; c = (int)(r % p.c); r /= p.c; }
        n = (int)r;

        // Position of tap 0 in the up-sampled, padded signal, and the taps on real samples.
        int64_t ky0 = (int64_t)oy * p.down_y - p.pad_y0;
        int64_t kx0 = (int64_t)ox * p.down_x - p.pad_x0;
        int ty_begin = first_tap(ky0, p.up_y);
        int tx_begin = first_tap(kx0, p.up_x);
        const T* xc = x + n * p.x_stride[0] + c * p.x_stride[1];

        // Accumulate.
        float acc = 0.0f;
        for (int ty = ty_begin; ty < p.fh; ty += p.up_y)
        {
            int64_t iy = (ky0 + ty) / p.up_y;
            if (iy >= p.in_h)
                break;
            const T* xrow = xc + iy * p.x_stride[2];
            const float* frow = f + ty * p.fw;
            for (int tx = tx_begin; tx < p.fw; tx += p.up_x)
            {
                int64_t ix = (kx0 + tx) / p.up_x;
                if (ix >= p.in_w)
                    break;
                acc += frow[tx] * (float)xrow[ix * p.x_stride[3]];
            }
        }
        y[n * p.y_stride[0] + c * p.y_stride[1] + oy * p.y_stride[2] + ox * p.y_stride[3]] = (T)acc;
    }
}

//----------------------------------------------------------------------------
// Host-side launch on the given stream.

template <class T>
void launch_upfirdn2d(const UpFirDn2DParams& p, cudaStream_t stream)
{
    const int block = 256;
    int64_t grid = (p.numel + block - 1) / block;
    if (grid > 65536)
        grid = 65536;
    if (grid < 1)
        return;
    int taps = p.fh * p.fw;
    bool shared_filter = taps <= kMaxSharedTaps;
    size_t shared_bytes = shared_filter ? taps * sizeof(float) : 0;
    upfirdn2d_kernel<T><<<(unsigned int)grid, block, shared_bytes, stream>>>(p, shared_filter);
}

//----------------------------------------------------------------------------
// The element types the extension dispatches to.

template void launch_upfirdn2d<float>(const UpFirDn2DParams& p, cudaStream_t stream);
template void launch_upfirdn2d<c10::Half>(const UpFirDn2DParams& p, cudaStream_t stream);
template void launch_upfirdn2d<c10::BFloat16>(const UpFirDn2DParams& p, cudaStream_t stream);

//----------------------------------------------------------------------------
