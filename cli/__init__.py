"""The roof: the ``speechstream`` command (``cli.main``), its commands and the demo.

Commands read the settings once and hand them, with the clients they build, to the stages.
"""
