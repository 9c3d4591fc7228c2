"""The schemas package's error hierarchy.

Bad *input* never raises: :func:`schemas.parse` turns it into a ``Rejection``.
These errors are for programming mistakes, such as an inconsistent registry of
data-model versions, which stop the process at import time.
"""


class SchemaError(Exception):
    """Root of every error this package raises on purpose."""


class RegistryError(SchemaError):
    """The registry of event types, versions and upcasters is inconsistent."""
