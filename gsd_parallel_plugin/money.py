"""Money as integer nano-USD: one place for both conversions from USD.

Costs are summed and compared in integers (``sum([0.01] * 1000) != 10.0`` in floats). Two
contracts, two names:

- :func:`usd_to_nanos` converts an amount we were given on purpose (a preference, a
  ``--budget``, a host's :func:`~gsd_parallel_plugin.run.budget.report_cost`): any number or
  numeric string; garbage raises.
- :func:`cost_to_nanos` reads a cost out of GSD's NDJSON output: anything that is not a
  finite number >= 0 is None (a malformed line costs nothing, it never stops the read).

Both go through the shortest decimal ``repr`` of a float, so ``0.0087`` is exactly 8_700_000.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

NANOS_PER_USD = 1_000_000_000


def usd_to_nanos(usd: float | Decimal | str | int) -> int:
    """USD amount -> integer nano-USD, using the decimal that ``repr`` shows for floats."""
    value = Decimal(repr(usd)) if isinstance(usd, float) else Decimal(usd)
    return int(value.scaleb(9).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def cost_to_nanos(value: Any) -> int | None:
    """A JSON cost in USD as integer nano-USD; None for anything that is not a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value < 0:
        return None
    try:
        nanos = (Decimal(repr(value)) * NANOS_PER_USD).to_integral_value(ROUND_HALF_EVEN)
    except InvalidOperation:
        return None
    return int(nanos)


def nanos_to_usd(nanos: int | None) -> float | None:
    """Integer nano-USD -> float USD (correctly rounded: 10**10 nanos is exactly 10.0)."""
    return None if nanos is None else nanos / NANOS_PER_USD
