"""The floor of scripts/bench.py: the same network written directly in TF, exported with no bridge code.

    TF_ENABLE_ONEDNN_OPTS=0 python scripts/bench_models/floor.py MODEL OUT_DIR [--image-size N] [--kwargs JSON]

MODEL is digits_cnn, resnet18, resnet50 or gpt2. One process: import torch and TF (and the tfjs
converter), build the model as plain ``tf.nn`` ops in a ``tf.Module`` with random weights of the torch
model's shapes, trace its serving signature, write a SavedModel, convert it to tfjs in-process
(``convert_tf_saved_model``), and nothing else: no parity, no verification. The last stdout line is
``BENCH_FLOOR {json}``: seconds and peak RSS (this process, sampled every 20 ms) per step.

The networks (same parameter shapes and op families as the torch models bench.py converts):

- digits_cnn: models/digits_cnn (conv 3x3 + BN, depthwise 3x3 with reflect padding + BN, 1x1 conv + BN,
  maxpool 2, conv 3x3 valid + BN, flatten in NCHW order, dense, dense). NCHW input.
- resnet18 / resnet50: torchvision's layouts (examples/vision.py): 7x7/2 stem + BN + ReLU + maxpool 3/2,
  BasicBlock 2-2-2-2 or Bottleneck 3-4-6-3 with 1x1 projection shortcuts, global average pool, dense 1000.
  BatchNorm is not folded (tf.nn.batch_normalization with its four vectors). NCHW input.
- gpt2: GPT2Model (wte, wpe, pre-LN blocks with fused qkv, tanh GELU, final LN) on (input_ids,
  attention_mask) of 1xT int64, returning the last hidden state; the causal mask is a constant.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # before TF is imported (TOOLCHAIN-NOTES: oneDNN fusions)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import json
import math
import sys
import threading
import time
from pathlib import Path

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class Steps:
    """Times named steps and samples this process's RSS every 20 ms, keeping the peak per step."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.peak: dict[str, int] = {}
        self._current, self._max, self._stop = None, 0, False
        self._lock = threading.Lock()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self):
        while not self._stop:
            r = _rss()
            with self._lock:
                self._max = max(self._max, r)
            time.sleep(0.02)

    def run(self, name: str, fn, *args):
        with self._lock:
            self._max = _rss()
        t = time.perf_counter()
        out = fn(*args)
        self.seconds[name] = time.perf_counter() - t
        with self._lock:
            self.peak[name] = max(self._max, _rss())
        return out


# ---------------------------------------------------------------- imports


def imports():
    import tensorflow as tf
    import torch  # noqa: F401  (the floor pays for both frameworks, as a converter does)
    from tensorflowjs.converters import tf_saved_model_conversion_v2

    return tf, tf_saved_model_conversion_v2


# ---------------------------------------------------------------- weights


class Weights:
    """Random variables of given shapes; counts parameters (trainable in torch) and buffers apart."""

    def __init__(self, tf, seed: int = 0):
        import numpy as np

        self.tf, self.rng = tf, np.random.default_rng(seed)
        self.params = self.buffers = 0
        self.all = []

    def var(self, shape, fan_in=None, *, buffer=False, init=None):
        import numpy as np

        if init == "ones":
            value = np.ones(shape, np.float32)
        elif init == "var":
            value = self.rng.uniform(0.75, 1.25, shape).astype(np.float32)
        elif init == "zeros":
            value = np.zeros(shape, np.float32)
        else:
            value = (self.rng.standard_normal(shape) / math.sqrt(fan_in or shape[0])).astype(np.float32)
        n = int(np.prod(shape))
        if buffer:
            self.buffers += n
        else:
            self.params += n
        v = self.tf.Variable(value, trainable=not buffer)
        self.all.append(v)
        return v


class BN:
    def __init__(self, w: Weights, c: int, eps: float = 1e-5):
        self.tf, self.eps = w.tf, eps
        self.gamma, self.beta = w.var((c,), init="var"), w.var((c,), 1)
        self.mean, self.variance = w.var((c,), 10, buffer=True), w.var((c,), buffer=True, init="var")

    def __call__(self, x):
        return self.tf.nn.batch_normalization(x, self.mean, self.variance, self.beta, self.gamma, self.eps)


class Conv:
    """NHWC conv with torch's symmetric padding (explicit tf.pad then VALID, as a converter emits)."""

    def __init__(self, w: Weights, cin: int, cout: int, k: int, stride: int = 1, pad: int = 0, *,
                 bias: bool = False, depthwise: bool = False, reflect: bool = False):
        self.tf, self.stride, self.pad, self.depthwise, self.reflect = w.tf, stride, pad, depthwise, reflect
        shape = (k, k, cin, 1) if depthwise else (k, k, cin, cout)
        self.kernel = w.var(shape, k * k * (1 if depthwise else cin))
        self.bias = w.var((cout,), 1) if bias else None

    def __call__(self, x):
        tf = self.tf
        if self.pad:
            p = [[0, 0], [self.pad, self.pad], [self.pad, self.pad], [0, 0]]
            x = tf.pad(x, p, mode="REFLECT" if self.reflect else "CONSTANT")
        s = [1, self.stride, self.stride, 1]
        if self.depthwise:
            y = tf.nn.depthwise_conv2d(x, self.kernel, s, "VALID")
        else:
            y = tf.nn.conv2d(x, self.kernel, s, "VALID")
        return y if self.bias is None else tf.nn.bias_add(y, self.bias)


class Dense:
    def __init__(self, w: Weights, cin: int, cout: int):
        self.tf, self.kernel, self.bias = w.tf, w.var((cin, cout), cin), w.var((cout,), 1)

    def __call__(self, x):
        return self.tf.matmul(x, self.kernel) + self.bias


# ---------------------------------------------------------------- digits_cnn


def digits_cnn(tf, w: Weights):
    c1, c2, hidden, classes = 16, 32, 64, 10  # models/digits_cnn/bridge.json kwargs
    layers = [(Conv(w, 1, c1, 3, pad=1, bias=True), BN(w, c1)),
              (Conv(w, c1, c1, 3, pad=1, bias=True, depthwise=True, reflect=True), BN(w, c1)),
              (Conv(w, c1, c2, 1, bias=True), BN(w, c2))]
    last = (Conv(w, c2, c2, 3, bias=True), BN(w, c2))
    fc1, fc2 = Dense(w, c2 * 4, hidden), Dense(w, hidden, classes)

    def forward(x):  # x: NCHW [b, 1, 8, 8]
        h = tf.transpose(x, [0, 2, 3, 1])
        for conv, bn in layers:
            h = tf.nn.relu(bn(conv(h)))
        h = tf.nn.max_pool2d(h, 2, 2, "VALID")
        h = tf.nn.relu(last[1](last[0](h)))
        h = tf.reshape(tf.transpose(h, [0, 3, 1, 2]), [-1, c2 * 4])  # torch's Flatten order (NCHW)
        return fc2(tf.nn.relu(fc1(h)))

    return forward, [tf.TensorSpec([None, 1, 8, 8], tf.float32, name="x")]


# ---------------------------------------------------------------- ResNet


def resnet(tf, w: Weights, bottleneck: bool, layers, size: int):
    expansion = 4 if bottleneck else 1
    stem = (Conv(w, 3, 64, 7, 2, 3), BN(w, 64))
    blocks, cin = [], 64
    for i, n in enumerate(layers):
        width = 64 * 2 ** i
        for j in range(n):
            stride = 2 if (j == 0 and i > 0) else 1
            cout = width * expansion
            if bottleneck:
                convs = [(Conv(w, cin, width, 1), BN(w, width)), (Conv(w, width, width, 3, stride, 1), BN(w, width)),
                         (Conv(w, width, cout, 1), BN(w, cout))]
            else:
                convs = [(Conv(w, cin, width, 3, stride, 1), BN(w, width)),
                         (Conv(w, width, width, 3, 1, 1), BN(w, width))]
            down = (Conv(w, cin, cout, 1, stride), BN(w, cout)) if stride != 1 or cin != cout else None
            blocks.append((convs, down))
            cin = cout
    fc = Dense(w, cin, 1000)

    def forward(x):  # x: NCHW [b, 3, size, size]
        h = tf.transpose(x, [0, 2, 3, 1])
        h = tf.nn.relu(stem[1](stem[0](h)))
        h = tf.pad(h, [[0, 0], [1, 1], [1, 1], [0, 0]])  # after ReLU, zero padding == torch's -inf padding
        h = tf.nn.max_pool2d(h, 3, 2, "VALID")
        for convs, down in blocks:
            identity = h if down is None else down[1](down[0](h))
            out = h
            for k, (conv, bn) in enumerate(convs):
                out = bn(conv(out))
                if k < len(convs) - 1:
                    out = tf.nn.relu(out)
            h = tf.nn.relu(out + identity)
        return fc(tf.reduce_mean(h, axis=[1, 2]))

    return forward, [tf.TensorSpec([None, 3, size, size], tf.float32, name="x")]


# ---------------------------------------------------------------- GPT-2


def gpt2(tf, w: Weights, n_embd=192, n_layer=2, n_head=6, vocab_size=50257, n_positions=1024, seq=32):
    import numpy as np

    d, hd = n_embd, n_embd // n_head

    class LN:
        def __init__(self):
            self.g, self.b = w.var((d,), init="ones"), w.var((d,), init="zeros")

        def __call__(self, x):
            mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
            return (x - mean) * tf.math.rsqrt(var + 1e-5) * self.g + self.b

    wte, wpe = w.var((vocab_size, d), 50), w.var((n_positions, d), 50)
    blocks = [(LN(), Dense(w, d, 3 * d), Dense(w, d, d), LN(), Dense(w, d, 4 * d), Dense(w, 4 * d, d))
              for _ in range(n_layer)]
    ln_f = LN()
    causal = tf.constant(np.triu(np.full((seq, seq), -1e9, np.float32), 1))  # constant: no MatrixBandPart

    def gelu(x):  # GPT-2's gelu_new (tanh form)
        return 0.5 * x * (1.0 + tf.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))

    def heads(x):
        return tf.transpose(tf.reshape(x, [-1, seq, n_head, hd]), [0, 2, 1, 3])

    def forward(input_ids, attention_mask):
        h = tf.gather(wte, input_ids) + wpe[:seq]
        pad = (1.0 - tf.cast(attention_mask, tf.float32))[:, None, None, :] * -1e9
        for ln1, qkv, proj, ln2, fc, out in blocks:
            q, k, v = tf.split(qkv(ln1(h)), 3, axis=-1)
            a = tf.matmul(heads(q), heads(k), transpose_b=True) / math.sqrt(hd) + causal + pad
            a = tf.matmul(tf.nn.softmax(a, axis=-1), heads(v))
            h = h + proj(tf.reshape(tf.transpose(a, [0, 2, 1, 3]), [-1, seq, d]))
            h = h + out(gelu(fc(ln2(h))))
        return ln_f(h)

    return forward, [tf.TensorSpec([1, seq], tf.int64, name="input_ids"),
                     tf.TensorSpec([1, seq], tf.int64, name="attention_mask")]


# ---------------------------------------------------------------- main


def build(tf, name: str, size: int, kwargs: dict):
    w = Weights(tf)
    if name == "digits_cnn":
        forward, spec = digits_cnn(tf, w)
    elif name == "resnet18":
        forward, spec = resnet(tf, w, False, (2, 2, 2, 2), size)
    elif name == "resnet50":
        forward, spec = resnet(tf, w, True, (3, 4, 6, 3), size)
    elif name == "gpt2":
        forward, spec = gpt2(tf, w, **kwargs)
    else:
        raise SystemExit(f"unknown floor model {name!r}")
    module = tf.Module()
    module.vars = list(w.all)  # tracked, so the SavedModel stores them
    module.serve = tf.function(forward, input_signature=spec)
    concrete = module.serve.get_concrete_function()  # the trace, part of building
    return module, concrete, w


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out", type=Path)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--kwargs", default="{}")
    args = ap.parse_args()
    t0 = time.perf_counter()
    steps = Steps()
    tf, conversion = steps.run("imports", imports)
    module, concrete, w = steps.run("build", build, tf, args.model, args.image_size, json.loads(args.kwargs))
    saved = args.out / "saved_model"
    steps.run("savedmodel", lambda: tf.saved_model.save(module, str(saved), signatures={"serving_default": concrete}))
    steps.run("tfjs_convert", lambda: conversion.convert_tf_saved_model(
        str(saved), str(args.out / "tfjs"), signature_def="serving_default", saved_model_tags="serve"))
    total = time.perf_counter() - t0
    tracked = sum(int(v.shape.num_elements()) for v in module.vars)
    weight_bytes = sum(p.stat().st_size for p in (args.out / "tfjs").glob("*.bin"))
    print("BENCH_FLOOR " + json.dumps({"seconds": steps.seconds, "peak_rss": steps.peak, "total_s": total,
                                       "params": w.params, "buffers": w.buffers, "tracked": tracked,
                                       "tfjs_weight_bytes": weight_bytes}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
