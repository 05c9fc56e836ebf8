"""resource.Quantity: parsing to exact numbers and printing as Kubernetes does (Quantity.String()).

The one parser of quantities: the registry (pod resources, PVC sizes, LimitRange, ResourceQuota),
the scheduler (requests that fit a node), the controllers and the node agent (resourceFieldRef,
emptyDir sizeLimit, CRI limits). Numbers are Fractions, so 100m + 900m is exactly 1.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

_RE = re.compile(r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))([eE][+-]?[0-9]+|[a-zA-Z]*)")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": Fraction(1),
            "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
            "P": Fraction(10**15), "E": Fraction(10**18)}
_DECIMAL_ORDER = ["n", "u", "m", "", "k", "M", "G", "T", "P", "E"]


def parse(value: Any) -> Fraction | None:
    """The exact value of a quantity ("500m", "128Mi", "1e3", 2), or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(value).limit_denominator(10**9)
    if not isinstance(value, str):
        return None
    m = _RE.fullmatch(value.strip())
    if m is None:
        return None
    number, suffix = m.groups()
    base = Fraction(number)
    if suffix in _BINARY:
        return base * _BINARY[suffix]
    if suffix in _DECIMAL:
        return base * _DECIMAL[suffix]
    if re.fullmatch(r"[eE][+-]?[0-9]+", suffix):
        exponent = int(suffix[1:])
        return base * Fraction(10) ** exponent if abs(exponent) < 1000 else None
    return None


def is_binary(value: Any) -> bool:
    """Whether a quantity is written with a binary suffix (Ki, Mi, ...): it then prints as one."""
    return isinstance(value, str) and value.strip()[-2:] in _BINARY


def fmt(value: Fraction, binary: bool = False) -> str:
    """Canonical text of a quantity, as Quantity.String(): the largest suffix that keeps an
    integer mantissa (1000 → 1k, 0.5 → 500m, 1073741824 with binary → 1Gi). Values finer than
    a nano are rounded up, as Kubernetes does."""
    if value < 0:
        return "-" + fmt(-value, binary)
    if value == 0:
        return "0"
    if binary and value.denominator == 1 and value >= 1024:
        for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
            if value % _BINARY[suffix] == 0:
                return f"{value // _BINARY[suffix]}{suffix}"
    if binary and value.denominator == 1:
        return str(value.numerator)
    nanos = -(-value * 10**9 // 1)  # ceil to whole nanos
    for suffix in reversed(_DECIMAL_ORDER):
        unit = _DECIMAL[suffix] * 10**9
        if nanos % unit == 0:
            return f"{nanos // unit}{suffix}"
    return f"{nanos}n"


def milli(value: Any) -> int:
    """A quantity in thousandths, rounded up (Quantity.MilliValue); 0 when it is not one."""
    q = parse(value)
    return 0 if q is None else int(-(-q * 1000 // 1))


def whole(value: Any) -> int:
    """A quantity as an integer, rounded up (Quantity.Value); 0 when it is not one."""
    q = parse(value)
    return 0 if q is None else int(-(-q // 1))
