# Timings of the custom ops (torch_utils.ops): milliseconds per call, forward only and
# forward + backward, as a Markdown table. Median and minimum over --repeat calls after
# two warm-up calls. Indented rows are alternatives to the op above them; on CUDA they
# include the reference path (impl='ref') of the ops that have a CUDA plugin.
#
#   python benchmarks/ops.py [--device cpu|cuda] [--repeat 10] [--threads N] [--only NAME]

import os
import platform
import statistics
import sys
import time

import click
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from torch_utils.ops import bias_act  # noqa: E402
from torch_utils.ops import conv2d_gradfix  # noqa: E402
from torch_utils.ops import conv2d_resample  # noqa: E402
from torch_utils.ops import fma  # noqa: E402
from torch_utils.ops import grid_sample_gradfix  # noqa: E402
from torch_utils.ops import upfirdn2d  # noqa: E402

#----------------------------------------------------------------------------
# Median and minimum milliseconds of fn(*inputs), optionally followed by a backward pass.

def time_ms(fn, inputs, repeat, backward):
    inputs = [t.detach().requires_grad_(backward and t.is_floating_point()) for t in inputs]
    grad_inputs = [t for t in inputs if t.requires_grad]
    grad_output = torch.randn_like(fn(*inputs)) if backward else None

    def call():
        y = fn(*inputs)
        if backward:
            torch.autograd.grad(y, grad_inputs, grad_output)
        if y.is_cuda:
            torch.cuda.synchronize()

    for _ in range(2):                                      # Warm-up.
        call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times)

#----------------------------------------------------------------------------
# Naive up-sampling for comparison: zero insertion by reshape + pad, then a depthwise
# convolution with the 2-D filter at full resolution.

def naive_upsample2d(x, f):
    n, c, h, w = x.shape
    z = F.pad(x.reshape(n, c, h, 1, w, 1), [0, 1, 0, 0, 0, 1]).reshape(n, c, h * 2, w * 2)
    z = F.pad(z, [2, 1, 2, 1])
    weight = (f.flip([0, 1]) * 4).expand(c, 1, *f.shape)
    return F.conv2d(z, weight, groups=c)

#----------------------------------------------------------------------------
# Up-sampling as one depthwise transposed convolution (stride 2): only the non-zero taps
# of the zero-stuffed image are multiplied. Equal to upsample2d for a symmetric 4-tap f.

def transposed_upsample2d(x, f):
    c = x.shape[1]
    weight = (f * 4).expand(c, 1, *f.shape)
    return F.conv_transpose2d(x, weight, stride=2, groups=c)[:, :, 1:-1, 1:-1]

#----------------------------------------------------------------------------
# Naive down-sampling for comparison: filter at full resolution, then keep every 2nd pixel.

def naive_downsample2d(x, f):
    c = x.shape[1]
    weight = f.flip([0, 1]).expand(c, 1, *f.shape)
    return F.conv2d(F.pad(x, [1, 1, 1, 1]), weight, groups=c)[:, :, ::2, ::2]

#----------------------------------------------------------------------------
# The alternatives compute the same values as the ops they are compared with.

def check_alternatives(device):
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device=device)
    x = torch.randn(2, 3, 8, 8, device=device)
    for alt, op in [(naive_upsample2d, upfirdn2d.upsample2d), (transposed_upsample2d, upfirdn2d.upsample2d),
                    (naive_downsample2d, upfirdn2d.downsample2d)]:
        torch.testing.assert_close(alt(x, f), op(x, f), msg=f'{alt.__name__} differs from {op.__name__}')

#----------------------------------------------------------------------------
# Which path the ops take by default on the device (builds the CUDA plugins if needed).

def describe_path(device):
    if device.type != 'cuda':
        return 'reference PyTorch path (CPU)'
    probe = torch.zeros(1, device=device)
    paths = [f'{m.__name__.split(".")[-1]}: {"CUDA plugin" if m._cuda_available(probe) else "reference (plugin failed)"}'
        for m in (bias_act, upfirdn2d)]
    return ', '.join(paths)

#----------------------------------------------------------------------------
# Affine sampling grid close to the identity, as ADA's geometric augmentations make.

def make_grid(batch, size, device):
    gen = torch.Generator().manual_seed(0)
    theta = torch.eye(2, 3).expand(batch, 2, 3) + 0.1 * torch.randn(batch, 2, 3, generator=gen)
    return F.affine_grid(theta, [batch, 1, size, size], align_corners=False).to(device)

#----------------------------------------------------------------------------
# The measured cases: (name, shape description, function, input tensors).

def make_cases(device):
    gen = torch.Generator().manual_seed(0)
    rand = lambda *shape: torch.randn(*shape, generator=gen).to(device)
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device=device)
    w3 = rand(64, 64, 3, 3)
    on_cuda = device.type == 'cuda'  # On the CPU impl='ref' is what the default runs anyway.
    xb = [rand(8, 512, 32, 32), rand(512)]
    cases = [
        ('bias_act lrelu', '8x512x32x32', lambda x, b: bias_act.bias_act(x, b, act='lrelu'), xb),
        *([("  impl='ref'", '8x512x32x32', lambda x, b: bias_act.bias_act(x, b, act='lrelu', impl='ref'), xb),
           ('bias_act lrelu fp16', '8x512x32x32', lambda x, b: bias_act.bias_act(x, b, act='lrelu', clamp=256), [t.half() for t in xb]),
           ("  impl='ref'", '8x512x32x32', lambda x, b: bias_act.bias_act(x, b, act='lrelu', clamp=256, impl='ref'), [t.half() for t in xb])]
          if on_cuda else []),
        ('fma', '4x512x32x32', fma.fma, [rand(4, 512, 32, 32), rand(4, 512, 1, 1), rand(4, 1, 32, 32)]),
    ]
    for size, channels in [(64, 64), (256, 32)]:
        x = rand(4, channels, size, size)
        shape = f'4x{channels}x{size}x{size}'
        cases += [
            ('upsample2d [1,3,3,1]', shape, lambda x: upfirdn2d.upsample2d(x, f), [x]),
            *([("  impl='ref'", shape, lambda x: upfirdn2d.upsample2d(x, f, impl='ref'), [x])] if on_cuda else []),
            ('  naive zero-stuff + conv', shape, lambda x: naive_upsample2d(x, f), [x]),
            ('  depthwise conv_transpose2d', shape, lambda x: transposed_upsample2d(x, f), [x]),
            ('  channels_last input', shape, lambda x: upfirdn2d.upsample2d(x, f), [x.to(memory_format=torch.channels_last)]),
            ('downsample2d [1,3,3,1]', shape, lambda x: upfirdn2d.downsample2d(x, f), [x]),
            *([("  impl='ref'", shape, lambda x: upfirdn2d.downsample2d(x, f, impl='ref'), [x])] if on_cuda else []),
            ('  naive conv + subsample', shape, lambda x: naive_downsample2d(x, f), [x]),
        ]
    x = rand(4, 64, 64, 64)
    x_small = rand(4, 64, 32, 32)
    resample = conv2d_resample.conv2d_resample
    resample_ref = conv2d_resample._conv2d_resample_ref
    cases += [
        ('conv2d_gradfix.conv2d 3x3', '4x64x64x64', lambda x, w: conv2d_gradfix.conv2d(x, w, padding=1), [x, w3]),
        ('  F.conv2d 3x3', '4x64x64x64', lambda x, w: F.conv2d(x, w, padding=1), [x, w3]),
        ('conv2d_resample up=2 3x3', '4x64x32x32', lambda x, w: resample(x, w, f, up=2, padding=1), [x_small, w3]),
        ('  general path', '4x64x32x32', lambda x, w: resample_ref(x, w, f, up=2, padding=1), [x_small, w3]),
        ('conv2d_resample down=2 3x3', '4x64x64x64', lambda x, w: resample(x, w, f, down=2, padding=1), [x, w3]),
        ('  general path', '4x64x64x64', lambda x, w: resample_ref(x, w, f, down=2, padding=1), [x, w3]),
    ]
    images = [rand(4, 3, 256, 256), make_grid(4, 256, device)]
    cases += [
        ('grid_sample', '4x3x256x256', grid_sample_gradfix.grid_sample, images),
        ('  _grid_sample_ref', '4x3x256x256', grid_sample_gradfix._grid_sample_ref, images),
        ('  F.grid_sample (1st order only)', '4x3x256x256', lambda x, g: F.grid_sample(x, g, align_corners=False), images),
    ]
    return cases

#----------------------------------------------------------------------------
# Median and minimum milliseconds of the R1 input gradient (create_graph=True) through a
# stack of three 3x3 convolutions with leaky ReLUs, with or without weight gradients.

def time_r1_ms(device, repeat, skip_weights):
    gen = torch.Generator().manual_seed(0)
    weights = [torch.randn(64, 64, 3, 3, generator=gen).to(device).requires_grad_(True) for _ in range(3)]
    images = torch.randn(4, 64, 64, 64, generator=gen).to(device).requires_grad_(True)

    def call():
        x = images
        for w in weights:
            x = F.leaky_relu(conv2d_gradfix.conv2d(x, w, padding=1), 0.2)
        with conv2d_gradfix.no_weight_gradients(disable=skip_weights):
            grad, = torch.autograd.grad(x.sum(), [images], create_graph=True)
        return grad

    return time_ms(call, [], repeat, backward=False)

#----------------------------------------------------------------------------
# Command line.

@click.command()
@click.option('--device', type=click.Choice(['cpu', 'cuda']), default='cpu', show_default=True, help='Device to time on.')
@click.option('--repeat', type=click.IntRange(min=1), default=10, show_default=True, help='Timed calls per case (median reported).')
@click.option('--threads', type=click.IntRange(min=1), default=None, help='torch.set_num_threads (default: leave as is).')
@click.option('--only', type=str, default=None, help="Only cases whose name contains this text ('r1': the R1 table).")
def main(device, repeat, threads, only):
    """Print a Markdown table of op timings (ms per call)."""
    if device == 'cuda' and not torch.cuda.is_available():
        raise click.UsageError('--device cuda: no CUDA device is available')
    if threads is not None:
        torch.set_num_threads(threads)
    name = torch.cuda.get_device_name() if device == 'cuda' else (platform.processor() or platform.machine())
    check_alternatives(torch.device(device))
    print(f'torch {torch.__version__}, device {device} ({name}), threads {torch.get_num_threads()}, median of {repeat}')
    print(f'default path of bias_act / upfirdn2d: {describe_path(torch.device(device))}')
    print()
    print('| op | input | forward ms, median (min) | forward+backward ms, median (min) |')
    print('|---|---|---:|---:|')
    for op_name, shape, fn, inputs in make_cases(torch.device(device)):
        if only is not None and only not in op_name:
            continue
        fwd = time_ms(fn, inputs, repeat, backward=False)
        bwd = time_ms(fn, inputs, repeat, backward=True)
        print(f'| {op_name} | {shape} | {fwd[0]:.2f} ({fwd[1]:.2f}) | {bwd[0]:.2f} ({bwd[1]:.2f}) |', flush=True)
    if only is None or 'r1' in only:
        print()
        print('| R1 input gradient, 3 convs 64->64 3x3 on 4x64x64x64 | ms, median (min) |')
        print('|---|---:|')
        for label, skip in [('weight gradients computed', False), ('inside no_weight_gradients()', True)]:
            median, minimum = time_r1_ms(torch.device(device), repeat, skip)
            print(f'| {label} | {median:.2f} ({minimum:.2f}) |', flush=True)

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
