"""torch's RNN, LSTM, GRU (stacked, bidirectional, LSTM projections) and their cells, in eval mode.

Weights keep torch's gate order (LSTM i,f,g,o; GRU r,z,n) and are stored TF-style
(``kernel_ih_l{k}{sfx}`` (in, G*H), ``kernel_hh_l{k}{sfx}`` (H or proj, G*H),
``kernel_hr_l{k}{sfx}`` (H, proj), ``bias_l{k}{sfx}``) so a mapping can bind them
by torch key; the transforms that fill them are in ``bridge/transforms.py``
(RNN_KERNEL, RNN_BIAS_SUM, GRU_BIAS, LSTM_PROJ_KERNEL). RNN and LSTM fold both
torch biases into one (G*H,) vector; GRU keeps b_hn apart (its bias is (4H,):
[b_ir+b_hr, b_iz+b_hz, b_in, b_hn]) because torch applies the reset gate after
the recurrent matmul and its bias.

The input projection of every time step is one MatMul over (T*N, in) before the
time loop; only ``h @ W_hh`` runs per step. The time loop has two graph forms
(measured in docs/rnn-graph-form.md, benchmark in scripts/rnn_graph_form.py):

- ``"loop"`` (default): a ``tf.while_loop`` over the dynamic sequence length;
  each step reads its input with ``tf.gather`` and writes its output into a
  TensorArray (TensorList ops in the graph). The While is marked so that
  freezing keeps it functional (see ``_functional_while``): lowered to v1
  control flow, no tfjs backend can run it.
- ``"unroll"``: a Python loop over the static sequence length (one copy of the
  cell per step): needs a static length, grows the graph linearly with it.
- ``"while_concat"``: as "loop", but the outputs grow by ``tf.concat`` in a loop
  variable (quadratic copying; kept for the benchmark).

Unbatched inputs (x of rank 2, cells rank 1, states without the batch dim) give
outputs without the batch dim, exactly as torch does.
"""

from __future__ import annotations

import contextlib

import tensorflow as tf
from tensorflow.core.framework import attr_value_pb2

from .base import Layer

__all__ = ["GRU", "GRUCell", "LSTM", "LSTMCell", "RNN", "RNNCell"]

_GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
# Forms of the time loop; "loop" is what unroll=False uses. The others exist for the benchmark.
GRAPH_FORMS = ("loop", "unroll", "while_concat")


# ---------------------------------------------------------------- one time step


def _rnn_step(act):
    def step(xw_t, states, kernel_hh, extra):
        (h,) = states
        # AddN, not Add: the tfjs converter would fuse MatMul + Add(another MatMul) + Relu into a
        # _FusedMatMul whose "bias" is a full matrix, which tfjs-wasm refuses (bias=False cells)
        h = act(tf.add_n([xw_t, tf.matmul(h, kernel_hh)]))
        return h, (h,)

    return step


def _lstm_step(xw_t, states, kernel_hh, extra):
    """gates = x W_ih + b + h W_hh, split i,f,g,o; with a projection h = (o*tanh c) W_hr."""
    h, c = states
    i, f, g, o = tf.split(xw_t + tf.matmul(h, kernel_hh), 4, axis=-1)
    c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
    h = tf.sigmoid(o) * tf.tanh(c)
    if extra.get("kernel_hr") is not None:
        h = tf.matmul(h, extra["kernel_hr"])
    return h, (h, c)


def _gru_step(xw_t, states, kernel_hh, extra):
    """torch's GRU: n = tanh(x W_in + b_in + r * (h W_hn + b_hn)); h' = (1-z) n + z h."""
    (h,) = states
    x_r, x_z, x_n = tf.split(xw_t, 3, axis=-1)
    h_r, h_z, h_n = tf.split(tf.matmul(h, kernel_hh), 3, axis=-1)
    if extra.get("b_hn") is not None:
        h_n = h_n + extra["b_hn"]
    r = tf.sigmoid(x_r + h_r)
    z = tf.sigmoid(x_z + h_z)
    n = tf.tanh(x_n + r * h_n)
    h = (1.0 - z) * n + z * h
    return h, (h,)


def _step_fn(mode: str, nonlinearity: str = "tanh"):
    if mode == "LSTM":
        return _lstm_step
    if mode == "GRU":
        return _gru_step
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return _rnn_step(tf.tanh if nonlinearity == "tanh" else tf.nn.relu)


# ---------------------------------------------------------------- the time loop


def _scan(form: str, step, xw, states: tuple, out_size: int, reverse: bool):
    """Run ``step`` over time-major ``xw`` (T, N, G*H); returns (outputs (T, N, out_size), final states)."""
    if form == "unroll":
        return _scan_unrolled(step, xw, states, reverse)
    if form == "loop":
        return _scan_while_tensorarray(step, xw, states, out_size, reverse)
    if form == "while_concat":
        return _scan_while_concat(step, xw, states, out_size, reverse)
    raise ValueError(f"graph form must be one of {GRAPH_FORMS}, got {form!r}")


def _scan_unrolled(step, xw, states, reverse):
    if xw.shape[0] is None:
        raise ValueError("unroll=True needs a static sequence length; export with a fixed length "
                         "or use the loop form (unroll=False)")
    steps = tf.unstack(xw, axis=0)
    outs = [None] * len(steps)
    for t in (reversed(range(len(steps))) if reverse else range(len(steps))):
        outs[t], states = step(steps[t], states)
    if not outs:
        return xw[:, :, :0], states  # torch rejects T=0; keep shapes sane anyway
    return tf.stack(outs, axis=0), states


def _scan_while_concat(step, xw, states, out_size, reverse):
    """Loop variables: t, the outputs so far (grown by concat, O(T^2) copying) and the states."""
    length = tf.shape(xw)[0]
    acc = tf.zeros(tf.stack([0, tf.shape(xw)[1], out_size]))

    def body(t, acc, *states):
        idx = length - 1 - t if reverse else t
        out, states = step(tf.gather(xw, idx), states)
        pair = [out[None], acc] if reverse else [acc, out[None]]
        return (t + 1, tf.concat(pair, axis=0), *states)

    invariants = (tf.TensorShape([]), tf.TensorShape([None, None, out_size]),
                  *(tf.TensorShape([None, s.shape[-1]]) for s in states))
    with _functional_while():
        _, acc, *states = tf.while_loop(lambda t, *_: t < length, body, (tf.constant(0), acc, *states),
                                        shape_invariants=invariants)
    return acc, tuple(states)


def _scan_while_tensorarray(step, xw, states, out_size, reverse):
    """The loop form: loop variables t, a TensorArray and the states; x_t read with tf.gather.

    Each step writes the h it *received* (the previous step's output, h0 first) and the
    final h is written after the loop, so the array holds T+1 entries and the outputs
    are a slice of it. Why not write the step's own output: tfjs disposes, at the end
    of every loop-body call, each tensor the body made that is not one of its outputs,
    TensorList entries included; whether the written tensor is the very tensor returned
    as h depends on the executor's op order (it is not for LSTM with projections, which
    then reads freed memory). A tensor the body received is never disposed there.
    Every step function returns its output as states[0], so h is the output.
    """
    length = tf.shape(xw)[0]
    outs = tf.TensorArray(tf.float32, size=length + 1, element_shape=tf.TensorShape([None, out_size]))

    def body(t, outs, *states):
        idx = length - 1 - t if reverse else t
        outs = outs.write(idx + 1 if reverse else t, states[0])
        _, states = step(tf.gather(xw, idx), states)
        return (t + 1, outs, *states)

    with _functional_while():
        _, outs, *states = tf.while_loop(lambda t, *_: t < length, body, (tf.constant(0), outs, *states))
    stacked = outs.write(0 if reverse else length, states[0]).stack()
    return (stacked[:-1] if reverse else stacked[1:]), tuple(states)


@contextlib.contextmanager
def _functional_while():
    """Keep the While ops built inside the block functional when the graph is frozen.

    The tfjs converter's default freezes with lower_control_flow=True, which rewrites a
    While into v1 Enter/Merge/Switch/Exit plus a ``LoopExecuted`` NoOp that the outputs
    depend on; tfjs cannot schedule that NoOp ("Cannot compute the outputs ... from the
    provided inputs") on any backend. Lowering honours the op's ``_lower_using_switch_merge``
    attribute, so setting it False keeps the functional While, which tfjs runs everywhere.
    Eager runs build no op; nothing happens then.
    """
    if tf.executing_eagerly():
        yield
        return
    graph = tf.compat.v1.get_default_graph()
    first = len(graph.get_operations())
    yield
    for op in graph.get_operations()[first:]:
        if op.type in ("While", "StatelessWhile"):
            op._set_attr("_lower_using_switch_merge", attr_value_pb2.AttrValue(b=False))  # noqa: SLF001


# ---------------------------------------------------------------- full modules


def _time_major_projection(x, kernel_ih, bias):
    """x (T, N, in) @ W_ih (+ bias) as one MatMul -> (T, N, G*H)."""
    shape = tf.shape(x)
    y = tf.matmul(tf.reshape(x, [-1, kernel_ih.shape[0]]), kernel_ih)
    if bias is not None:
        y = y + bias
    y = tf.reshape(y, tf.stack([shape[0], shape[1], kernel_ih.shape[1]]))
    y.set_shape([x.shape[0], x.shape[1], kernel_ih.shape[1]])  # keep a static length for unroll
    return y


class _Recurrent(Layer):
    """Shared body of RNN, LSTM and GRU: variables per layer and direction, and the stacked scan."""

    def __init__(self, *, path, mode, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, bidirectional=False, proj_size=0, unroll=False):
        super().__init__(path=path)
        if proj_size and mode != "LSTM":
            raise ValueError("proj_size is only supported by LSTM")
        if proj_size < 0 or (proj_size and proj_size >= hidden_size):
            raise ValueError(f"proj_size must be in [0, hidden_size), got {proj_size}")
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        self.num_layers, self.batch_first, self.proj_size = num_layers, batch_first, proj_size
        self.num_directions = 2 if bidirectional else 1
        self.has_bias = bias
        self.graph_form = "unroll" if unroll else "loop"
        self._step = _step_fn(mode, nonlinearity)
        for k in range(num_layers):
            for sfx in self._suffixes():
                self._make_variables(k, sfx)

    def _suffixes(self):
        return ("", "_reverse")[: self.num_directions]

    @property
    def out_size(self) -> int:
        """The size of h (and of each direction's output): proj_size if set, else hidden_size."""
        return self.proj_size or self.hidden_size

    def _make_variables(self, k: int, sfx: str) -> None:
        gh = _GATES[self.mode] * self.hidden_size
        in_k = self.input_size if k == 0 else self.out_size * self.num_directions
        setattr(self, f"kernel_ih_l{k}{sfx}", self.variable(f"kernel_ih_l{k}{sfx}", [in_k, gh]))
        setattr(self, f"kernel_hh_l{k}{sfx}", self.variable(f"kernel_hh_l{k}{sfx}", [self.out_size, gh]))
        if self.has_bias:
            size = 4 * self.hidden_size if self.mode == "GRU" else gh
            setattr(self, f"bias_l{k}{sfx}", self.variable(f"bias_l{k}{sfx}", [size]))
        if self.proj_size:
            setattr(self, f"kernel_hr_l{k}{sfx}",
                    self.variable(f"kernel_hr_l{k}{sfx}", [self.hidden_size, self.proj_size]))

    def _run(self, x, states: list[tuple]):
        """x (T, N, in) time-major, states[k*D + d] per layer/direction -> (output, final states)."""
        finals = []
        for k in range(self.num_layers):
            outs = []
            for d, sfx in enumerate(self._suffixes()):
                kernel_ih, kernel_hh, xbias, extra = self._weights(k, sfx)
                xw = _time_major_projection(x, kernel_ih, xbias)
                out, final = _scan(self.graph_form, lambda a, s: self._step(a, s, kernel_hh, extra), xw,
                                   states[k * self.num_directions + d], self.out_size, reverse=d == 1)
                outs.append(out)
                finals.append(final)
            x = outs[0] if len(outs) == 1 else tf.concat(outs, axis=-1)
        return x, finals

    def _weights(self, k: int, sfx: str):
        """(kernel_ih, kernel_hh, bias added to x W_ih, extra step weights) for one layer/direction."""
        bias = getattr(self, f"bias_l{k}{sfx}") if self.has_bias else None
        extra = {"kernel_hr": getattr(self, f"kernel_hr_l{k}{sfx}") if self.proj_size else None}
        if self.mode == "GRU" and bias is not None:
            gh = 3 * self.hidden_size
            bias, extra["b_hn"] = bias[:gh], bias[gh:]
        return getattr(self, f"kernel_ih_l{k}{sfx}"), getattr(self, f"kernel_hh_l{k}{sfx}"), bias, extra

    def _forward(self, x, h0, c0=None):
        """Batch handling shared by the three modules; returns (output, h_n, c_n or None) in torch layout."""
        unbatched = x.shape.rank == 2
        if x.shape.rank not in (2, 3):
            raise ValueError(f"{self.mode} expects input of rank 2 (unbatched) or 3, got rank {x.shape.rank}")
        if unbatched:
            x = x[:, None]
            h0, c0 = (None if s is None else s[:, None] for s in (h0, c0))
        elif self.batch_first:
            x = tf.transpose(x, [1, 0, 2])
        states = self._initial_states(x, h0, c0)
        y, finals = self._run(x, states)
        h_n = tf.stack([f[0] for f in finals], axis=0)
        c_n = tf.stack([f[1] for f in finals], axis=0) if self.mode == "LSTM" else None
        if unbatched:
            return y[:, 0], h_n[:, 0], None if c_n is None else c_n[:, 0]
        if self.batch_first:
            y = tf.transpose(y, [1, 0, 2])
        return y, h_n, c_n

    def _initial_states(self, x, h0, c0) -> list[tuple]:
        """One state tuple per layer and direction; zeros where torch's are None."""
        count = self.num_layers * self.num_directions
        batch = tf.shape(x)[1]
        hs = tf.unstack(h0, num=count) if h0 is not None else [tf.zeros(tf.stack([batch, self.out_size]))] * count
        if self.mode != "LSTM":
            return [(h,) for h in hs]
        cs = tf.unstack(c0, num=count) if c0 is not None else [tf.zeros(tf.stack([batch, self.hidden_size]))] * count
        return list(zip(hs, cs))


class RNN(_Recurrent):
    """torch.nn.RNN: ``call(x, h0=None) -> (output, h_n)``."""

    def __init__(self, *, path, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, bidirectional=False, unroll=False):
        super().__init__(path=path, mode="RNN", input_size=input_size, hidden_size=hidden_size,
                         num_layers=num_layers, nonlinearity=nonlinearity, bias=bias, batch_first=batch_first,
                         bidirectional=bidirectional, unroll=unroll)

    def call(self, input, hx=None):  # torch's forward(input, hx=None)
        y, h_n, _ = self._forward(input, hx)
        return y, h_n


class LSTM(_Recurrent):
    """torch.nn.LSTM: ``call(x, state=None) -> (output, (h_n, c_n))``, state None or (h0, c0)."""

    def __init__(self, *, path, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 bidirectional=False, proj_size=0, unroll=False):
        super().__init__(path=path, mode="LSTM", input_size=input_size, hidden_size=hidden_size,
                         num_layers=num_layers, bias=bias, batch_first=batch_first,
                         bidirectional=bidirectional, proj_size=proj_size, unroll=unroll)

    def call(self, input, hx=None):  # torch's forward(input, hx=None), hx = (h0, c0)
        h0, c0 = hx if hx is not None else (None, None)
        y, h_n, c_n = self._forward(input, h0, c0)
        return y, (h_n, c_n)


class GRU(_Recurrent):
    """torch.nn.GRU: ``call(x, h0=None) -> (output, h_n)``."""

    def __init__(self, *, path, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 bidirectional=False, unroll=False):
        super().__init__(path=path, mode="GRU", input_size=input_size, hidden_size=hidden_size,
                         num_layers=num_layers, bias=bias, batch_first=batch_first,
                         bidirectional=bidirectional, unroll=unroll)

    def call(self, input, hx=None):  # torch's forward(input, hx=None)
        y, h_n, _ = self._forward(input, hx)
        return y, h_n


# ---------------------------------------------------------------- cells


class _Cell(Layer):
    """One step of RNN/LSTM/GRU on (N, in) or unbatched (in,) input."""

    def __init__(self, *, path, mode, input_size, hidden_size, bias=True, nonlinearity="tanh"):
        super().__init__(path=path)
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        gh = _GATES[mode] * hidden_size
        self._step = _step_fn(mode, nonlinearity)
        self.kernel_ih = self.variable("kernel_ih", [input_size, gh])
        self.kernel_hh = self.variable("kernel_hh", [hidden_size, gh])
        self.bias = self.variable("bias", [4 * hidden_size if mode == "GRU" else gh]) if bias else None

    def _one_step(self, x, states: tuple) -> tuple:
        """x (N, in) or (in,), states as given (None -> zeros); returns the new state tuple, batch as x."""
        unbatched = x.shape.rank == 1
        if x.shape.rank not in (1, 2):
            raise ValueError(f"{self.mode}Cell expects input of rank 1 (unbatched) or 2, got rank {x.shape.rank}")
        if unbatched:
            x = x[None]
        zeros = tf.zeros(tf.stack([tf.shape(x)[0], self.hidden_size]))
        states = tuple(zeros if s is None else (s[None] if unbatched else s) for s in states)
        xw, extra = tf.matmul(x, self.kernel_ih), {}
        if self.bias is not None:
            gh = _GATES[self.mode] * self.hidden_size
            xw = xw + self.bias[:gh]
            extra["b_hn"] = self.bias[gh:] if self.mode == "GRU" else None
        _, new = self._step(xw, states, self.kernel_hh, extra)
        return tuple(s[0] for s in new) if unbatched else new


class RNNCell(_Cell):
    """torch.nn.RNNCell: ``call(x, h=None) -> h'``."""

    def __init__(self, *, path, input_size, hidden_size, bias=True, nonlinearity="tanh"):
        super().__init__(path=path, mode="RNN", input_size=input_size, hidden_size=hidden_size, bias=bias,
                         nonlinearity=nonlinearity)

    def call(self, input, hx=None):  # torch's forward(input, hx=None)
        return self._one_step(input, (hx,))[0]


class LSTMCell(_Cell):
    """torch.nn.LSTMCell: ``call(x, state=None) -> (h', c')``, state None or (h, c)."""

    def __init__(self, *, path, input_size, hidden_size, bias=True):
        super().__init__(path=path, mode="LSTM", input_size=input_size, hidden_size=hidden_size, bias=bias)

    def call(self, input, hx=None):  # torch's forward(input, hx=None), hx = (h, c)
        h, c = self._one_step(input, hx if hx is not None else (None, None))
        return h, c


class GRUCell(_Cell):
    """torch.nn.GRUCell: ``call(x, h=None) -> h'``."""

    def __init__(self, *, path, input_size, hidden_size, bias=True):
        super().__init__(path=path, mode="GRU", input_size=input_size, hidden_size=hidden_size, bias=bias)

    def call(self, input, hx=None):  # torch's forward(input, hx=None)
        return self._one_step(input, (hx,))[0]
