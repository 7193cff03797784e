"""The sliding-window counter both stores use for requests and tokens per minute.

Time is cut into fixed windows of `WINDOW` seconds, numbered `int(now // WINDOW)`. What the
last minute holds is estimated as the current window's count plus the previous window's
count weighted by the part of it still inside the last 60 s:

    used = previous * (1 - elapsed / WINDOW) + current

A request of `n` (1 for requests, its token estimate for tokens) is admitted when
`used + n <= limit`. This is exact in the first window (a key of 10 requests/minute gets 10,
not 11) and never lets through more than the limit in any window; it smooths the boundary
between windows instead of allowing a double burst there. The stores keep two integers per
window and key, so every check is O(1).
"""

from __future__ import annotations

import math

WINDOW = 60.0


def retry_after(current: float, previous: float, elapsed: float, n: float,
                limit: float) -> float:
    """Seconds until `n` more would fit (whole seconds, at least 1), assuming nothing else
    arrives meanwhile."""
    room = limit - n - current
    if room >= 0 and previous > 0:
        # Within this window: when the previous one's weight has shrunk enough.
        wait = (1.0 - room / previous) * WINDOW - elapsed
    else:
        # After this window ends, the current count becomes the previous one.
        wait = WINDOW - elapsed
        if current > 0 and limit - n < current:
            wait += max(0.0, 1.0 - max(0.0, limit - n) / current) * WINDOW
    return float(max(1, math.ceil(wait)))
