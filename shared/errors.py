"""The base of every error Kaizen raises on purpose.

Each module defines its errors as subclasses, so a caller can catch one module's failures or all of
Kaizen's, and a handler can tell a message that can never succeed (``InvalidMessage``) from a failure
that may pass on a retry.
"""


class KaizenError(Exception):
    """Base of Kaizen's own errors."""


class InvalidMessage(KaizenError):
    """A message that can never be processed as it is (bad schema, unknown project): dead-letter it now."""
