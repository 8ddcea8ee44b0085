"""One file per family of torch modules and ops. Each file lists its mappings in
``MAPPINGS``; ``bridge.registry.default_registry()`` collects them.

To add a layer: write a ``@module_mapping(nn.X)`` function in its family file
returning a ``LayerPlan`` (TF layer class from ``bridge.layers``, config, named
weight transforms, layouts), add it to that file's ``MAPPINGS``, and add a row
to the family's parametrized test table in ``tests/``.
"""
