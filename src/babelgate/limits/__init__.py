"""Per-key limits: requests and tokens per minute, concurrent requests, budgets in USD.

`Limiter` (limiter.py) is the one object the server talks to: `admit` before a request's
first attempt, `Permit.charge` as each attempt is recorded, `finish` when the request or its
stream ends. It keeps the counts in this process (memory.py) or, with `redis:`, in Redis
(redis_store.py) where every instance sees the same ones.
"""

from .limiter import Limiter
from .permit import Limited, Permit, Refusal

__all__ = ["Limited", "Limiter", "Permit", "Refusal"]
