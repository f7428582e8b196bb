"""Sizes and durations as people write and read them: one parser and one printer each, for the engine's
printers and the console alike."""

from __future__ import annotations

from pydantic import ByteSize, TypeAdapter, ValidationError

_BYTE_SIZE = TypeAdapter(ByteSize)


def parse_size(value: int | float | str | None) -> int | None:
    """'500MB', '2 GiB', 1e9, '1e9' -> bytes (pydantic's ByteSize: decimal and binary units); None stays None."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    try:
        return int(_BYTE_SIZE.validate_python(str(value).strip()))
    except ValidationError:
        try:
            return int(float(str(value)))  # a plain number in exponent form: '1e9'
        except ValueError:
            raise ValueError(f"not a size: {value!r}") from None


def format_size(n: float | None) -> str:
    """Bytes in decimal units, one decimal: '12.8 KB', '185.2 MB'; '-' when unknown."""
    if n is None:
        return "-"
    return ByteSize(int(n)).human_readable(decimal=True, separator=" ")


def duration(seconds: float | None) -> str:
    """A compact duration: '4.2s', '42s', '12m05s', '3h04m'; '-' when unknown."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
