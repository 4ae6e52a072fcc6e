"""Signed webhook delivery (``realtime.call.incoming``), as the cloud signs and retries them.

A delivery is a ``POST`` of the event's JSON to each configured URL with the Standard
Webhooks headers the official SDK verifies (``client.webhooks.unwrap(body, headers,
secret="whsec_…")``): ``webhook-id`` (the event id, the same on every retry, so receivers
can drop duplicates), ``webhook-timestamp`` (unix seconds, fresh on every attempt) and
``webhook-signature`` (``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body`` under the
secret; signed by the ``standardwebhooks`` library).

A URL counts as delivered on any ``2xx``. Anything else — a refused connection, a timeout,
a ``4xx``/``5xx`` — is retried with exponential backoff (0.5 s, doubling, at most
``max_backoff_s``) until ``deadline`` (the call's answer timeout: after it nobody can act
on the event anymore). The secret is never logged.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable, Sequence

import httpx
from standardwebhooks.webhooks import Webhook

log = logging.getLogger("rtgate.webhooks")

FIRST_BACKOFF_S = 0.5
ATTEMPT_TIMEOUT_S = 5.0


def signed_headers(secret: str, webhook_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt to deliver ``body``."""
    stamp = datetime.datetime.fromtimestamp(time.time() if now is None else now, datetime.UTC)
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, stamp, body),
        "user-agent": "rtgate-webhooks/1",
    }


def check_secret(secret: str) -> None:
    """Raise ``ValueError`` unless ``secret`` is a usable ``whsec_…`` secret."""
    try:
        Webhook(secret)
    except Exception:
        raise ValueError("webhook_secret: expected a 'whsec_' secret with a base64 key, as the "
                         "cloud issues them") from None


async def deliver(
    client: httpx.AsyncClient,
    urls: Sequence[str],
    webhook_id: str,
    body: bytes,
    secret: str,
    *,
    deadline: float,
    max_backoff_s: float = 8.0,
    settled: Callable[[], bool] = lambda: False,
) -> int:
    """Deliver ``body`` to every URL (concurrently), retrying each until it answers ``2xx``,
    ``deadline`` (``time.monotonic()``) passes, or ``settled()`` says nobody needs it anymore
    (the call was decided: no new attempts, but a request under way is not cut off — its
    receiver may be the one accepting). Returns how many URLs got it."""
    results = await asyncio.gather(*(
        _deliver_one(client, url, webhook_id, body, secret, deadline, max_backoff_s, settled)
        for url in urls
    ))
    return sum(results)


async def _deliver_one(client: httpx.AsyncClient, url: str, webhook_id: str, body: bytes,
                       secret: str, deadline: float, max_backoff_s: float,
                       settled: Callable[[], bool]) -> bool:
    backoff = FIRST_BACKOFF_S
    attempt = 0
    while True:
        attempt += 1
        left = deadline - time.monotonic()
        if settled():
            return False
        if left <= 0:
            log.warning("webhook %s to %s not delivered after %d attempts", webhook_id, url,
                        attempt - 1)
            return False
        try:
            response = await client.post(url, content=body,
                                         headers=signed_headers(secret, webhook_id, body),
                                         timeout=min(ATTEMPT_TIMEOUT_S, left))
            if 200 <= response.status_code < 300:
                log.info("webhook %s delivered to %s (attempt %d)", webhook_id, url, attempt)
                return True
            reason = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
        log.info("webhook %s to %s failed (%s); retrying in %.1f s", webhook_id, url, reason, backoff)
        # Backoff between attempts (a retry schedule, not event ordering).
        await asyncio.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
        backoff = min(backoff * 2, max_backoff_s)
