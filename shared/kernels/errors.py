"""What the kernel backends raise: one base, so a caller can catch every kernel failure at once."""

from __future__ import annotations

from shared.errors import KaizenError


class KernelError(KaizenError):
    """Base of the kernel client's and backends' errors."""


class KernelInputError(KernelError, ValueError):
    """The input can never succeed (INVALID_ARGUMENT); the message starts with the field at fault."""


class KernelUnavailableError(KernelError):
    """The kernel service could not be reached, after the configured retries."""


class KernelTimeoutError(KernelError):
    """A call ran past its deadline."""
