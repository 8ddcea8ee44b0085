"""Conv1d and Conv2d on channels-last tensors (NLC, NHWC).

Torch semantics that Keras/TF lack are handled here:
* explicit asymmetric padding in every torch padding_mode (see padding.py);
* groups: depthwise (groups == in_channels) maps to DepthwiseConv2dNative;
  other group counts split channels and concatenate, since neither TF on CPU
  nor tfjs runs grouped Conv2D;
* stride together with dilation (tfjs rejects both > 1 at once) and unequal
  depthwise strides (TF's CPU kernel rejects them): the conv runs with stride 1
  and the result is subsampled, which is exactly torch's output.
"""

from __future__ import annotations

import tensorflow as tf

from .base import Layer
from .padding import spatial_pad


class Conv2d(Layer):
    def __init__(self, *, path, in_channels, out_channels, kernel_size, stride=(1, 1), dilation=(1, 1),
                 groups=1, padding=((0, 0), (0, 0)), padding_mode="zeros", bias=True):
        super().__init__(path=path)
        self.stride, self.dilation, self.groups = tuple(stride), tuple(dilation), groups
        self.padding, self.padding_mode = tuple(map(tuple, padding)), padding_mode
        self.depthwise = groups > 1 and groups == in_channels
        kh, kw = kernel_size
        if self.depthwise:  # (kh, kw, in, multiplier)
            self.kernel = self.variable("kernel", [kh, kw, in_channels, out_channels // in_channels])
        else:  # (kh, kw, in/groups, out)
            self.kernel = self.variable("kernel", [kh, kw, in_channels // groups, out_channels])
        self.bias = self.variable("bias", [out_channels]) if bias else None

    def call(self, x):
        x = spatial_pad(x, self.padding, self.padding_mode)
        run_stride = self._run_stride()
        y = self._conv(x, run_stride)
        if run_stride != self.stride:
            y = y[:, :: self.stride[0], :: self.stride[1], :]
        return y + self.bias if self.bias is not None else y

    def _run_stride(self) -> tuple[int, int]:
        """The stride the TF op runs with; (1, 1) + subsampling where TF or tfjs lacks the combination.

        Subsampling a stride-1 VALID conv at every s-th position is exactly the strided conv.
        Needed for stride with dilation (tfjs rejects both > 1) and for depthwise convs with
        unequal strides (TF's CPU DepthwiseConv2dNative only runs equal row/column strides).
        """
        dilated, strided = self.dilation != (1, 1), self.stride != (1, 1)
        if dilated and strided:
            return (1, 1)
        if self.depthwise and self.stride[0] != self.stride[1]:
            return (1, 1)
        return self.stride

    def _conv(self, x, stride):
        strides = [1, *stride, 1]
        dil = list(self.dilation)
        if self.depthwise:
            return tf.nn.depthwise_conv2d(x, self.kernel, strides, "VALID", dilations=dil)
        if self.groups == 1:
            return tf.nn.conv2d(x, self.kernel, strides, "VALID", dilations=dil)
        xs = tf.split(x, self.groups, axis=-1)
        ks = tf.split(self.kernel, self.groups, axis=-1)
        return tf.concat([tf.nn.conv2d(a, k, strides, "VALID", dilations=dil) for a, k in zip(xs, ks)], -1)


class Conv1d(Conv2d):
    """Runs as a Conv2d over (N, 1, L, C): tfjs's Conv1D is the same op underneath."""

    def __init__(self, *, path, in_channels, out_channels, kernel_size, stride=(1,), dilation=(1,),
                 groups=1, padding=((0, 0),), padding_mode="zeros", bias=True):
        s, d = stride[0], dilation[0]
        # the row stride is free on a height-1 input; equal strides keep depthwise on TF's strided kernel
        super().__init__(path=path, in_channels=in_channels, out_channels=out_channels,
                         kernel_size=(1, kernel_size[0]), stride=(s, s), dilation=(1, d),
                         groups=groups, padding=((0, 0), padding[0]), padding_mode=padding_mode, bias=bias)

    def call(self, x):
        return tf.squeeze(super().call(tf.expand_dims(x, 1)), 1)
