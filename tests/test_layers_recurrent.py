"""bridge.layers.recurrent vs torch: RNN (tanh, relu), LSTM (with projections), GRU and the three cells.

Each torch module is built from a seeded generator, its state_dict copied into the
TF layer with the named transforms (RNN_KERNEL, RNN_BIAS_SUM, GRU_BIAS,
LSTM_PROJ_KERNEL) exactly as a mapping binds them, and every output compared
(output, h_n, c_n) eagerly and through one tf.function with a dynamic batch and
sequence length, run at two lengths. The node test exports several layers in
one tfjs model and checks cpu and wasm at two sequence lengths.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf
import torch

from bridge import transforms as T
from bridge.layers import recurrent as R

TOL = 1e-5  # float32 parity bound, scaled by max(1, max|torch|)
TFJS_TOL = 1e-4  # tfjs float32 kernels differ from TF's by ~1e-6 per op; loops accumulate it
IN, HID, PROJ, BATCH = 5, 6, 4, 3
LENGTHS = (4, 7)  # two lengths through one traced function: the length is dynamic

TORCH = {"rnn_tanh": torch.nn.RNN, "rnn_relu": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
LAYERS = {"rnn_tanh": R.RNN, "rnn_relu": R.RNN, "lstm": R.LSTM, "gru": R.GRU}
CELLS = {"rnn_tanh": (torch.nn.RNNCell, R.RNNCell), "rnn_relu": (torch.nn.RNNCell, R.RNNCell),
         "lstm": (torch.nn.LSTMCell, R.LSTMCell), "gru": (torch.nn.GRUCell, R.GRUCell)}


# ---------------------------------------------------------------- weight binding (what a mapping does)


def bind_weights(layer, module) -> set[str]:
    """Copy module's state_dict into layer's variables by torch key; returns the TF attributes set."""
    sd = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    bias_transform = T.GRU_BIAS if isinstance(module, (torch.nn.GRU, torch.nn.GRUCell)) else T.RNN_BIAS_SUM
    bound = set()
    for key, value in sd.items():
        kind, _, rest = key.partition("_")  # "weight", "ih_l0_reverse"
        part, _, sfx = rest.partition("_")  # "ih", "l0_reverse"
        sfx = "_" + sfx if sfx else ""
        if kind == "weight":
            attr = f"kernel_{part}{sfx}"
            array = (T.LSTM_PROJ_KERNEL if part == "hr" else T.RNN_KERNEL)(value)
        elif part == "ih":
            attr = f"bias{sfx}"
            array = bias_transform(value, sd[f"bias_hh{sfx}"])
        else:
            continue  # bias_hh: consumed with bias_ih
        variable = getattr(layer, attr)
        assert tuple(variable.shape) == array.shape, (attr, variable.shape, array.shape)
        variable.assign(array)
        bound.add(attr)
    return bound


def full_config(kind: str, **kw) -> dict:
    cfg = dict(input_size=IN, hidden_size=HID, **kw)
    if kind.startswith("rnn"):
        cfg["nonlinearity"] = kind[4:]
    return cfg


def make_pair(kind: str, seed: int, unroll: bool = False, **kw):
    """(torch module, TF layer with the same weights) for a full RNN/LSTM/GRU."""
    torch.manual_seed(seed)
    cfg = full_config(kind, **kw)
    module = TORCH[kind](**cfg).eval()
    layer = LAYERS[kind](path="rnn", unroll=unroll, **cfg)
    assert bind_weights(layer, module) == {v.name.split(":")[0] for v in layer.variables}
    return module, layer


# ---------------------------------------------------------------- comparing


def torch_run(module, x, state):
    with torch.no_grad():
        return module(torch.from_numpy(x), _torch_state(state))


def _torch_state(state):
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(torch.from_numpy(s) for s in state)
    return torch.from_numpy(state)


def assert_close(got, want, tol=TOL):
    """Same nested structure and shapes; max abs error <= tol * max(1, max|torch|) on each leaf."""
    want_leaves = torch.utils._pytree.tree_leaves(want)
    got_leaves = tf.nest.flatten(got)
    assert len(got_leaves) == len(want_leaves)
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        if isinstance(want[1], tuple):
            assert isinstance(got[1], tuple) and len(got[1]) == len(want[1])
    for g, w in zip(got_leaves, want_leaves):
        g, w = np.asarray(g), w.numpy()
        assert g.shape == w.shape
        bound = tol * max(1.0, float(np.abs(w).max(initial=0.0)))
        assert float(np.abs(g - w).max(initial=0.0)) <= bound


def random_inputs(kind, rng, length, *, batch_first, num_layers, bidirectional, proj_size=0, state=False,
                  batch=BATCH, **_layer_flags):
    """x and the initial state (None, h0 or (h0, c0)); batch=None gives unbatched arrays."""
    lead = () if batch is None else (batch,)
    x_shape = (*lead, length, IN) if batch_first and batch is not None else (length, *lead, IN)
    x = rng.standard_normal(x_shape).astype(np.float32)
    if not state:
        return x, None
    layers = num_layers * (2 if bidirectional else 1)
    h0 = rng.standard_normal((layers, *lead, proj_size or HID)).astype(np.float32)
    if kind != "lstm":
        return x, h0
    return x, (h0, rng.standard_normal((layers, *lead, HID)).astype(np.float32))


def traced(layer, x, state):
    """One tf.function with batch and length dynamic (shapes None), for inputs shaped like x and state."""
    def spec(a, dynamic):
        return tf.TensorSpec([None if i in dynamic else d for i, d in enumerate(a.shape)], tf.float32)

    x_spec = spec(x, {0, 1} if x.ndim == 3 else {0})
    if state is None:
        return tf.function(lambda x: layer(x), input_signature=[x_spec])
    state_dyn = {1} if x.ndim == 3 else set()
    if isinstance(state, tuple):
        specs = [spec(s, state_dyn) for s in state]
        return tf.function(lambda x, h, c: layer(x, (h, c)), input_signature=[x_spec, *specs])
    return tf.function(lambda x, h: layer(x, h), input_signature=[x_spec, spec(state, state_dyn)])


def call_traced(fn, x, state):
    if state is None:
        return fn(x)
    return fn(x, *state) if isinstance(state, tuple) else fn(x, state)


# ---------------------------------------------------------------- transforms


def test_rnn_kernel_transposes_and_keeps_gate_order():
    w = np.arange(4 * 2 * 3, dtype=np.float32).reshape(8, 3)  # (G*H, in) with G=4, H=2
    out = T.RNN_KERNEL(w)
    assert out.shape == (3, 8)
    np.testing.assert_array_equal(out[:, 2:4], w[2:4].T)  # gate f stays in columns H..2H
    assert T.RNN_KERNEL.arity == 1 and out.flags["C_CONTIGUOUS"]


def test_rnn_bias_sum_adds_both_biases():
    b_ih, b_hh = np.arange(8, dtype=np.float32), 10 * np.arange(8, dtype=np.float32)
    out = T.RNN_BIAS_SUM(b_ih, b_hh)
    assert out.shape == (8,) and T.RNN_BIAS_SUM.arity == 2
    np.testing.assert_array_equal(out, 11 * np.arange(8, dtype=np.float32))
    with pytest.raises(TypeError):
        T.RNN_BIAS_SUM(b_ih)


def test_gru_bias_keeps_b_in_and_b_hn_apart():
    h = 2
    b_ih = np.array([1, 2, 3, 4, 5, 6], np.float32)  # r r z z n n
    b_hh = np.array([10, 20, 30, 40, 50, 60], np.float32)
    out = T.GRU_BIAS(b_ih, b_hh)
    assert out.shape == (4 * h,) and T.GRU_BIAS.arity == 2
    np.testing.assert_array_equal(out, [11, 22, 33, 44, 5, 6, 50, 60])


def test_lstm_proj_kernel_transposes():
    w = np.arange(12, dtype=np.float32).reshape(3, 4)  # (proj, H)
    out = T.LSTM_PROJ_KERNEL(w)
    assert out.shape == (4, 3)
    np.testing.assert_array_equal(out, w.T)


# ---------------------------------------------------------------- full modules: the table


def _table():
    """Every kind x layers x bidirectional x batch_first; bias and initial state alternate so each
    kind sees both; then LSTM projections."""
    cases = []
    for kind, layers, bidir, bf in itertools.product(TORCH, (1, 2), (False, True), (False, True)):
        bias = (layers + bidir + bf) % 2 == 1
        state = (bidir + bf) % 2 == 0
        cases.append((kind, dict(num_layers=layers, bidirectional=bidir, batch_first=bf, bias=bias), state))
    for layers, bidir, state in itertools.product((1, 2), (False, True), (False, True)):
        cfg = dict(num_layers=layers, bidirectional=bidir, batch_first=bidir, bias=not state, proj_size=PROJ)
        cases.append(("lstm", cfg, state))
    return cases


def _case_id(case):
    kind, cfg, state = case
    flags = [f"L{cfg['num_layers']}", "bi" if cfg["bidirectional"] else "uni", "bf" if cfg["batch_first"] else "tf",
             "bias" if cfg["bias"] else "nobias", "h0" if state else "zero"]
    if cfg.get("proj_size"):
        flags.append(f"proj{cfg['proj_size']}")
    return "-".join([kind, *flags])


TABLE = _table()


@pytest.mark.parametrize("case", TABLE, ids=[_case_id(c) for c in TABLE])
def test_full_module_matches_torch_at_two_lengths(case):
    kind, cfg, state = case
    module, layer = make_pair(kind, seed=len(_case_id(case)), **cfg)
    rng = np.random.default_rng(0)
    fn = None
    for length in LENGTHS:
        x, s = random_inputs(kind, rng, length, state=state, **cfg)
        want = torch_run(module, x, s)
        assert_close(layer(x, s), want)  # eager, as parity runs it
        fn = fn or traced(layer, x, s)
        assert_close(call_traced(fn, x, s), want)  # one graph, two lengths
    assert len(fn._list_all_concrete_functions()) == 1  # noqa: SLF001 - no retrace for the second length


UNBATCHED = [(kind, state) for kind in TORCH for state in (False, True)] + [("lstm-proj", True)]


@pytest.mark.parametrize("kind,state", UNBATCHED)
def test_unbatched_input_gives_torch_shapes(kind, state):
    cfg = dict(num_layers=2, bidirectional=True, batch_first=kind == "gru")
    if kind == "lstm-proj":
        kind, cfg["proj_size"] = "lstm", PROJ
    module, layer = make_pair(kind, seed=3, **cfg)
    rng = np.random.default_rng(1)
    fn = None
    for length in LENGTHS:
        x, s = random_inputs(kind, rng, length, state=state, batch=None, **cfg)
        want = torch_run(module, x, s)
        assert_close(layer(x, s), want)
        fn = fn or traced(layer, x, s)
        assert_close(call_traced(fn, x, s), want)


OTHER_FORMS = [("lstm", dict(num_layers=2, bidirectional=True, batch_first=True, proj_size=PROJ), True),
               ("gru", dict(num_layers=2, bidirectional=True, batch_first=False, bias=True), True),
               ("rnn_relu", dict(num_layers=1, bidirectional=True, batch_first=True, bias=False), False)]


@pytest.mark.parametrize("form", ["unroll", "while_concat"])
@pytest.mark.parametrize("case", OTHER_FORMS, ids=[c[0] for c in OTHER_FORMS])
def test_other_graph_forms_match_torch(case, form):
    kind, cfg, state = case
    module, layer = make_pair(kind, seed=5, unroll=form == "unroll", **cfg)
    layer.graph_form = form
    rng = np.random.default_rng(2)
    dynamic = None
    for length in LENGTHS:
        x, s = random_inputs(kind, rng, length, state=state, **cfg)
        want = torch_run(module, x, s)
        assert_close(layer(x, s), want)
        if form == "unroll":  # a static length: one trace per length
            assert_close(tf.function(lambda x, s: layer(x, s))(x, s), want)
        else:
            dynamic = dynamic or traced(layer, x, s)
            assert_close(call_traced(dynamic, x, s), want)


def test_loop_survives_the_converters_freezing():
    """Frozen as the tfjs converter freezes (lower_control_flow=True), the While stays functional:
    lowered, it would bring the LoopExecuted NoOp that no tfjs backend can schedule."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    _, layer = make_pair("lstm", seed=0, bidirectional=True)
    fn = tf.function(lambda x: layer(x), input_signature=[tf.TensorSpec([None, None, IN], tf.float32)])
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function(), lower_control_flow=True)
    ops = {op.type for op in frozen.graph.get_operations()}
    assert "While" in ops or "StatelessWhile" in ops
    assert not ops & {"Enter", "Exit", "Merge", "Switch", "NextIteration", "LoopCond"}


def test_unroll_refuses_a_dynamic_length():
    _, layer = make_pair("gru", seed=0, unroll=True)
    fn = tf.function(lambda x: layer(x), input_signature=[tf.TensorSpec([None, None, IN], tf.float32)])
    with pytest.raises(ValueError, match="static sequence length"):
        fn.get_concrete_function()


def test_variables_are_named_after_torch_keys():
    _, layer = make_pair("lstm", seed=0, num_layers=2, bidirectional=True, proj_size=PROJ)
    shapes = {v.name.split(":")[0]: tuple(v.shape) for v in layer.variables}
    assert shapes["kernel_ih_l0"] == (IN, 4 * HID)
    assert shapes["kernel_ih_l1_reverse"] == (2 * PROJ, 4 * HID)
    assert shapes["kernel_hh_l1"] == (PROJ, 4 * HID)
    assert shapes["kernel_hr_l0_reverse"] == (HID, PROJ)
    assert shapes["bias_l1_reverse"] == (4 * HID,)
    assert len(shapes) == 16
    _, gru = make_pair("gru", seed=0)
    assert {v.name.split(":")[0]: tuple(v.shape) for v in gru.variables}["bias_l0"] == (4 * HID,)


# ---------------------------------------------------------------- cells


CELL_CASES = [(kind, batched, state, bias) for kind in CELLS for batched, state, bias in
              [(True, False, True), (True, True, False), (False, True, True), (False, False, False)]]


@pytest.mark.parametrize("kind,batched,state,bias", CELL_CASES)
def test_cell_matches_torch(kind, batched, state, bias):
    tcls, layer_cls = CELLS[kind]
    cfg = dict(input_size=IN, hidden_size=HID, bias=bias)
    if kind.startswith("rnn"):
        cfg["nonlinearity"] = kind[4:]
    torch.manual_seed(7)
    module = tcls(**cfg).eval()
    layer = layer_cls(path="cell", **cfg)
    assert bind_weights(layer, module) == {v.name.split(":")[0] for v in layer.variables}
    rng = np.random.default_rng(3)
    lead = (BATCH,) if batched else ()
    x = rng.standard_normal((*lead, IN)).astype(np.float32)
    s = None
    if state:
        s = rng.standard_normal((*lead, HID)).astype(np.float32)
        if kind == "lstm":
            s = (s, rng.standard_normal((*lead, HID)).astype(np.float32))
    assert_close(layer(x, s), torch_run(module, x, s))


# ---------------------------------------------------------------- tfjs (cpu, wasm)


class _Exported(tf.Module):
    """Representative layers behind one signature with a dynamic batch and length."""

    def __init__(self, layers):
        super().__init__()
        self.lstm, self.gru, self.rnn, self.cell = layers
        n_lstm = 2 * 2  # num_layers * directions
        specs = [tf.TensorSpec([None, None, IN], tf.float32, name="x"),
                 tf.TensorSpec([n_lstm, None, PROJ], tf.float32, name="h0"),
                 tf.TensorSpec([n_lstm, None, HID], tf.float32, name="c0")]
        self.serve = tf.function(self._serve, input_signature=specs, autograph=False)

    def _serve(self, x, h0, c0):
        y, (h_n, c_n) = self.lstm(x, (h0, c0))  # batch_first, bidirectional, projections
        g, g_n = self.gru(tf.transpose(x, [1, 0, 2]))  # time-major, no bias
        r, r_n = self.rnn(x[0])  # unbatched relu RNN
        h1, c1 = self.cell(x[:, 0], (h0[0], c0[0][:, :PROJ]))
        return {"lstm_y": y, "lstm_h": h_n, "lstm_c": c_n, "gru_y": g, "gru_h": g_n, "rnn_y": r, "rnn_h": r_n,
                "cell_h": h1, "cell_c": c1}


def _exported_pairs():
    lstm = make_pair("lstm", seed=11, num_layers=2, bidirectional=True, batch_first=True, proj_size=PROJ)
    gru = make_pair("gru", seed=12, num_layers=2, bidirectional=True, bias=False)
    rnn = make_pair("rnn_relu", seed=13, num_layers=2)
    torch.manual_seed(14)
    cell_module = torch.nn.LSTMCell(IN, PROJ).eval()
    cell = R.LSTMCell(path="cell", input_size=IN, hidden_size=PROJ)
    bind_weights(cell, cell_module)
    return [lstm, gru, rnn, (cell_module, cell)]


def _torch_reference(modules, x, h0, c0) -> dict:
    lstm, gru, rnn, cell = modules
    with torch.no_grad():
        xt, h0t, c0t = (torch.from_numpy(a) for a in (x, h0, c0))
        y, (h_n, c_n) = lstm(xt, (h0t, c0t))
        g, g_n = gru(xt.transpose(0, 1))
        r, r_n = rnn(xt[0])
        h1, c1 = cell(xt[:, 0], (h0t[0], c0t[0][:, :PROJ]))  # the cell's hidden size is PROJ
    return {k: v.numpy() for k, v in dict(lstm_y=y, lstm_h=h_n, lstm_c=c_n, gru_y=g, gru_h=g_n, rnn_y=r, rnn_h=r_n,
                                          cell_h=h1, cell_c=c1).items()}


@pytest.mark.node
def test_tfjs_cpu_and_wasm_match_torch_at_two_lengths(node_or_skip, tmp_path):
    from bridge.export.tfjs import convert_to_tfjs, run_tfjs

    pairs = _exported_pairs()
    served = _Exported([layer for _, layer in pairs])
    tf.saved_model.save(served, str(tmp_path / "sm"), signatures=served.serve.get_concrete_function())
    convert_to_tfjs(tmp_path / "sm", tmp_path / "tfjs", metadata={"test": "recurrent"})
    rng = np.random.default_rng(4)
    for length in (5, 9):
        x = rng.standard_normal((2, length, IN)).astype(np.float32)
        h0 = rng.standard_normal((4, 2, PROJ)).astype(np.float32)
        c0 = rng.standard_normal((4, 2, HID)).astype(np.float32)
        want = _torch_reference([m for m, _ in pairs], x, h0, c0)
        got = run_tfjs(tmp_path / "tfjs", {"x": x, "h0": h0, "c0": c0}, backends=("cpu", "wasm"))
        for backend, outputs in got.items():
            assert set(outputs) == set(want), backend
            for name, ref in want.items():
                bound = TFJS_TOL * max(1.0, float(np.abs(ref).max()))
                assert outputs[name].shape == ref.shape, (backend, name)
                assert float(np.abs(outputs[name] - ref).max()) <= bound, (backend, name, length)
