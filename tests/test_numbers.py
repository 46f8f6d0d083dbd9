"""The compiled number parser: the same doubles as float(), every token accounted for."""

from __future__ import annotations

import numpy as np
import pytest

from mmfc.data.numbers import FloatParser, NotANumber, parse_integers


def parse(text: bytes) -> tuple[np.ndarray, np.ndarray]:
    values, starts = FloatParser().parse(text)
    return values.copy(), starts.copy()


def test_random_numbers_in_many_formats_equal_float():
    rng = np.random.default_rng(0)
    numbers = np.concatenate([
        rng.normal(size=3000) * 10.0 ** rng.integers(-30, 30, size=3000),
        rng.integers(-(10**18), 10**18, size=500).astype(float),
        [0.0, -0.0, 1e-300, 5e-324, 1.7976931348623157e308, 9007199254740993.0],
    ])
    formats = ["{:.7g}", "{:.17g}", "{:.3f}", "{:e}", "{:.12E}", "{!r}"]
    tokens = [fmt.format(float(v)) for v in numbers for fmt in formats]
    tokens += ["+1.5", "007", ".5", "5.", "-.25", "1e5", "1E+05", "2e-3", "123456789012345678",
               "1234567890123456789012", "0.1234567890123456789", "nan", "-inf", "Infinity"]
    values, _ = parse(" ".join(tokens).encode())
    expected = np.array([float(t) for t in tokens])
    np.testing.assert_array_equal(values, expected)  # bit-exact, NaN where float() gives NaN
    assert np.array_equal(np.signbit(values), np.signbit(expected))


def test_any_ascii_whitespace_separates_and_offsets_point_at_tokens():
    text = b"  1\t-2.5\r\n3e2\x0b\x0c4\n\n 0.125  "
    values, starts = parse(text)
    np.testing.assert_array_equal(values, [1, -2.5, 300, 4, 0.125])
    assert [text[s : s + 1] for s in starts] == [b"1", b"-", b"3", b"4", b"0"]


def test_empty_and_blank_buffers():
    for text in (b"", b" \r\n\t"):
        values, starts = parse(text)
        assert values.size == 0 and starts.size == 0


@pytest.mark.parametrize("token", [b"abc", b"1.2.3", b"1e", b"-", b".", b"1,5", b"12\x0034", b"0x1A", b"--1"])
def test_a_token_that_is_no_number_is_named_with_its_offset(token: bytes):
    text = b"1 2\n" + token + b" 4\n"
    with pytest.raises(NotANumber) as info:
        FloatParser().parse(text)
    assert info.value.offset == 4 and info.value.token == token
    assert repr(token.decode("latin-1")) in str(info.value)


def test_the_parser_reuses_its_arrays():
    parser = FloatParser()
    big, _ = parser.parse(b" ".join(b"%d" % i for i in range(1000)))
    small, starts = parser.parse(b"7 8")
    np.testing.assert_array_equal(small, [7, 8])
    np.testing.assert_array_equal(starts, [0, 2])
    assert np.shares_memory(big, small)  # the documented contract: views, valid until the next call


def test_integers_are_exact_beyond_float64():
    text = b"72057594037931101 -72057594037931103 12 999999999999999999"
    _, starts = parse(text)
    integers = parse_integers(text, starts)
    assert integers.tolist() == [72057594037931101, -72057594037931103, 12, 999999999999999999]


@pytest.mark.parametrize("token", [b"1.5", b"1e3", b"1234567890123456789", b"7x"])
def test_a_token_that_is_no_integer_is_named(token: bytes):
    text = b"5 " + token
    with pytest.raises(NotANumber) as info:
        parse_integers(text, np.array([0, 2]))
    assert info.value.offset == 2 and info.value.token == token
