"""One-line reasons for errors raised deep inside other code (the unpickler of a file
that is not ``torch.save``'s raises ``KeyError: 101``, ``IndexError``, ...), for the
trainer's one-line messages."""

from __future__ import annotations

__all__ = ["error_reason"]


def error_reason(error: BaseException) -> str:
    """``error`` as ``Type: first line`` (``Type`` alone when it has no message).

    Args:
        error: any exception.

    Returns:
        One line.

    Example:
        >>> error_reason(KeyError(101)), error_reason(ValueError("bad\\nmore"))
        ('KeyError: 101', 'ValueError: bad')
        >>> error_reason(EOFError())
        'EOFError'
    """
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
