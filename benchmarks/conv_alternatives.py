# Two formulations of the networks' 3x3 convolutions that do fewer multiplications or avoid a
# transposed kernel, timed against torch's own convolutions (oneDNN on the CPU). Neither is used by
# the networks: both measured slower here (docs/performance.md, "Leads that were measured").
#
#   winograd  F(2x2, 3x3) Winograd (Lavin & Gray 2016) from torch operations: 4x4 input tiles at
#             stride 2, B^T d B, one batched matrix product per tile position (16 multiplications
#             per 2x2 output instead of 36), A^T m A. Against conv2d(padding=1).
#   phases    a stride-2 transposed 3x3 convolution as one conv2d with 2x2 kernels and 4x the
#             output channels (one per output phase), interleaved by pixel_shuffle. Against
#             conv_transpose2d(stride=2).
#
# Each formulation is first checked against torch's convolution in float64; then forward+backward
# (gradients to input and weight) is timed in --dtype, median over --repeat calls.
#
#   python benchmarks/conv_alternatives.py [--dtype bfloat16|float32] [--threads 1] [--repeat 10]

import statistics
import time

import click
import torch
import torch.nn.functional as F

# F(2x2, 3x3) transforms; the 2D transforms of a row-major 4x4 tile are Kronecker products.
_BT = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
_G = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]
_AT = [[1, 1, 1, 0], [0, 1, -1, -1]]

def winograd_conv3x3(x, w):
    """conv2d(x, w, padding=1) for even H, W by Winograd F(2x2, 3x3)."""
    n, c, h, wd = x.shape
    k = w.shape[0]
    as_x = dict(dtype=x.dtype, device=x.device)
    bt, g, at = (torch.tensor(m, **as_x) for m in (_BT, _G, _AT))
    tiles = F.pad(x, [1, 1, 1, 1]).unfold(2, 4, 2).unfold(3, 4, 2)  # [N, C, H/2, W/2, 4, 4]
    th, tw = tiles.shape[2:4]
    v = tiles.reshape(n, c, th * tw, 16) @ torch.kron(bt, bt).t()  # [N, C, T, 16]
    v = v.permute(3, 0, 2, 1).reshape(16, n * th * tw, c)
    u = (w.reshape(k, c, 9) @ torch.kron(g, g).t()).permute(2, 1, 0)  # [16, C, K]
    m = torch.bmm(v, u).permute(1, 2, 0)  # [N*T, K, 16]
    y = m @ torch.kron(at, at).t()  # [N*T, K, 4]
    return y.reshape(n, th, tw, k, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(n, k, h, wd)

def transposed_by_phases(x, w):
    """conv_transpose2d(x, w, stride=2) for a [C_in, C_out, 3, 3] weight, by output phases."""
    n, c_in, h, wd = x.shape
    c_out = w.shape[1]
    # Output pixel 2i + a gathers w[.., a + 2t] from input i - t (t = 0, 1); pad the kernel to 4x4,
    # split each axis into (t, a), and flip t so that a plain correlation walks it.
    wp = F.pad(w, [0, 1, 0, 1]).reshape(c_in, c_out, 2, 2, 2, 2)  # [I, O, ty, ay, tx, ax]
    wp = wp.permute(3, 5, 1, 0, 2, 4).flip([4, 5]).reshape(4 * c_out, c_in, 2, 2)  # [(ay, ax, O), I, 2, 2]
    y = F.conv2d(F.pad(x, [1, 1, 1, 1]), wp)  # [N, 4 * O, H + 1, W + 1]
    y = y.reshape(n, 2, 2, c_out, h + 1, wd + 1).permute(0, 3, 1, 2, 4, 5).reshape(n, 4 * c_out, h + 1, wd + 1)
    return F.pixel_shuffle(y, 2)[:, :, :2 * h + 1, :2 * wd + 1]

CASES = dict(
    winograd=(winograd_conv3x3, lambda x, w: F.conv2d(x, w, padding=1), 'conv2d 3x3',
              [(8, 32, 32), (8, 256, 16), (8, 256, 32), (8, 128, 64)]),
    phases=(transposed_by_phases, lambda x, w: F.conv_transpose2d(x, w, stride=2), 'conv_transpose2d s2',
            [(8, 32, 16), (8, 256, 8), (8, 256, 16), (8, 128, 32)]),
)

def check(alt, ref):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn([2, 8, 6, 6], generator=gen, dtype=torch.float64)
    w = torch.randn([8, 8, 3, 3], generator=gen, dtype=torch.float64)
    err = (alt(x, w) - ref(x, w)).abs().max().item()
    if err > 1e-10:
        raise click.ClickException(f'{alt.__name__} differs from torch by {err:.3g} in float64.')
    return err

def median_ms(fn, x, w, repeat):
    x, w = x.detach().requires_grad_(True), w.detach().requires_grad_(True)
    def call():
        torch.autograd.grad(fn(x, w).float().sum(), [x, w])
    for _ in range(2):
        call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3

@click.command()
@click.option('--dtype', type=click.Choice(['bfloat16', 'float32']), default='bfloat16', show_default=True)
@click.option('--threads', type=click.IntRange(min=1), default=1, show_default=True)
@click.option('--repeat', type=click.IntRange(min=1), default=10, show_default=True)
def main(dtype, threads, repeat):
    """Time Winograd and phase-decomposed convolutions against torch's (forward + backward)."""
    torch.set_num_threads(threads)
    dtype = getattr(torch, dtype)
    print(f'torch {torch.__version__}, {dtype}, {threads} thread(s), median of {repeat}, milliseconds forward+backward')
    print('| formulation | N x C x H | torch | alternative | ratio |\n|---|---|---:|---:|---:|')
    for name, (alt, ref, ref_name, shapes) in CASES.items():
        err = check(alt, ref)
        for n, c, h in shapes:
            x, w = torch.randn([n, c, h, h], dtype=dtype), torch.randn([c, c, 3, 3], dtype=dtype)
            t_ref, t_alt = median_ms(ref, x, w, repeat), median_ms(alt, x, w, repeat)
            print(f'| {name} (float64 error {err:.1e}) against {ref_name} | {n}x{c}x{h}x{h} | {t_ref:.2f} | {t_alt:.2f} | {t_alt / t_ref:.2f}x |')

if __name__ == '__main__':
    main() # pylint: disable=no-value-for-parameter
