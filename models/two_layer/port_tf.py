"""A hand-written TF port of ``model.py:TwoLayer``, in the classic style:
rebuild the network as a Keras subclassed model, then load the torch weights.

    y = out(relu(hidden(x)))        3 -> 3 -> 2

The Dense layers sit on attributes named like the torch modules (``hidden``,
``out``), so ``bridge.porting.load_torch_weights`` fills them by name: Dense
``kernel`` <- torch ``weight`` transposed (PT (out,in) -> TF (in,out)), ``bias``
<- ``bias``. The model builds itself for ``[None, in_features]`` inputs, so it
has variables right away and the check can draw inputs without being told a
shape.

Check it against torch (exit 0 when parity holds, 4 when the port drifted)::

    bridge check models/two_layer/model.py:TwoLayer models/two_layer/port_tf.py:TwoLayerTF \\
        --weights models/two_layer/two_layer.pt --input 1x3

or in a test::

    from bridge.porting import load_torch_weights
    from bridge.testing import assert_parity

    load_torch_weights(port, torch_model.state_dict())
    assert_parity(torch_model, port, (torch.randn(4, 3),))
"""

import tensorflow as tf


class TwoLayerTF(tf.keras.Model):
    """Dense(3 -> 3) -> ReLU -> Dense(3 -> 2), attribute names as in the torch module."""

    def __init__(self, in_features: int = 3, hidden_features: int = 3, out_features: int = 2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.hidden_features = hidden_features
        self.hidden = tf.keras.layers.Dense(hidden_features, name="hidden")
        self.act = tf.keras.layers.ReLU(name="act")
        self.out = tf.keras.layers.Dense(out_features, name="out")
        self.build((None, in_features))

    def build(self, input_shape) -> None:
        self.hidden.build(input_shape)
        self.out.build((*input_shape[:-1], self.hidden_features))

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return self.out(self.act(self.hidden(x)))
