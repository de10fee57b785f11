"""Serving benchmark: batch 1 against batched, on the image's real TorchServe 0.11.0 and toolkit 2.0.25 with the
simulated Neuron device (fake_neuron/neuron_device.py: a decoding step costs a fixed part plus a part per sequence of
the compiled batch, calibrated from published Inferentia2 figures; see its comments for the arithmetic).

`npx projen benchmark:serving` (or: tools/model-server/.venv/bin/python tools/model-server/benchmark_serving.py).
Needs the example's synthesized templates (`npx projen synth:example`) and ports 8080/8081 free; about 6 minutes.

For each preset (its template: workers, NeuronCores, tp degree and weights, hence the time per step) and workload it
starts the endpoint twice: compiled for batch 1 (serving_stack.with_static_batching), and batched as the template
has it (both presets: continuous batching over their slots, scheduled at the decoding step) or, with --batching
static, with TorchServe's dynamic batching at the template's batch size or --batch-size (static batches, as the
constructs configure a strategy without continuousBatching). Closed-loop clients are added 1, 4, 8, 16
at a time (no level waits for the queue of the one before to drain); each level runs LEVEL_SECONDS and is measured
after WARMUP_SECONDS (both stretched at a slower time scale). Each client sends chat requests one after another: its prompt length is drawn once from the
workload's input distribution and each request's max_new_tokens from its output distribution; the fake model answers
until max_new_tokens. The default run has two workloads: llmperf's (the example run of ray-project/llmperf's README:
--mean-input-tokens 550 --stddev-input-tokens 150 --mean-output-tokens 150 --stddev-output-tokens 10) and a chat
workload whose answer lengths spread as chat answers do (exponential, mean 150, capped at 400: issue 20); the
--output-* and --input-* flags give one workload of one's own instead.

What is measured: generated tokens per second of the whole instance, counted by when each token came out of the device
within the level's window; time to first token (request sent -> its first token out of the device) and time per output
token (first -> last token of the request, over the tokens between) at p50 and p95. Without streaming a client sees
only the whole answer, so the token times come from the simulated device's record of each model call
(neuron_device.record_generation), matched to the client's request by its prompt length (distinct per client) and
time. The device runs TIME_SCALE times its calibrated time per step to keep the run short (the TorchServe batch delay
is scaled with it); the figures printed are converted back to the calibrated scale. Throughput ratios do not depend on the scale.
The time to first token the verdict compares (`ttft_ratio_at_1`) is measured apart (probe_ttft): a lone client's
requests with the device at its calibrated speed, since the host's own time is not scaled.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from conftest import wait_until  # first: serving_stack puts the runtime's tests (and conftest) on the path
import serving_stack

PRESETS = ("lowCost", "highPerformance")
CONCURRENCY = (1, 4, 8, 16)
TARGETS = {"lowCost": 8, "highPerformance": 16}
"""The concurrency at which each preset's batched throughput is judged (issue 13's done-when): 2.5x batch 1's."""
TARGET_RATIO = 2.5
TTFT_LIMIT_AT_1 = 1.2
LEVEL_SECONDS = 16.0
WARMUP_SECONDS = 5.0
"""Each level's run and warm-up on the host's clock at DEFAULT_TIME_SCALE; at another scale both are stretched by
TIME_SCALE / DEFAULT_TIME_SCALE (level_seconds), so that a level spans the same device time and holds as many answers."""
DEFAULT_TIME_SCALE = 0.25
TIME_SCALE = DEFAULT_TIME_SCALE
LOAD_SECONDS = 1.0
MIN_PROMPT_TOKENS = 32
SEED = 13
PROBE_REQUESTS = 25
PROBE_NEW_TOKENS = 4


@dataclass(frozen=True)
class Workload:
    """How long the clients' prompts and answers are: prompt tokens ~ N(input_mean, input_stddev) once per client,
    each request's max_new_tokens from the output distribution (normal: N(mean, stddev); exponential: mean), at
    least 1 and at most output_cap when set."""

    name: str
    output_distribution: str = "normal"
    output_mean: float = 150
    output_stddev: float = 10
    output_cap: int | None = None
    input_mean: float = 550
    input_stddev: float = 150

    def max_new_tokens(self, rng: random.Random) -> int:
        if self.output_distribution == "exponential":
            drawn = rng.expovariate(1 / self.output_mean)
        else:
            drawn = rng.gauss(self.output_mean, self.output_stddev)
        return min(max(1, round(drawn)), self.longest_answer)

    @property
    def longest_answer(self) -> int:
        """The most new tokens a request asks for (the cap, or 5 standard deviations above a normal mean)."""
        if self.output_cap:
            return self.output_cap
        if self.output_distribution == "exponential":
            return round(self.output_mean * 8)  # e^-8: fewer than 1 request in 2900 asks for more (they are cut)
        return round(self.output_mean + 5 * self.output_stddev)


LLMPERF = Workload("llmperf")
"""ray-project/llmperf README's example run: N(550, 150) prompt tokens, N(150, 10) new tokens."""
CHAT = Workload("chat", "exponential", 150, 0, 400)
"""Chat answers: exponential lengths, mean 150, capped at 400 (issue 20); llmperf's prompts."""
WORKLOADS = (LLMPERF, CHAT)


@dataclass
class Sent:
    client: int
    sent: float
    received: float
    status: int
    prompt_tokens: int = 0
    completion_tokens: int = 0


def chat_body(words: int, max_new_tokens: int) -> bytes:
    return json.dumps(
        {"messages": [{"role": "user", "content": " ".join(["hello"] * words)}], "max_new_tokens": max_new_tokens}
    ).encode()


def client_prompts(rng: random.Random, count: int, n_positions: int, workload: Workload) -> list[int]:
    """Distinct prompt sizes (in words; about one token each), one per client, that leave room for the answer."""
    largest = n_positions - workload.longest_answer - 32  # the template's few tokens around the message
    sizes: list[int] = []
    while len(sizes) < count:
        size = min(largest, max(MIN_PROMPT_TOKENS, round(rng.gauss(workload.input_mean, workload.input_stddev))))
        if size not in sizes:
            sizes.append(size)
    return sizes


def run_clients(server: serving_stack.ModelServer, levels, prompt_words, stop: threading.Event, results: list[Sent], seed: int,
                workload: Workload) -> list[float]:
    """Starts clients level by level (1, then up to 4, 8, 16 in all); returns when each level started."""
    lock = threading.Lock()

    def client(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        while not stop.is_set():
            max_new = workload.max_new_tokens(rng)
            sent = time.time()
            try:
                answer = server.invoke(chat_body(prompt_words[index], max_new), {"Content-Type": "application/json"},
                                       timeout=120)
                while answer.status == 503 and not stop.is_set():
                    # Refused at once (served step by step, more clients than the slots and their line: the runtime
                    # README's admission): back after its Retry-After, as a client would; the wait counts in its TTFT.
                    retry_after = {k.lower(): v for k, v in answer.headers.items()}.get("retry-after", "1")
                    stop.wait(float(retry_after))
                    answer = server.invoke(chat_body(prompt_words[index], max_new),
                                           {"Content-Type": "application/json"}, timeout=120)
                if answer.status == 503:
                    return  # the run ended while it waited to retry
            except OSError:
                return  # the server was stopped under an unfinished request
            record = Sent(index, sent, time.time(), answer.status)
            if answer.status == 200:
                usage = answer.json()["usage"]
                record.prompt_tokens, record.completion_tokens = usage["prompt_tokens"], usage["completion_tokens"]
            with lock:
                results.append(record)

    started, running = [], 0
    for level in levels:
        started.append(time.time())
        for index in range(running, level):
            threading.Thread(target=client, args=(index,), daemon=True).start()
        running = level
        time.sleep(level_seconds(LEVEL_SECONDS))
    return started


def level_seconds(seconds: float) -> float:
    """`seconds` of a level at DEFAULT_TIME_SCALE, on the host's clock at TIME_SCALE: at scale 1 a fixed window held
    too few answers (an exponential answer of mean 150 tokens takes 12 s on lowCost), and no request of a window had
    its first token in it."""
    return seconds * TIME_SCALE / DEFAULT_TIME_SCALE


def token_times(results: list[Sent], generations: list[dict]) -> list[tuple[Sent, list[float]]]:
    """Each answered request with the times its tokens came out of the device. Served step by step, a request's first
    token comes from the encoding of its prompt into a slot, the others from the decode steps of that slot (in the
    same worker) until it answers; the slot's later tokens are another request's."""
    matched = []
    for sent in results:
        if sent.status != 200:
            continue
        calls = [
            call for call in generations
            if sent.prompt_tokens in call["promptTokens"] and sent.sent <= call["started"] <= sent.received
        ]
        if len(calls) != 1:
            raise RuntimeError(f"request of client {sent.client} matches {len(calls)} model calls")
        (call,) = calls
        if "slots" in call:
            (slot,) = call["slots"]
            decodes = [
                other["steps"][0] for other in generations
                if other["pid"] == call["pid"] and not other["promptTokens"] and slot in other["slots"]
                and call["started"] < other["started"] <= sent.received
            ]
            matched.append((sent, sorted([call["steps"][0], *decodes])[: sent.completion_tokens]))
        else:
            matched.append((sent, call["steps"][: sent.completion_tokens]))
    return matched


def percentile(values: list[float], share: float) -> float | None:
    """None when no request of the window got its first token before the run ended (batch 1 with a long queue)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def measure(matched, started: list[float], levels) -> list[dict]:
    rows = []
    for level, begin in zip(levels, started):
        window = (begin + level_seconds(WARMUP_SECONDS), begin + level_seconds(LEVEL_SECONDS))
        tokens = sum(1 for _, times in matched for at in times if window[0] <= at < window[1])
        in_window = [(sent, times) for sent, times in matched if window[0] <= sent.sent < window[1] and times]
        ttft = [times[0] - sent.sent for sent, times in in_window]
        tpot = [(times[-1] - times[0]) / (len(times) - 1) for _, times in in_window if len(times) > 1]
        # Back to the calibrated scale: times / TIME_SCALE, rates x TIME_SCALE.
        def milliseconds(values, share):
            value = percentile(values, share)
            return None if value is None else round(value / TIME_SCALE * 1000, 1)

        rows.append({
            "concurrency": level,
            "tokens_per_s": round(tokens / (window[1] - window[0]) * TIME_SCALE, 2),
            "ttft_p50_ms": milliseconds(ttft, 0.5),
            "ttft_p95_ms": milliseconds(ttft, 0.95),
            "tpot_p50_ms": milliseconds(tpot, 0.5),
            "tpot_p95_ms": milliseconds(tpot, 0.95),
            "requests": len(in_window),
        })
    return rows


@contextmanager
def serving(deployment: serving_stack.Deployment, time_scale: float):
    """The endpoint on the real model server, its device running `time_scale` times its calibrated time per step (the
    TorchServe batch delay scaled with it), until every worker is READY."""
    delay_name = serving_stack.ENDPOINT_ENV["serverMaxBatchDelay"]
    if delay_name in deployment.environment:
        scaled = max(1, round(int(deployment.environment[delay_name]) * time_scale))
        deployment = replace(deployment, environment={**deployment.environment, delay_name: str(scaled)})
    with tempfile.TemporaryDirectory(prefix="benchmark-serving-") as root:
        server = serving_stack.ModelServer(Path(root), deployment, load_seconds=LOAD_SECONDS,
                                           overrides={serving_stack.neuron_device.TIME_SCALE: str(time_scale)})
        server.start()
        try:
            def ready():
                try:
                    workers = server.workers()
                except (OSError, AssertionError):
                    return False
                return len(workers) == deployment.workers and all(w["status"] == "READY" for w in workers)

            if not wait_until(ready, 300, interval=1):
                raise RuntimeError(f"the endpoint did not come up:\n{server.logs()[-3000:]}")
            yield server
        finally:
            server.stop()


def run(deployment: serving_stack.Deployment, levels, seed: int, workload: Workload) -> list[dict]:
    n_positions = int(deployment.environment[serving_stack.ENDPOINT_ENV["nPositions"]])
    with serving(deployment, TIME_SCALE) as server:
        prompt_words = client_prompts(random.Random(seed), max(levels), n_positions, workload)
        results: list[Sent] = []
        stop = threading.Event()
        started = run_clients(server, levels, prompt_words, stop, results, seed, workload)
        stop.set()
        # The requests running at the last window's end finish within one (batched) answer's time.
        batch = int(deployment.environment[serving_stack.ENDPOINT_ENV["batchSize"]])
        step = serving_stack.neuron_device.seconds_per_step(deployment.seconds_per_token, batch, {})
        time.sleep((workload.longest_answer + 2) * step * TIME_SCALE + 1)
        failed = [sent for sent in results if sent.status != 200]
        if failed:
            raise RuntimeError(f"{len(failed)} request(s) failed: statuses {sorted({s.status for s in failed})}")
        return measure(token_times(results, server.generations()), started, levels)


def probe_ttft(deployment: serving_stack.Deployment, seed: int, workload: Workload) -> dict:
    """Time to first token of a lone client, measured apart from the load run: PROBE_REQUESTS requests one after
    another, with client 0's prompt and PROBE_NEW_TOKENS new tokens (the first token does not depend on the answer's
    length), on the device at its calibrated speed. At TIME_SCALE the host's own time (HTTP, TorchServe, the
    handler), which is not scaled, would be counted 1 / TIME_SCALE times over, and its jitter on this shared machine
    with it."""
    n_positions = int(deployment.environment[serving_stack.ENDPOINT_ENV["nPositions"]])
    words = client_prompts(random.Random(seed), 1, n_positions, workload)[0]
    with serving(deployment, 1.0) as server:
        results = []
        for _ in range(PROBE_REQUESTS):
            sent = time.time()
            answer = server.invoke(chat_body(words, PROBE_NEW_TOKENS), {"Content-Type": "application/json"},
                                   timeout=120)
            record = Sent(0, sent, time.time(), answer.status)
            if answer.status != 200:
                raise RuntimeError(f"a probe request failed with {answer.status}")
            usage = answer.json()["usage"]
            record.prompt_tokens, record.completion_tokens = usage["prompt_tokens"], usage["completion_tokens"]
            results.append(record)
        ttft = [times[0] - sent.sent for sent, times in token_times(results, server.generations())]
    return {
        "requests": len(ttft),
        "ttft_p50_ms": round(percentile(ttft, 0.5) * 1000, 1),
        "ttft_p95_ms": round(percentile(ttft, 0.95) * 1000, 1),
    }


def with_positions(deployment: serving_stack.Deployment, n_positions: int) -> serving_stack.Deployment:
    """`deployment` compiled for and served at `n_positions` (the compile job's and the endpoint's variable)."""
    return replace(
        deployment,
        environment={**deployment.environment, serving_stack.ENDPOINT_ENV["nPositions"]: str(n_positions)},
        compile_environment={**deployment.compile_environment, serving_stack.COMPILE_ENV["nPositions"]: str(n_positions)},
    )


def shown(milliseconds: float | None, width: int) -> str:
    """A latency for the table, right-aligned in `width` characters (left-aligned for a negative width)."""
    text = "n/a" if milliseconds is None else f"{milliseconds:.0f}"
    return f"{text:>{width}}" if width > 0 else f"{text:<{-width}}"


def main() -> None:
    global TIME_SCALE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=PRESETS, action="append", help="default: both")
    parser.add_argument("--batch-size", type=int, help="the batched run's batch size (default: the template's)")
    parser.add_argument("--n-positions", type=int,
                        help="compile option nPositions of both runs (default: the template's), with --batch-size for"
                             " a custom strategy, e.g. highPerformance's instance and workers at 2048 positions")
    parser.add_argument("--batching", choices=("template", "static"), default="template",
                        help="the batched run: as the template has it (default; both presets batch continuously), or"
                             " TorchServe's dynamic batching at the template's batch size or --batch-size (static)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY),
                        help=f"client levels (default: {' '.join(map(str, CONCURRENCY))}); each preset's target level"
                             " must be one of them")
    parser.add_argument("--time-scale", type=float, default=TIME_SCALE,
                        help=f"the device's time per step as a share of its calibrated time (default {TIME_SCALE}); 1"
                             " weighs the host's own time per step as it would weigh on the device (continuous"
                             " batching: a TorchServe round trip per step), at 4 times the run time")
    parser.add_argument("--output-distribution", choices=("normal", "exponential"),
                        help="one workload of one's own instead of the default two: the answer lengths' distribution")
    parser.add_argument("--output-mean", type=float, help="mean new tokens (default 150)")
    parser.add_argument("--output-stddev", type=float, help="standard deviation of a normal distribution (default 10)")
    parser.add_argument("--output-cap", type=int, help="the most new tokens a request asks for (default: none)")
    parser.add_argument("--input-mean", type=float, help="mean prompt tokens (default 550)")
    parser.add_argument("--input-stddev", type=float, help="standard deviation of the prompt tokens (default 150)")
    args = parser.parse_args()
    TIME_SCALE = args.time_scale
    workloads = WORKLOADS
    own = {
        "output_distribution": args.output_distribution, "output_mean": args.output_mean,
        "output_stddev": args.output_stddev, "output_cap": args.output_cap, "input_mean": args.input_mean,
        "input_stddev": args.input_stddev,
    }  # fmt: skip
    if any(value is not None for value in own.values()):
        workloads = (Workload("custom", **{key: value for key, value in own.items() if value is not None}),)
    levels = sorted(set(args.concurrency))
    summary, table = [], []
    for preset in args.preset or PRESETS:
        template = serving_stack.read_deployment(preset)
        if args.n_positions:
            template = with_positions(template, args.n_positions)
        if args.batch_size and args.batching == "template":
            sys.exit("--batch-size changes the compile: use it with --batching static")
        batch_size = args.batch_size or int(template.environment.get(serving_stack.ENDPOINT_ENV["batchSize"], "1"))
        if batch_size < 2:
            sys.exit(f"{preset}: the template compiles batch size {batch_size}; pass --batching static --batch-size")
        batched_deployment = template if args.batching == "template" else serving_stack.with_static_batching(template, batch_size)
        batching = "continuous" if batched_deployment.continuous_batching else "static"
        concurrency = TARGETS[preset] if TARGETS[preset] in levels else max(levels)
        for workload in workloads:
            batch1 = run(serving_stack.with_static_batching(template, 1), levels, SEED, workload)
            batched = run(batched_deployment, levels, SEED, workload)
            probes = [
                probe_ttft(serving_stack.with_static_batching(template, 1), SEED, workload),
                probe_ttft(batched_deployment, SEED, workload),
            ]
            n_positions = template.environment[serving_stack.ENDPOINT_ENV["nPositions"]]
            print(f"\n{preset}, {workload.name} workload ({workload.output_distribution} answers, mean"
                  f" {workload.output_mean:g}{f', cap {workload.output_cap}' if workload.output_cap else ''}):"
                  f" {template.workers} worker(s) on {template.instance_type}, batch size {batch_size} ({batching}),"
                  f" {n_positions} positions (simulated device, {template.seconds_per_token * 1000:.0f} ms per token"
                  " at batch 1)")
            print(f"{'clients':>7} | {'tokens/s b1':>11} {'batched':>8} {'ratio':>6} | {'TTFT p50/p95 ms b1':>19}"
                  f" {'batched':>13} | {'TPOT p50/p95 ms b1':>19} {'batched':>13}")
            for one, many in zip(batch1, batched):
                ratio = many["tokens_per_s"] / one["tokens_per_s"]
                print(f"{one['concurrency']:>7} | {one['tokens_per_s']:>11.1f} {many['tokens_per_s']:>8.1f} {ratio:>5.2f}x |"
                      f" {shown(one['ttft_p50_ms'], 9)} / {shown(one['ttft_p95_ms'], -7)} {shown(many['ttft_p50_ms'], 5)}"
                      f" / {shown(many['ttft_p95_ms'], -5)} | {shown(one['tpot_p50_ms'], 9)} / {shown(one['tpot_p95_ms'], -7)}"
                      f" {shown(many['tpot_p50_ms'], 5)} / {shown(many['tpot_p95_ms'], -5)}")
                table.append({"preset": preset, "workload": workload.name, "batching": batching,
                              "batch_size": batch_size, "batch1": one, "batched": many})
            at = {row["concurrency"]: row for row in batch1}, {row["concurrency"]: row for row in batched}
            ratio = at[1][concurrency]["tokens_per_s"] / at[0][concurrency]["tokens_per_s"]
            ttft_ratio = probes[1]["ttft_p50_ms"] / probes[0]["ttft_p50_ms"]
            print(f"TTFT of a lone client ({PROBE_REQUESTS} requests, device at its calibrated speed), p50 / p95 ms:"
                  f" batch 1 {probes[0]['ttft_p50_ms']:.0f} / {probes[0]['ttft_p95_ms']:.0f},"
                  f" batched {probes[1]['ttft_p50_ms']:.0f} / {probes[1]['ttft_p95_ms']:.0f}: {ttft_ratio:.2f}x")
            summary.append({
                "preset": preset,
                "workload": workload.name,
                "batching": batching,
                "batch_size": batch_size,
                "n_positions": int(n_positions),
                "concurrency": concurrency,
                "batch1_tokens_per_s": round(at[0][concurrency]["tokens_per_s"], 2),
                "batched_tokens_per_s": round(at[1][concurrency]["tokens_per_s"], 2),
                "ratio": round(ratio, 2),
                "ttft_ratio_at_1": round(ttft_ratio, 2),
                "ttft_p50_ms_at_target": {"batch1": at[0][concurrency]["ttft_p50_ms"],
                                          "batched": at[1][concurrency]["ttft_p50_ms"]},
                "ttft_at_1": {"batch1": probes[0], "batched": probes[1]},
                "met": ratio >= TARGET_RATIO and ttft_ratio <= TTFT_LIMIT_AT_1,
            })
    print(json.dumps({"simulated": True, "time_scale": TIME_SCALE, "presets": summary, "levels": table}))


if __name__ == "__main__":
    main()
