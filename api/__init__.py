"""The REST API: the original system's HTTP surface (its validators' and miners' clients work
unmodified), served from PostgreSQL; ``speechstream api run``."""
