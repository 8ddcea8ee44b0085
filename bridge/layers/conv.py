"""Conv1d/2d/3d and ConvTranspose1d/2d/3d on channels-last tensors (NLC, NHWC, NDHWC).

Torch semantics that Keras/TF lack are handled here:
* explicit asymmetric padding in every torch padding_mode (see padding.py);
* groups: 2-D depthwise (groups == in_channels) maps to DepthwiseConv2dNative;
  other group counts (and every 3-D one) split channels and concatenate, since
  neither TF on CPU nor tfjs runs grouped Conv2D/Conv3D;
* stride together with dilation (tfjs rejects both > 1 at once) and unequal
  depthwise strides (TF's CPU kernel rejects them): the conv runs with stride 1
  and the result is subsampled, which is exactly torch's output;
* 1-D/2-D transposed convs run TF's VALID conv_transpose (Conv2DBackpropInput)
  at the full size (in-1)*s + k', then crop ``padding`` and append
  ``output_padding`` zeros; the tfjs converter has no Conv3DBackpropInputV2, so
  3-D ones run as zero-stuffing, padding and a Conv3D with the flipped kernel.
  Dilation is already in the kernel (zeros between taps, see transforms.py).
* an empty batch: TF's oneDNN Conv2D/Conv3D/DepthwiseConv2dNative (on by default on x86)
  return their *input's* shape for a batch of 0, so each VALID conv's result is reshaped to
  its own output shape (``_out_shaped``): a no-op for any other batch.
"""

from __future__ import annotations

import tensorflow as tf

from .base import Layer
from .padding import pad_axes, spatial_pad


def _unbatched(run, x):
    """torch's unbatched (C, *spatial) input, channels-last here: run on a batch of one."""
    return tf.squeeze(run(tf.expand_dims(x, 0)), 0)


def _group_split(x, kernel, groups: int, op):
    """op(x, kernel) per channel group (inputs split on the last axis of x and of kernel), concatenated."""
    if groups == 1:
        return op(x, kernel)
    return tf.concat([op(a, k) for a, k in zip(tf.split(x, groups, -1), tf.split(kernel, groups, -1))], -1)


class ConvNd(Layer):
    """A conv over ``len(kernel_size)`` (2 or 3) spatial axes; Conv2d/Conv3d fix the defaults."""

    def __init__(self, *, path, in_channels, out_channels, kernel_size, stride, dilation, groups, padding,
                 padding_mode="zeros", bias=True, batched=True):
        super().__init__(path=path)
        self.rank, self.batched = len(kernel_size), batched
        self.stride, self.dilation, self.groups = tuple(stride), tuple(dilation), groups
        self.padding, self.padding_mode = tuple(map(tuple, padding)), padding_mode
        self.depthwise = self.rank == 2 and groups > 1 and groups == in_channels
        if self.depthwise:  # (kh, kw, in, multiplier)
            self.kernel = self.variable("kernel", [*kernel_size, in_channels, out_channels // in_channels])
        else:  # (*k, in/groups, out)
            self.kernel = self.variable("kernel", [*kernel_size, in_channels // groups, out_channels])
        self.bias = self.variable("bias", [out_channels]) if bias else None

    def call(self, x):
        return _unbatched(self._call_batched, x) if not self.batched else self._call_batched(x)

    def _call_batched(self, x):
        sizes = padded_sizes(x, self.padding)
        x = spatial_pad(x, self.padding, self.padding_mode)
        run_stride = self._run_stride()
        y = self._conv(x, run_stride, sizes)
        if run_stride != self.stride:
            y = y[(slice(None), *[slice(None, None, s) for s in self.stride], slice(None))]
        return y + self.bias if self.bias is not None else y

    def _run_stride(self) -> tuple[int, ...]:
        """The stride the TF op runs with; all ones + subsampling where TF or tfjs lacks the combination.

        Subsampling a stride-1 VALID conv at every s-th position is exactly the strided conv.
        Needed for stride with dilation (tfjs rejects both > 1) and for depthwise convs with
        unequal strides (TF's CPU DepthwiseConv2dNative only runs equal row/column strides).
        """
        ones = (1,) * self.rank
        if self.dilation != ones and self.stride != ones:
            return ones
        if self.depthwise and len(set(self.stride)) > 1:
            return ones
        return self.stride

    def _conv(self, x, stride, sizes):
        if self.depthwise:
            y = tf.nn.depthwise_conv2d(x, self.kernel, [1, *stride, 1], "VALID", dilations=list(self.dilation))
            return _out_shaped(y, sizes, self.kernel.shape[:2], stride, self.dilation,
                               self.kernel.shape[2] * self.kernel.shape[3])
        return _valid_conv(x, self.kernel, stride, self.dilation, self.groups, sizes)


def _valid_conv(x, kernel, stride, dilation, groups: int, sizes):
    """VALID Conv2D/Conv3D of channels-last x (spatial ``sizes``) with a (*k, in/groups, out) kernel, groups split."""
    strides, dil, spatial = [1, *stride, 1], list(dilation), kernel.shape[:-2]
    if len(stride) == 2:
        def op(a, k):
            return _out_shaped(tf.nn.conv2d(a, k, strides, "VALID", dilations=dil), sizes, spatial, stride,
                               dilation, k.shape[-1])
    elif any(d != 1 for d in dil):
        # TF's own CPU Conv3D has no dilation (only oneDNN's, which bridge turns off for tfjs): dilate through
        # SpaceToBatchND / BatchToSpaceND, as tf.nn.convolution does (stride is 1 here, see conv())
        def op(a, k):
            return _out_shaped(tf.nn.convolution(a, k, strides=list(stride), padding="VALID", dilations=dil), sizes,
                               spatial, stride, dilation, k.shape[-1])
    else:
        def op(a, k):
            return _out_shaped(tf.nn.conv3d(a, k, strides, "VALID"), sizes, spatial, stride, dilation, k.shape[-1])
    return _group_split(x, kernel, groups, op)


def padded_sizes(x, pads=None) -> list:
    """The spatial sizes of channels-last x plus (before, after) ``pads``: ints where static, else scalars.

    Read from the unpadded tensor: a Shape of the Pad output would stop grappler folding the Pad into the conv.
    """
    pads = pads or [(0, 0)] * (x.shape.rank - 2)
    return [(x.shape[axis] if x.shape[axis] is not None else tf.shape(x)[axis]) + b + e
            for axis, (b, e) in enumerate(pads, start=1)]


def _out_shaped(y, sizes, kernel_size, stride, dilation, channels: int):
    """y reshaped to the VALID conv's output shape (-1, *spatial, channels) for inputs of spatial ``sizes``.

    TF's oneDNN kernels give a batch of 0 the input's shape; for any other batch this is a no-op.
    """
    dims = [(n - d * (int(k) - 1) - 1) // s + 1 for n, k, s, d in zip(sizes, kernel_size, stride, dilation)]
    shape = [-1, *dims, int(channels)]
    return tf.reshape(y, shape if all(isinstance(n, int) for n in dims) else tf.stack(shape))


def conv(x, weight, bias, stride, padding, dilation, groups: int):
    """F.conv1d/2d/3d with torch's (O, I/g, *k) weight as a tensor; ``padding`` is (before, after) zeros per axis."""
    x, weight = tf.convert_to_tensor(x), tf.convert_to_tensor(weight)
    if len(stride) == 1:  # as 2-D over (N, 1, L, C)
        y = conv(tf.expand_dims(x, 1), tf.expand_dims(weight, 2), bias, (1, stride[0]), ((0, 0), padding[0]),
                 (1, dilation[0]), groups)
        return tf.squeeze(y, 1)
    rank = len(stride)
    kernel = tf.transpose(weight, [*range(2, rank + 2), 1, 0])  # (*k, I/g, O)
    sizes = padded_sizes(x, padding)
    x = spatial_pad(x, padding)
    ones = (1,) * rank
    run = ones if tuple(dilation) != ones and tuple(stride) != ones else tuple(stride)  # tfjs: not both > 1
    y = _valid_conv(x, kernel, run, dilation, groups, sizes)
    if run != tuple(stride):
        y = y[(slice(None), *[slice(None, None, s) for s in stride], slice(None))]
    return y + bias if bias is not None else y


class Conv2d(ConvNd):
    def __init__(self, *, path, in_channels, out_channels, kernel_size, stride=(1, 1), dilation=(1, 1),
                 groups=1, padding=((0, 0), (0, 0)), padding_mode="zeros", bias=True, batched=True):
        super().__init__(path=path, in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size,
                         stride=stride, dilation=dilation, groups=groups, padding=padding,
                         padding_mode=padding_mode, bias=bias, batched=batched)


class Conv3d(ConvNd):
    def __init__(self, *, path, in_channels, out_channels, kernel_size, stride=(1, 1, 1), dilation=(1, 1, 1),
                 groups=1, padding=((0, 0),) * 3, padding_mode="zeros", bias=True, batched=True):
        super().__init__(path=path, in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size,
                         stride=stride, dilation=dilation, groups=groups, padding=padding,
                         padding_mode=padding_mode, bias=bias, batched=batched)


class Conv1d(Conv2d):
    """Runs as a Conv2d over (N, 1, L, C): tfjs's Conv1D is the same op underneath."""

    def __init__(self, *, path, in_channels, out_channels, kernel_size, stride=(1,), dilation=(1,),
                 groups=1, padding=((0, 0),), padding_mode="zeros", bias=True, batched=True):
        s, d = stride[0], dilation[0]
        # the row stride is free on a height-1 input; equal strides keep depthwise on TF's strided kernel
        super().__init__(path=path, in_channels=in_channels, out_channels=out_channels,
                         kernel_size=(1, kernel_size[0]), stride=(s, s), dilation=(1, d),
                         groups=groups, padding=((0, 0), padding[0]), padding_mode=padding_mode, bias=bias,
                         batched=batched)

    def _call_batched(self, x):
        return tf.squeeze(super()._call_batched(tf.expand_dims(x, 1)), 1)


class ConvTransposeNd(Layer):
    """torch ConvTranspose over 2 or 3 spatial axes; ``kernel_size`` is the dilated size d*(k-1)+1.

    Runs TF's VALID conv_transpose at the full size (in-1)*s + k', then crops ``padding`` and
    appends ``output_padding`` zeros. Subclasses with ``as_conv`` run a plain conv instead.
    """

    as_conv = False

    def __init__(self, *, path, in_channels, out_channels, kernel_size, stride, padding, output_padding,
                 groups=1, bias=True, batched=True):
        super().__init__(path=path)
        self.rank, self.batched = len(kernel_size), batched
        self.kernel_size, self.stride, self.groups = tuple(kernel_size), tuple(stride), groups
        self.padding, self.output_padding = tuple(padding), tuple(output_padding)
        self.out_per_group = out_channels // groups
        if self.as_conv:  # (*k' flipped, in/groups, out)
            self.kernel = self.variable("kernel", [*kernel_size, in_channels // groups, out_channels])
        else:  # conv_transpose filter (*k', out/groups, in)
            self.kernel = self.variable("kernel", [*kernel_size, out_channels // groups, in_channels])
        self.bias = self.variable("bias", [out_channels]) if bias else None

    def call(self, x, output_size=None):
        """``output_size`` (torch's forward argument) is already in ``output_padding``, set by the mapping."""
        return _unbatched(self._call_batched, x) if not self.batched else self._call_batched(x)

    def _call_batched(self, x):
        x = tf.convert_to_tensor(x)
        y = self._as_conv(x) if self.as_conv else self._transposed(x)
        return y + self.bias if self.bias is not None else y

    def _transposed(self, x):
        return _conv_transpose(x, self.kernel, self.stride, self.padding, self.output_padding, self.groups)

    def _as_conv(self, x):
        """Put s-1 zeros after every input position, pad k'-1-p before and k'-1-p+output_padding after
        (negative crops), then a stride-1 VALID conv with the flipped kernel: torch's transposed conv."""
        for i, s in enumerate(self.stride):
            x = _stuff_zeros(x, 1 + i, s)
        pads = {1 + i: (k - 1 - p, k - 1 - p + o - (s - 1))
                for i, (k, s, p, o) in enumerate(zip(self.kernel_size, self.stride, self.padding, self.output_padding))}
        sizes = padded_sizes(x, [pads[1 + i] for i in range(self.rank)])
        x = pad_axes(x, pads)
        op, ones = (tf.nn.conv2d if self.rank == 2 else tf.nn.conv3d), (1,) * self.rank
        return _group_split(x, self.kernel, self.groups, lambda a, k: _out_shaped(
            op(a, k, [1] * (self.rank + 2), "VALID"), sizes, self.kernel_size, ones, ones, k.shape[-1]))


def _conv_transpose(x, kernel, stride, padding, output_padding, groups: int):
    """VALID conv_transpose with a (*k, out/groups, in) filter at the full size (in-1)*s + k, then
    torch's crop of ``padding`` on each side and ``output_padding`` zeros at the end."""
    kernel_size, out_per_group = kernel.shape[:-2], kernel.shape[-2]
    full = [(n - 1) * s + k for n, s, k in zip(x.shape[1:-1], stride, kernel_size)]
    op = tf.nn.conv2d_transpose if len(stride) == 2 else tf.nn.conv3d_transpose
    strides = [1, *stride, 1]

    def run(a, k):
        shape = tf.concat([tf.shape(a)[:1], tf.constant([*full, out_per_group], tf.int32)], 0)
        return op(a, k, shape, strides, "VALID")

    y = _group_split(x, kernel, groups, run)
    return pad_axes(y, {1 + i: (-p, o - p) for i, (p, o) in enumerate(zip(padding, output_padding))})


def conv_transpose(x, weight, bias, stride, padding, output_padding, groups: int):
    """F.conv_transpose1d/2d (dilation 1) with torch's (I, O/g, *k) weight as a tensor."""
    x, weight = tf.convert_to_tensor(x), tf.convert_to_tensor(weight)
    if len(stride) == 1:  # as 2-D over (N, 1, L, C)
        y = conv_transpose(tf.expand_dims(x, 1), tf.expand_dims(weight, 2), bias, (1, stride[0]), (0, padding[0]),
                           (0, output_padding[0]), groups)
        return tf.squeeze(y, 1)
    kernel = tf.transpose(weight, [*range(2, len(stride) + 2), 1, 0])  # (*k, O/g, I)
    y = _conv_transpose(x, kernel, tuple(stride), tuple(padding), tuple(output_padding), groups)
    return y + bias if bias is not None else y


def _stuff_zeros(x, axis: int, s: int):
    """(.., n, ..) -> (.., n*s, ..): each item along ``axis`` followed by s-1 zeros (static sizes past the batch)."""
    if s == 1:
        return x
    y = tf.expand_dims(x, axis + 1)
    y = tf.pad(y, [[0, 0]] * (axis + 1) + [[0, s - 1]] + [[0, 0]] * (x.shape.rank - axis - 1))
    tail = list(x.shape[1:])
    tail[axis - 1] *= s
    return tf.reshape(y, [-1, *tail])


class ConvTranspose2d(ConvTransposeNd):
    """Conv2DBackpropInput, which TF and every tfjs backend run."""


class ConvTranspose3d(ConvTransposeNd):
    """The tfjs converter has no Conv3DBackpropInputV2, so this runs as zero-stuffing + Conv3D."""

    as_conv = True


class ConvTranspose1d(ConvTransposeNd):
    """Runs as a ConvTranspose2d over (N, 1, L, C)."""

    def __init__(self, *, path, in_channels, out_channels, kernel_size, stride, padding, output_padding,
                 groups=1, bias=True, batched=True):
        super().__init__(path=path, in_channels=in_channels, out_channels=out_channels,
                         kernel_size=(1, kernel_size[0]), stride=(1, stride[0]), padding=(0, padding[0]),
                         output_padding=(0, output_padding[0]), groups=groups, bias=bias, batched=batched)

    def _call_batched(self, x):
        return tf.squeeze(super()._call_batched(tf.expand_dims(x, 1)), 1)
