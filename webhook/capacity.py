"""How busy the webhook is, and when a review is refused at once instead of queued.

Past capacity, a queued review only reaches the API server's timeout (and delays every review
behind it), so the excess is refused unread (HTTP 429) while the rest is answered in time. Two
signals, because reviews queue in two places: inside the handlers (awaiting OPA or the audit
store: `in_flight`) and before them, in the event loop, when the CPU is the limit (`lag`: how
late timers fire, timer after timer; a review arriving now waits a few times that before it is
decided, which is why the threshold is small).
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("kube_intent.capacity")

LAG_INTERVAL_SECONDS = 0.05
# Per interval, the lag kept falls to this share of what it was (unless measured higher): one
# on-time timer amid a backlog does not declare the backlog gone.
LAG_DECAY = 0.8


class Capacity:
    def __init__(self, max_in_flight: int, max_lag_seconds: float) -> None:
        self.max_in_flight = max_in_flight
        self.max_lag_seconds = max_lag_seconds
        self.in_flight = 0
        self.lag = 0.0
        self._last_late = 0.0
        # Refusals in the current episode: logged when it starts and when it ends, not once
        # per refusal (an overloaded webhook must not also flood its log).
        self.refused = 0

    def full(self, share: int = 1) -> bool:
        """Whether a review with `share` times the room (a /validate: pods already mutated are
        finished first) must be refused now."""
        return (
            self.in_flight >= self.max_in_flight * share or self.lag > self.max_lag_seconds * share
        )

    def refuse(self) -> None:
        if self.refused == 0:
            log.warning(
                "at capacity: refusing admission reviews",
                extra={"fields": {"inFlight": self.in_flight, "lagSeconds": round(self.lag, 3)}},
            )
        self.refused += 1

    def admit(self) -> None:
        if self.refused and not self.full():
            log.warning("below capacity again", extra={"fields": {"refused": self.refused}})
            self.refused = 0
        self.in_flight += 1

    def done(self) -> None:
        self.in_flight -= 1

    async def watch(self, interval: float = LAG_INTERVAL_SECONDS) -> None:
        """Measure the event loop's lag until cancelled (run for the app's lifetime)."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(interval)
            late = max(0.0, loop.time() - started - interval)
            self.lag = max(self.sustained(late), self.lag * LAG_DECAY)

    def sustained(self, late: float) -> float:
        """How late timers have been at least, this time and the time before: a backlog keeps
        every timer late, while one stall (the process descheduled for a while, a CPU limit's
        throttled period) is one late timer that must not refuse reviews by itself."""
        sustained = min(late, self._last_late)
        self._last_late = late
        return sustained
