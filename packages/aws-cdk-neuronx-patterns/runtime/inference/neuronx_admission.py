"""Admission to the running batch (continuous batching): which request may wait for a slot, which is refused at once,
and the refusal a client can retry on.

What the worker can know (TorchServe 0.11.0's sources, v0.11.0 tag):
- Not when the frontend received a request: a job's receipt time (job/Job.java `begin`, System.nanoTime()) stays in
  the frontend; the worker gets the request id, the HTTP headers and the body only (util/codec/ModelRequestEncoder
  encodeRequest; ts/protocol/otf_message_handler.py _retrieve_request). Neither TorchServe nor SageMaker adds a
  time header.
- Every job the frontend holds, at every step: under continuous batching (wlm/ContinuousBatching.java getRequest)
  each step polls the queue without waiting for up to batchSize minus the jobs it holds, and sends them all. So with
  batchSize well above the slots (continuousBatching.jobsBeyondSlots) a request reaches the handler at the next step
  after it arrives (one decoding step, about 0.1 s), and the moment the handler first sees it stands for its receipt.
  Only while the frontend holds batchSize jobs does a request wait in TorchServe's queue unseen.
- TorchServe's queue: `job_queue_size` (default 100, model config `jobQueueSize`) jobs; past it the frontend answers
  503 at once (util/ApiUtils.java addRESTInferenceJob: ServiceUnavailableException, "Model ... has no worker to
  serve inference request"), without Retry-After.
- TorchServe's own client timeout (model config `clientTimeoutInMills`, wlm/Model.java pollInferJob) drops an expired
  job without answering it: its client waits until its own timeout. Not used: nothing may be lost silently.

So the handler refuses with the same status the frontend uses when it cannot take a job, 503 (RFC 9110 15.6.4: the
server is temporarily overloaded; Retry-After says when to come back), with a Retry-After header and the seconds in
the body, since SageMaker does not pass a model's headers on: InvokeEndpoint answers a container's 4xx/5xx as
ModelError with OriginalStatusCode and OriginalMessage (the body), which boto3 and the AWS SDK for JavaScript v3
surface as they are. One status to retry on covers both refusals.

The rule: a request starts at the next step when a slot is free for it; otherwise it may wait when at most `slots`
requests wait ahead of it for a slot release and its expected wait, (its place in the line) x (the mean time a
sequence holds its slot) / slots, is within half its time limit; anything else is refused at once. The mean is
measured (an exponential moving average of the sequences that ended), starting from the time limit (the pessimistic
bound: every sequence runs until it is cut). A request that still waits when its deadline passes (the estimate was
wrong) is refused then, within its deadline, never started late.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

OVERLOADED = 503
"""The refusal's status: what TorchServe 0.11.0's frontend answers when its queue is full (see above)."""
RETRY_AFTER = "Retry-After"
MAX_WAIT_SHARE = 0.5
"""At most this share of a request's time limit is spent waiting for a slot (the expected wait), so that an admitted
request keeps at least the other half to generate."""
MEAN_RUN_WEIGHT = 0.1
"""Weight of the newest ended sequence in the mean time a sequence holds its slot: about the last 10 count."""
DRAIN_RETRY_AFTER = 5
"""Retry-After while draining (SIGTERM): the instance is going away; a retry reaches another one through SageMaker."""


@dataclass(frozen=True)
class Refusal:
    retry_after: int
    """Whole seconds (RFC 9110 Retry-After delay-seconds)."""
    reason: str

    @property
    def message(self) -> str:
        return f"overloaded: {self.reason}; retry after {self.retry_after} s"


class Admission:
    """The admission rule above, for `slots` KV cache rows and requests that each may take `time_limit` seconds from
    when the handler first sees them to their answer."""

    def __init__(self, slots: int, time_limit: float):
        self.slots, self.time_limit = slots, time_limit
        self.max_wait = time_limit * MAX_WAIT_SHARE
        self.mean_run = time_limit
        self.draining = False

    def ran(self, seconds: float) -> None:
        """A sequence held its slot this long (it ended): the mean follows."""
        self.mean_run += MEAN_RUN_WEIGHT * (max(seconds, 0.0) - self.mean_run)

    @property
    def release_interval(self) -> float:
        """Expected seconds between two slot releases while every slot is busy."""
        return self.mean_run / self.slots

    def refuse(self, running: int, waiting: int) -> Refusal | None:
        """None when a new request may join the line (`running` sequences hold slots, `waiting` wait for one);
        otherwise why not and when to retry."""
        if self.draining:
            return Refusal(DRAIN_RETRY_AFTER, "the endpoint is shutting down")
        free = self.slots - running
        if waiting < free:
            return None
        ahead = waiting - free
        """Requests that wait for a slot release before this one could start."""
        if ahead < self.slots and (ahead + 1) * self.release_interval <= self.max_wait:
            return None
        return Refusal(self.retry_after(), f"{waiting} requests wait for the {self.slots} slots")

    def retry_after(self) -> int:
        """When the line will likely have room again: about one slot release, at least 1 s."""
        return max(1, min(math.ceil(self.release_interval), math.ceil(self.max_wait)))
