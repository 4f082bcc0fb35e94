"""2D convolutions whose weight gradient can be skipped.

`conv2d` and `conv_transpose2d` compute exactly what `torch.nn.functional.conv2d` and
`torch.nn.functional.conv_transpose2d` compute. Their backward pass is written with the
same public operations, so first and second derivatives are exact, and inside
`no_weight_gradients()` the backward pass leaves the weight gradient out. That is what the
R1 penalty wants: it takes the gradient of the discriminator output with respect to the
images with `create_graph=True`, and the weight gradient of that first backward pass is
never used.
"""

import contextlib
import contextvars

import torch
import torch.nn.functional as F

from torch_utils.ops import cpu_kernels

#----------------------------------------------------------------------------
# Context-local switch read by the backward passes below (True = skip weight gradients).

_weight_gradients_disabled = contextvars.ContextVar('conv2d_gradfix_weight_gradients_disabled', default=False)

# Context-local switch: True = CPU convolutions of one-channel inputs use torch's native kernels, not oneDNN.
_native_cpu_kernels = contextvars.ContextVar('conv2d_gradfix_native_cpu_kernels', default=False)

#----------------------------------------------------------------------------
# A context-local switch set to `value` for a with block; restored on exit, also on errors.

@contextlib.contextmanager
def _switched(var, value):
    token = var.set(bool(value))
    try:
        yield
    finally:
        var.reset(token)

#----------------------------------------------------------------------------
# Context manager inside which the backward pass of these convolutions skips the weight.

def no_weight_gradients(disable=True):
    """Skip weight gradients of `conv2d` / `conv_transpose2d` backward passes in this context.

    The state is context-local (a `contextvars.ContextVar`): it is restored on exit, nests,
    and is not seen by other threads. Backward passes run by the autograd engine on the
    calling thread see it; that is always the case for CPU tensors.

    Args:
        disable: True to skip weight gradients, False to compute them (for nesting).

    Returns:
        A context manager; nothing is bound by `with ... as`.
    """
    return _switched(_weight_gradients_disabled, disable)

#----------------------------------------------------------------------------
# Whether weight gradients are currently skipped.

def weight_gradients_disabled():
    """Whether the calling context is inside `no_weight_gradients()`.

    Returns:
        bool.
    """
    return _weight_gradients_disabled.get()

#----------------------------------------------------------------------------
# Context manager inside which CPU convolutions of one-channel inputs run on torch's native kernels.

def native_cpu_kernels(enable=True):
    """Run the CPU convolutions of one-channel inputs started here on torch's native kernels.

    oneDNN computes a convolution whose input has one channel (and no groups) with its general
    kernel, made for many channels: about 1 GMAC/s at the sizes of one-channel images, plus code
    generation for every new combination of shapes (cached per shape). The native kernels (im2col
    and a matrix product) run them 3-10x faster. The augmentation pipeline's resampling of greyscale
    images is such a caller, with shapes that change every batch (a random subset of the images,
    padding set by the random transforms). Several channels (RGB images: oneDNN's depthwise kernel)
    stay on oneDNN, which is faster there. The choice is recorded with each convolution, and its
    backward passes (first and second order) run inside the same setting wherever they run. Values
    agree with oneDNN's to rounding (another summation order), not bit for bit.

    Args:
        enable: True to use the native kernels, False to use the default ones (for nesting).

    Returns:
        A context manager; nothing is bound by `with ... as`.
    """
    return _switched(_native_cpu_kernels, enable)

# Runs fn(*args) with oneDNN switched off when the parameters p say so (the switch is process-wide).
def _with_kernels(p, fn, *args):
    if not p.native:
        return fn(*args)
    args = [_plain_strides(a) for a in args]
    if not torch.backends.mkldnn.enabled:
        return fn(*args)
    torch.backends.mkldnn.enabled = False
    try:
        return fn(*args)
    finally:
        torch.backends.mkldnn.enabled = True

# A one-channel [N, 1, H, W] tensor whose strides look channels-last (stride 1 on the channel axis, as
# crops and pads of such tensors give) as the same memory with NCHW strides: the native kernels take
# the channels-last path for it, 3-15x slower at these sizes.
def _plain_strides(t):
    if isinstance(t, torch.Tensor) and t.ndim == 4 and t.shape[1] == 1 and t.stride(1) != t.shape[2] * t.shape[3]:
        return t.reshape(t.shape[0], t.shape[2], t.shape[3]).unsqueeze(1)
    return t

#----------------------------------------------------------------------------
# 2D convolution (correlation), same arguments and result as F.conv2d.

def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2D convolution equal to `torch.nn.functional.conv2d`, with a skippable weight gradient.

    Args:
        input:    Input tensor of shape [N, C_in, H, W].
        weight:   Weight tensor of shape [C_out, C_in / groups, kh, kw].
        bias:     Optional bias of shape [C_out].
        stride:   Int or [sy, sx].
        padding:  Non-negative int or [py, px] (zeros on both sides).
        dilation: Int or [dy, dx].
        groups:   Number of channel groups.

    Returns:
        Tensor of shape [N, C_out, H_out, W_out].
    """
    params = _conv_params(input, weight, stride, padding, dilation, groups, output_padding=0, transpose=False)
    if not _needs_autograd(input, weight, bias):
        return _conv2d_forward(input, weight, bias, params)
    return _Conv2d.apply(input, weight, bias, params)

#----------------------------------------------------------------------------
# 2D transposed convolution, same arguments and result as F.conv_transpose2d.

def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """2D transposed convolution equal to `torch.nn.functional.conv_transpose2d`.

    Args:
        input:          Input tensor of shape [N, C_in, H, W].
        weight:         Weight tensor of shape [C_in, C_out / groups, kh, kw].
        bias:           Optional bias of shape [C_out].
        stride:         Int or [sy, sx].
        padding:        Non-negative int or [py, px] (removed from both sides of the output).
        output_padding: Int or [oy, ox] added to one side of the output size.
        groups:         Number of channel groups.
        dilation:       Int or [dy, dx].

    Returns:
        Tensor of shape [N, C_out, H_out, W_out].
    """
    params = _conv_params(input, weight, stride, padding, dilation, groups, output_padding=output_padding, transpose=True)
    if not _needs_autograd(input, weight, bias):
        return _conv_transpose2d_forward(input, weight, bias, params)
    return _ConvTranspose2d.apply(input, weight, bias, params)

#----------------------------------------------------------------------------
# Normalised convolution parameters, passed to the autograd functions.

class _ConvParams:
    __slots__ = ('stride', 'padding', 'dilation', 'groups', 'output_padding', 'native')

    def __init__(self, stride, padding, dilation, groups, output_padding, native=False):
        self.stride = stride                    # (sy, sx)
        self.padding = padding                  # (py, px)
        self.dilation = dilation                # (dy, dx)
        self.groups = groups                    # number of channel groups
        self.output_padding = output_padding    # (oy, ox), transposed convolution only
        self.native = native                    # CPU: torch's native kernels instead of oneDNN

#----------------------------------------------------------------------------
# Normalise an int-or-pair argument to a pair of ints.

def _pair(value, name, minimum):
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int and min(value) >= minimum:
        return value # The common case, checked in few steps: this runs for every convolution.
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise ValueError(f'{name} must be an int or a pair of ints, got {value!r}')
    if min(value) < minimum:
        raise ValueError(f'{name} must be >= {minimum}, got {value!r}')
    return tuple(value)

#----------------------------------------------------------------------------
# Check shapes and arguments; return a _ConvParams.

def _conv_params(input, weight, stride, padding, dilation, groups, output_padding, transpose):
    if input.ndim != 4 or weight.ndim != 4:
        raise ValueError(f'expected a 4D input and a 4D weight, got shapes {tuple(input.shape)} and {tuple(weight.shape)}')
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f'groups must be a positive int, got {groups!r}')
    in_channels = weight.shape[0] if transpose else weight.shape[1] * groups
    if input.shape[1] != in_channels or weight.shape[0] % groups != 0:
        raise ValueError(f'input channels {input.shape[1]} do not match weight shape {tuple(weight.shape)} with groups={groups}')
    stride = _pair(stride, 'stride', 1)
    dilation = _pair(dilation, 'dilation', 1)
    output_padding = _pair(output_padding, 'output_padding', 0)
    native = _native_cpu_kernels.get() and input.device.type == 'cpu' and groups == 1 and input.shape[1] == 1
    return _ConvParams(stride, _pair(padding, 'padding', 0), dilation, groups, output_padding, native)

#----------------------------------------------------------------------------
# Whether any argument takes part in autograd (otherwise the plain op is enough).

def _needs_autograd(*tensors):
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)

#----------------------------------------------------------------------------
# Spatial size of the output of F.conv2d for an input of the given size.

def _conv_output_size(size, kernel, p):
    return tuple((size[i] + 2 * p.padding[i] - p.dilation[i] * (kernel[i] - 1) - 1) // p.stride[i] + 1 for i in range(2))

#----------------------------------------------------------------------------
# Autograd function for conv2d; backward uses conv_transpose2d and conv2d_weight.

class _Conv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, weight, bias, p):
        ctx.p = p
        ctx.input_shape = input.shape
        ctx.save_for_backward(input if weight.requires_grad else None, weight)
        return _conv2d_forward(input, weight, bias, p)

    @staticmethod
    def backward(ctx, grad_output):
        with native_cpu_kernels(ctx.p.native): # The forward pass's kernels, for this pass and the next order.
            return _Conv2d._gradients(ctx, grad_output)

    @staticmethod
    def _gradients(ctx, grad_output):
        input, weight = ctx.saved_tensors
        p = ctx.p
        grad_input = grad_weight = grad_bias = None

        # Input gradient: the transposed convolution, sized to the input.
        if ctx.needs_input_grad[0]:
            full = _conv_transpose_output_size(grad_output.shape[2:], weight.shape[2:], p, (0, 0))
            output_padding = tuple(ctx.input_shape[2 + i] - full[i] for i in range(2))
            grad_input = conv_transpose2d(grad_output, weight, None, p.stride, p.padding, output_padding, p.groups, p.dilation)

        # Weight and bias gradients, unless skipped by no_weight_gradients().
        if ctx.needs_input_grad[1] and not weight_gradients_disabled():
            grad_weight = _with_kernels(p, torch.nn.grad.conv2d_weight, input, weight.shape, grad_output, p.stride, p.padding, p.dilation, p.groups)
        if ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum(dim=[0, 2, 3])
        return grad_input, grad_weight, grad_bias, None

#----------------------------------------------------------------------------
# Spatial size of the output of F.conv_transpose2d for an input of the given size.

def _conv_transpose_output_size(size, kernel, p, output_padding):
    return tuple((size[i] - 1) * p.stride[i] - 2 * p.padding[i] + p.dilation[i] * (kernel[i] - 1) + 1 + output_padding[i] for i in range(2))

#----------------------------------------------------------------------------
# The values of F.conv2d, on the kernels p asks for.

def _conv2d_forward(input, weight, bias, p):
    return _with_kernels(p, F.conv2d, input, weight, bias, p.stride, p.padding, p.dilation, p.groups)

#----------------------------------------------------------------------------
# The values of F.conv_transpose2d. A strided depthwise one on the CPU (the up-sampling filters, and
# the input gradient of strided depthwise convolutions) runs by phases in reduced precision, where
# torch's CPU kernel for that case is 10-50x slower than depthwise conv2d in bfloat16, and on the
# native kernels at any stride (stride 1: one conv2d with the flipped taps), whose transposed
# convolution (matrix product, then col2im) is 5-20x slower than their conv2d for one-channel images.

def _conv_transpose2d_forward(input, weight, bias, p):
    depthwise = (p.groups == input.shape[1] == weight.shape[0] and weight.shape[1] == 1)
    by_phases = p.native or (input.dtype not in (torch.float32, torch.float64) and p.stride != (1, 1))
    if input.device.type == 'cpu' and by_phases and depthwise and p.dilation == (1, 1):
        if _depthwise_kernel_applies(input, weight, bias, p):
            return cpu_kernels.depthwise_transpose(input, weight, p.stride, p.padding, p.output_padding)
        return _depthwise_transpose_polyphase(input, weight, bias, p)
    return _with_kernels(p, F.conv_transpose2d, input, weight, bias, p.stride, p.padding, p.output_padding, p.groups, p.dilation)

# The C kernel (cpu_kernels.depthwise_transpose) for channels_last reduced-precision inputs with several
# channels and no bias: each output pixel written once, instead of padded copies and strided writes.
def _depthwise_kernel_applies(x, w, bias, p):
    channels_last = x.ndim == 4 and x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last)
    return (channels_last and bias is None and not p.native and x.dtype == torch.bfloat16 and w.dtype == x.dtype
        and cpu_kernels.usable(x))

#----------------------------------------------------------------------------
# Depthwise transposed convolution by phases. Per axis, with stride s and k taps: output pixel
# u = a * s + r (before removing the padding) is sum_e x[a - e] * w[e * s + r], a convolution of x
# with the taps of phase r (zero-padded to ceil(k / s) taps). Each of the s * s phases is one
# depthwise conv2d at the input resolution, written into every s-th pixel of the output.

def _depthwise_transpose_polyphase(x, w, bias, p):
    n, c, h, w_in = x.shape
    kh, kw = w.shape[2:]
    (sy, sx), (py, px), (oy, ox) = p.stride, p.padding, p.output_padding
    ey, ex = -(-kh // sy), -(-kw // sx)
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    # Every phase at the input resolution, into its pixels of the full result [N, C, H' * sy, W' * sx].
    taps = F.pad(w, [0, ex * sx - kw, 0, ey * sy - kh]).flip([2, 3])  # [C1hw], phases reversed too.
    x = F.pad(x, [ex - 1, ex - 1, ey - 1, ey - 1])
    full_h, full_w = (h + ey - 1) * sy, (w_in + ex - 1) * sx
    if c == 1:
        # One channel (images): all phases as the output channels of one convolution, [N, sy*sx, H', W'],
        # then interleaved (channel ry * sx + rx goes to pixel (ry, rx) of each sy x sx cell).
        phase_taps = taps.reshape(1, ey, sy, ex, sx).flip([2, 4]).permute(2, 4, 0, 1, 3).reshape(sy * sx, 1, ey, ex)
        y = _with_kernels(p, F.conv2d, x, phase_taps)
        if sy == sx:
            y = F.pixel_shuffle(y, sy)
        else:
            y = y.reshape(n, sy, sx, h + ey - 1, w_in + ex - 1).permute(0, 3, 1, 4, 2).reshape(n, 1, full_h, full_w)
    else:
        y = torch.empty([n, c, full_h, full_w], dtype=x.dtype, device=x.device, memory_format=memory_format)
        for ry in range(sy):
            for rx in range(sx):
                phase_taps = taps[:, :, sy - 1 - ry :: sy, sx - 1 - rx :: sx]  # [C1ee], flipped taps of phase (ry, rx).
                y[:, :, ry::sy, rx::sx] = F.conv2d(x, phase_taps, groups=c) # Several channels: never native.

    # Remove the padding (and add output_padding) from the full result.
    out_h, out_w = (h - 1) * sy - 2 * py + kh + oy, (w_in - 1) * sx - 2 * px + kw + ox
    y = F.pad(y, [0, max(px + out_w - full_w, 0), 0, max(py + out_h - full_h, 0)])
    y = y[:, :, py : py + out_h, px : px + out_w]
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    return y.contiguous(memory_format=memory_format)

#----------------------------------------------------------------------------
# Autograd function for conv_transpose2d; backward uses conv2d and conv2d_weight.
# conv_transpose2d(x, w) is the adjoint of conv2d(., w) applied to x padded with zeros
# at the end when output_padding reaches a whole stride (only possible with dilation).

class _ConvTranspose2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, weight, bias, p):
        ctx.p = p
        ctx.input_shape = input.shape
        ctx.save_for_backward(input if weight.requires_grad else None, weight)
        return _conv_transpose2d_forward(input, weight, bias, p)

    @staticmethod
    def backward(ctx, grad_output):
        with native_cpu_kernels(ctx.p.native): # The forward pass's kernels, for this pass and the next order.
            return _ConvTranspose2d._gradients(ctx, grad_output)

    @staticmethod
    def _gradients(ctx, grad_output):
        input, weight = ctx.saved_tensors
        p = ctx.p
        grad_input = grad_weight = grad_bias = None
        in_h, in_w = ctx.input_shape[2:]

        # Input gradient: the direct convolution, cropped to the input.
        if ctx.needs_input_grad[0]:
            grad_input = conv2d(grad_output, weight, None, p.stride, p.padding, p.dilation, p.groups)
            grad_input = grad_input[:, :, :in_h, :in_w]

        # Weight gradient (roles of input and output gradient swapped), unless skipped.
        if ctx.needs_input_grad[1] and not weight_gradients_disabled():
            out_h, out_w = _conv_output_size(grad_output.shape[2:], weight.shape[2:], p)
            if (out_h, out_w) != (in_h, in_w):
                input = F.pad(input, [0, out_w - in_w, 0, out_h - in_h])
            grad_weight = _with_kernels(p, torch.nn.grad.conv2d_weight, grad_output, weight.shape, input, p.stride, p.padding, p.dilation, p.groups)
        if ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum(dim=[0, 2, 3])
        return grad_input, grad_weight, grad_bias, None

#----------------------------------------------------------------------------
