"""Whitespace-separated decimal numbers in a byte buffer, converted in one compiled pass.

NTU's .skeleton files are nothing but such numbers (about 32,000 per file), so their parse
speed is this loop's speed. numba compiles it to machine code at first use (cached on disk
afterwards); in numpy and Arrow the same work takes several passes over the bytes and stays
slower (bench/bench_parse.py; docs/decisions.md, "Data sources").

Conversion is exact, the very double that Python's float() returns: an integer of up to 18
digits is one correctly rounded int64-to-float64 conversion; a decimal whose digits read as an
integer below 2**53, scaled by a power of ten within 1e+-22, is one correctly rounded IEEE
multiplication or division (Clinger's fast path). Anything else (more digits, a far exponent,
"nan", or a token that is no number at all) is left to float() in Python; NTU files have none.
(The NTU reader then refuses every value that is not a finite float32: mmfc/data/ntu.py.)
Body IDs (17 digits, beyond float64's exact integers) are read exactly by `parse_integers`.
"""

from __future__ import annotations

import re

import numba
import numpy as np

# ASCII whitespace, as bytes.split() sees it: space \t \n \v \f \r.
_SPACE, _TAB, _CR = 32, 9, 13
_MAX_EXACT_MANTISSA = 2**53
_MAX_DIGITS = 18  # int64 holds any 18 decimal digits
_POWERS_OF_TEN = np.array([10.0**k for k in range(23)])  # every one of them exact in float64
_TOKEN = re.compile(rb"\S+")  # in a bytes pattern \s is exactly the ASCII whitespace above


class NotANumber(ValueError):
    """A token that float() refuses; `offset` is where it starts in the buffer."""

    def __init__(self, token: bytes, offset: int):
        super().__init__(f"non-numeric value {token.decode('latin-1')!r}")
        self.token, self.offset = token, offset


class FloatParser:
    """Parses buffers into arrays that it keeps and reuses from call to call.

    Reuse matters: on a virtual machine the page faults of freshly allocated output arrays
    cost as much as the parse itself (bench/bench_parse.py). One parser per thread.
    """

    def __init__(self) -> None:
        self._values = np.empty(0, dtype=np.float64)
        self._starts = np.empty(0, dtype=np.int64)

    def parse(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        """Every number in `data` as float64, and the byte offset where each starts.

        Both are views into this parser's arrays, valid until its next call. Raises
        NotANumber for the first token that is not a number.
        """
        buf = np.frombuffer(data, dtype=np.uint8)
        capacity = (len(buf) + 1) // 2  # one-byte numbers with one separator each
        if len(self._values) < capacity:
            self._values = np.empty(capacity, dtype=np.float64)
            self._starts = np.empty(capacity, dtype=np.int64)
        count, num_slow = _parse_floats(buf, self._values, self._starts, _POWERS_OF_TEN)
        values, starts = self._values[:count], self._starts[:count]
        if num_slow:
            _convert_slow_tokens(data, values, starts)
        return values, starts


def parse_integers(data: bytes, starts: np.ndarray) -> np.ndarray:
    """The tokens starting at `starts` as exact int64 (for values beyond float64's 2**53).

    Raises NotANumber for a token that is not an integer of at most 18 digits.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    integers = np.empty(len(starts), dtype=np.int64)
    bad = _parse_integers(buf, np.ascontiguousarray(starts, dtype=np.int64), integers)
    if bad >= 0:
        offset = int(starts[bad])
        raise NotANumber(token_at(data, offset), offset)
    return integers


def _convert_slow_tokens(data: bytes, values: np.ndarray, starts: np.ndarray) -> None:
    """float() for the tokens the compiled pass left out (their start is stored as -1 - start)."""
    for index in np.flatnonzero(starts < 0):
        offset = -1 - int(starts[index])
        token = token_at(data, offset)
        try:
            values[index] = float(token)
        except ValueError:
            raise NotANumber(token, offset) from None
        starts[index] = offset


def token_at(data: bytes, offset: int) -> bytes:
    return _TOKEN.match(data, offset).group()


@numba.njit(cache=True, nogil=True)
def _is_space(byte):
    return byte == _SPACE or _TAB <= byte <= _CR


@numba.njit(cache=True, nogil=True)
def _parse_floats(buf, values, starts, powers_of_ten):
    """Fills values/starts; returns (token count, tokens left to float())."""
    n = buf.size
    count = 0
    num_slow = 0
    i = 0
    while True:
        while i < n and _is_space(buf[i]):
            i += 1
        if i >= n:
            return count, num_slow
        start = i
        negative = buf[i] == 45  # '-'
        if negative or buf[i] == 43:  # '+'
            i += 1
        # All digits as one integer (exact up to 18 of them), and the power of ten that scales it.
        mantissa = 0
        num_digits = 0
        exponent = 0
        while i < n and 48 <= buf[i] <= 57:
            if num_digits < _MAX_DIGITS:
                mantissa = mantissa * 10 + (buf[i] - 48)
            num_digits += 1
            i += 1
        if i < n and buf[i] == 46:  # '.'
            i += 1
            while i < n and 48 <= buf[i] <= 57:
                if num_digits < _MAX_DIGITS:
                    mantissa = mantissa * 10 + (buf[i] - 48)
                    exponent -= 1
                num_digits += 1
                i += 1
        well_formed = num_digits > 0
        if well_formed and i < n and (buf[i] == 101 or buf[i] == 69):  # 'e' 'E'
            i += 1
            negative_exponent = i < n and buf[i] == 45
            if i < n and (buf[i] == 45 or buf[i] == 43):
                i += 1
            written = 0
            num_exponent_digits = 0
            while i < n and 48 <= buf[i] <= 57:
                if written < 10_000:
                    written = written * 10 + (buf[i] - 48)
                num_exponent_digits += 1
                i += 1
            well_formed = num_exponent_digits > 0
            exponent += -written if negative_exponent else written
        exact = num_digits <= _MAX_DIGITS and (i >= n or _is_space(buf[i])) and well_formed
        if exact and exponent == 0:  # an integer: int64 to float64 rounds correctly
            values[count] = -float(mantissa) if negative else float(mantissa)
            starts[count] = start
        elif exact and mantissa < _MAX_EXACT_MANTISSA and -22 <= exponent <= 22:
            value = float(mantissa)
            value = value * powers_of_ten[exponent] if exponent >= 0 else value / powers_of_ten[-exponent]
            values[count] = -value if negative else value
            starts[count] = start
        else:
            while i < n and not _is_space(buf[i]):
                i += 1
            values[count] = np.nan
            starts[count] = -1 - start
            num_slow += 1
        count += 1


@numba.njit(cache=True, nogil=True)
def _parse_integers(buf, starts, integers):
    """Fills integers; returns the index of the first token that is no integer, or -1."""
    n = buf.size
    for index in range(starts.size):
        i = starts[index]
        negative = i < n and buf[i] == 45
        if negative:
            i += 1
        value = 0
        num_digits = 0
        while i < n and 48 <= buf[i] <= 57:
            if num_digits < 18:  # int64 holds any 18 digits
                value = value * 10 + (buf[i] - 48)
            num_digits += 1
            i += 1
        if num_digits == 0 or num_digits > 18 or (i < n and not _is_space(buf[i])):
            return index
        integers[index] = -value if negative else value
    return -1
