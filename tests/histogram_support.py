"""What the Prometheus histogram must hold for a snapshot's ``latency_buckets``, written
out from the documented rule: each log bucket is counted whole under the first bound at
or above its midpoint."""

from __future__ import annotations

from collections.abc import Sequence

from codex_tools._metrics import bucket_index, bucket_value


def midpoint_s(bound_ms: float) -> float:
    """The value a snapshot reports for the bucket that ``bound_ms`` closes, in seconds."""
    return bucket_value(bucket_index(round(bound_ms * 1e6))) / 1e9


def under(buckets: Sequence[Sequence[float]], bound_s: float) -> int:
    """The count of ``le=bound_s``."""
    return sum(int(n) for bound_ms, n in buckets if midpoint_s(bound_ms) <= bound_s)
