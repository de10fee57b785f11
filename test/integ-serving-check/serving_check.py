"""The integ test's check of a deployed endpoint, run as a Lambda function (python3.12's boto3) beside it: a full
batch at once (workers x batch size requests), each answered with text; and a streamed answer (JSON Lines, the
runtime's contract.json endpoint.streaming) whose pieces add up to the last line's generated_text, its first line
coming well before the last. Anything else raises, naming what went wrong."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Iterator

QUESTION = "AIによって私たちの暮らしはどのように変わりますか？"
BATCH_TOKENS = 32
STREAM_TOKENS = 128
FIRST_LINE_SHARE = 0.5  # of the streamed answer's time (128 tokens: about 10 s; the first piece: under 1 s)


def request_body(max_new_tokens: int, stream: bool) -> bytes:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": QUESTION}], "max_new_tokens": max_new_tokens}
    if stream:
        body["stream"] = True
    return json.dumps(body, ensure_ascii=False).encode()


def ask(client: Any, endpoint: str) -> dict[str, Any]:
    response = client.invoke_endpoint(EndpointName=endpoint, ContentType="application/json", Accept="application/json",
                                      Body=request_body(BATCH_TOKENS, stream=False))
    answer = json.loads(response["Body"].read())
    if not answer.get("generated_text"):
        raise AssertionError(f"an answer without text: {answer}")
    return answer


def lines(events: Iterable[dict[str, Any]]) -> Iterator[tuple[float, dict[str, Any]]]:
    """The lines with when each was complete: a line may come in pieces, several in one part."""
    buffered = b""
    for event in events:
        if "PayloadPart" not in event:  # ModelStreamError or InternalStreamFailure
            raise AssertionError(f"the stream failed: {event}")
        buffered += event["PayloadPart"]["Bytes"]
        *complete, buffered = buffered.split(b"\n")
        for line in complete:
            yield time.monotonic(), json.loads(line)
    if buffered:
        raise AssertionError(f"the stream ended inside a line: {buffered[:200]!r}")


def stream(client: Any, endpoint: str) -> dict[str, Any]:
    sent = time.monotonic()
    response = client.invoke_endpoint_with_response_stream(
        EndpointName=endpoint, ContentType="application/json", Accept="application/jsonlines",
        Body=request_body(STREAM_TOKENS, stream=True))
    received = list(lines(response["Body"]))
    if not received:
        raise AssertionError("the stream had no line")
    last = received[-1][1]
    if "error" in last:
        raise AssertionError(f"the stream ended with an error: {last['error']}")
    if "finish_reason" not in last:
        raise AssertionError(f"the last line is not an answer: {last}")
    text = "".join(message["text"] for _, message in received)
    if text != last["generated_text"]:
        raise AssertionError(f"the pieces add up to {text!r}, the answer is {last['generated_text']!r}")
    first_at, last_at = received[0][0] - sent, received[-1][0] - sent
    if len(received) < 2 or first_at > FIRST_LINE_SHARE * last_at:
        raise AssertionError(f"not streamed: {len(received)} line(s), the first after {first_at:.1f} s of {last_at:.1f} s")
    return last


def handler(event: Any, context: Any, client: Any = None) -> str:
    if client is None:
        import boto3
        from botocore.config import Config

        # One attempt each: a retried request would hide the failure this is here to see.
        client = boto3.client("sagemaker-runtime", config=Config(read_timeout=70, retries={"total_max_attempts": 1}))
    endpoint, at_once = os.environ["ENDPOINT_NAME"], int(os.environ["REQUESTS_AT_ONCE"])
    with ThreadPoolExecutor(at_once) as pool:
        answers = list(pool.map(lambda _: ask(client, endpoint), range(at_once)))
    streamed = stream(client, endpoint)
    print(json.dumps({"answeredAtOnce": len(answers), "streamed": streamed["usage"]}))
    return "ok"
