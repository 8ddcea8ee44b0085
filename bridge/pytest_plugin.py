"""pytest plugin (entry point ``pytest11``): the ``bridge_parity`` fixture.

    def test_port(bridge_parity):
        bridge_parity(torch_net, tf_net, (torch.randn(2, 3),))

Importing this module imports neither torch nor TensorFlow; the fixture does, when a test asks for it.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def bridge_parity():
    """``bridge.testing.assert_parity``: raises AssertionError naming the first diverging submodule."""
    from .testing import assert_parity

    return assert_parity
