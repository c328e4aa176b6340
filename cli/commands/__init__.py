"""Command modules of the ``speechstream`` CLI; each has ``register(subparsers)``."""
