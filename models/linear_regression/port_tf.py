"""A hand-written TF port of ``model.py:LinearRegression``, in the classic style:
rebuild the network with TF primitives, then load the torch weights into it.

    y = reduce_sum(x * slope, axis=-1, keepdims=True) + intercept

``slope`` (shape ``[2]``) and ``intercept`` (shape ``[1]``) are plain
``tf.Variable`` attributes named like the torch parameters, so
``bridge.porting.load_torch_weights`` fills them by name (identity transform).
``__call__`` declares its input (``[None, 2]`` float32), so the check can draw
inputs without being told a shape.

Check it against torch (exit 0 when parity holds, 4 when the port drifted)::

    bridge check models/linear_regression/model.py:LinearRegression \\
        models/linear_regression/port_tf.py:LinearRegressionTF \\
        --weights models/linear_regression/linear_regression.pt --input 1x2

or in a test::

    from bridge.porting import load_torch_weights
    from bridge.testing import assert_parity

    load_torch_weights(port, torch_model.state_dict())
    assert_parity(torch_model, port, (torch.randn(4, 2),))
"""

import tensorflow as tf


class LinearRegressionTF(tf.Module):
    """``y = sum(slope * x, -1, keepdims=True) + intercept`` with the torch parameter names."""

    def __init__(self, name: str = "linear_regression") -> None:
        super().__init__(name=name)
        self.slope = tf.Variable(tf.zeros([2]), name="slope")
        self.intercept = tf.Variable(tf.zeros([1]), name="intercept")

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(x * self.slope, axis=-1, keepdims=True) + self.intercept
