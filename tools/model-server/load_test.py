"""Load test (issue 21, "Done when"): each preset at exactly its capacity (workers x slots) and then at three times it,
on the image's real TorchServe 0.11.0 and toolkit 2.0.25 with the simulated device, one server per preset.

`npx projen test:load` (or: tools/model-server/.venv/bin/python tools/model-server/load_test.py); needs the example's
synthesized templates (`npx projen synth:example`, which the task runs first); about 4 minutes a preset at the default
time scale. Each preset is served as its template configures it (both batch continuously; `--preset staticBatching`
serves the model-server test's static-batching template, three workers, which `npx projen test:model-server`
synthesizes).

The clients are closed loops, each with a prompt length of its own (so that the device's record of calls names the
client, as in benchmark_serving.py): a request asks for an answer length drawn from an exponential distribution, mean
150 tokens, capped by the positions left after its prompt. A client that is refused with 503 waits the Retry-After it
was given and sends the same request again; each attempt is a call of its own, as a client retrying InvokeEndpoint
makes. Each phase runs --simulated-seconds (default 300) of the device's time.

Time: the device runs TIME_SCALE times its calibrated time per step (neuron_device.seconds_per_step), and the times
that belong to the simulated clock are scaled with it: the handler's generation time limit (contract default 50 s)
and SageMaker's 60 s InvokeEndpoint limit, by which an answer is judged late. The host's own time (HTTP, TorchServe,
the handler) is not scaled: a refusal is judged in wall-clock seconds (within REFUSAL_SECONDS), which is stricter
than judging it on the simulated clock. Throughput is generated tokens per second of the device's (simulated) time,
counted by when each token of an answer given in time came out of the device (its record), within the phase after its warm-up.

What is checked, per preset: every attempt is answered 200 within 60 s (simulated) or refused 503 within 1 s (with
Retry-After when served step by step; TorchServe's own 503 for a full queue, in static batches, has none); the
device's record shows no sequence generating past its caller's deadline (request sent + 60 s, simulated): served step
by step, a sequence runs from the prompt's encoding into its slot to the slot's last decode before the next encoding;
served in static batches, a row runs until its model call ends; 0 worker restarts (the same worker pids, all READY);
tokens/s at three times the capacity >= 90 % of tokens/s at capacity. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from dataclasses import dataclass, replace

from conftest import wait_until  # noqa: F401  first: serving_stack puts the runtime's tests (and conftest) on the path
import serving_stack
from benchmark_serving import Sent, Workload, chat_body, client_prompts, serving, token_times

PRESETS = ("lowCost", "highPerformance")
OVERLOAD = 3
SIMULATED_SECONDS = 300.0
WARMUP_SIMULATED_SECONDS = 60.0
TIME_SCALE = 0.25
SAGEMAKER_LIMIT_SECONDS = 60.0
"""InvokeEndpoint's limit for a model's answer (SageMaker API reference, InvokeEndpoint; FACTS.md)."""
REFUSAL_SECONDS = 1.0
THROUGHPUT_SHARE = 0.9
ANSWER_MEAN = 150
PROMPTS = Workload("prompts", input_mean=200, input_stddev=60, output_cap=200)
"""Only the prompts' lengths (N(200, 60), distinct per client); answers are drawn by `answer_length`."""
SEED = 21


@dataclass
class Attempt:
    client: int
    words: int
    sent: float
    received: float
    status: int | None
    """None: no answer (the connection failed or the client gave up)."""
    retry_after: float | None = None
    """A refusal's Retry-After, in seconds (None: a refusal without it)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0


def answer_length(rng: random.Random, prompt_words: int, n_positions: int) -> int:
    """Exponential, mean ANSWER_MEAN, capped by the positions the prompt leaves (its template adds a few tokens)."""
    return max(1, min(round(rng.expovariate(1 / ANSWER_MEAN)), n_positions - prompt_words - 32))


def run_phase(server, clients: int, prompt_words: list[int], seconds: float, n_positions: int, scale: float,
              seed: int) -> list[Attempt]:
    """`clients` closed-loop clients for `seconds` (wall clock); returns every attempt once the last one ended."""
    attempts: list[Attempt] = []
    lock = threading.Lock()
    stop = threading.Event()
    give_up = 2 * SAGEMAKER_LIMIT_SECONDS * scale + 5  # long enough to see an answer that comes late

    def client(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        while not stop.is_set():
            body = chat_body(prompt_words[index], answer_length(rng, prompt_words[index], n_positions))
            while not stop.is_set():
                attempt = Attempt(index, prompt_words[index], time.time(), 0.0, None)
                try:
                    answer = server.invoke(body, {"Content-Type": "application/json"}, timeout=give_up)
                    attempt.status = answer.status
                except OSError:
                    answer = None
                attempt.received = time.time()
                with lock:
                    attempts.append(attempt)
                if answer is None or answer.status != 503:
                    if answer is not None and answer.status == 200:
                        usage = answer.json()["usage"]
                        attempt.prompt_tokens, attempt.completion_tokens = usage["prompt_tokens"], usage["completion_tokens"]
                    break
                headers = {key.lower(): value for key, value in answer.headers.items()}
                attempt.retry_after = float(headers["retry-after"]) if "retry-after" in headers else None
                stop.wait(attempt.retry_after or 1.0)

    threads = [threading.Thread(target=client, args=(index,), daemon=True) for index in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(give_up + 5)
    return attempts


def sequences(generations: list[dict]) -> list[dict]:
    """What the device generated, one entry per prompt it took: {"pid", "promptTokens", "started", "last"} with the
    time of its last step. Served step by step: from the encoding into a slot to the slot's last decode before the
    next encoding into it (by the same worker); in static batches: each row of a sample() call until the call ends."""
    found = []
    by_pid: dict[int, list[dict]] = {}
    for record in sorted(generations, key=lambda r: r["started"]):
        by_pid.setdefault(record["pid"], []).append(record)
    for pid, records in by_pid.items():
        open_slots: dict[int, dict] = {}
        for record in records:
            if "slots" not in record:  # a static batch
                for prompt in record["promptTokens"]:
                    found.append({"pid": pid, "promptTokens": prompt, "started": record["started"],
                                  "last": record["steps"][-1] if record["steps"] else record["started"]})
            elif record["promptTokens"]:  # an encoding into a slot
                (slot,) = record["slots"]
                open_slots[slot] = {"pid": pid, "promptTokens": record["promptTokens"][0], "started": record["started"],
                                    "last": record["steps"][-1]}
                found.append(open_slots[slot])
            else:
                for slot in record["slots"]:
                    if slot in open_slots:
                        open_slots[slot]["last"] = record["steps"][-1]
    return found


def deadline_violations(attempts: list[Attempt], generations: list[dict], prompt_tokens: dict[int, int],
                        limit: float) -> list[str]:
    """Every sequence the device ran, against the deadline of the attempt it served (its client's latest attempt
    sent before it started: a client's prompt length is its own), `limit` after that attempt was sent."""
    by_words = {tokens: words for words, tokens in prompt_tokens.items()}
    problems = []
    for sequence in sequences(generations):
        words = by_words.get(sequence["promptTokens"])
        sent = [a.sent for a in attempts if a.words == words and a.sent <= sequence["started"]]
        if words is None or not sent:
            problems.append(f"a sequence of {sequence['promptTokens']} prompt tokens matches no request")
            continue
        late = sequence["last"] - (max(sent) + limit)
        if late > 0:
            problems.append(f"a sequence of {sequence['promptTokens']} prompt tokens ran {late:.2f} s past its deadline")
    return problems


def generated_tokens(attempts: list[Attempt], generations: list[dict], window: tuple[float, float]) -> int:
    """Tokens of the answers given in time that came out of the device within `window` (the times from the device's
    record, matched to each answer by its client's prompt length as benchmark_serving.token_times does)."""
    sent = [Sent(a.client, a.sent, a.received, 200, a.prompt_tokens, a.completion_tokens)
            for a in attempts if a.status == 200]
    return sum(1 for _, times in token_times(sent, generations) for at in times if window[0] <= at < window[1])


def summarize(attempts: list[Attempt], generations: list[dict], window: tuple[float, float], limit: float,
              scale: float) -> dict:
    answered = [a for a in attempts if a.status == 200]
    refused = [a for a in attempts if a.status == 503]
    tokens = generated_tokens([a for a in answered if a.received - a.sent <= limit], generations, window)
    return {
        "attempts": len(attempts),
        "answered": len(answered),
        "answered_late": sum(1 for a in answered if a.received - a.sent > limit),
        "slowest_answer_s": round(max((a.received - a.sent for a in answered), default=0) / scale, 2),
        "refused": len(refused),
        "slowest_refusal_wall_s": round(max((a.received - a.sent for a in refused), default=0), 3),
        "refused_late": sum(1 for a in refused if a.received - a.sent > REFUSAL_SECONDS),
        "refused_without_retry_after": sum(1 for a in refused if a.retry_after is None),
        "other": sorted({str(a.status) for a in attempts if a.status not in (200, 503)}),
        "tokens_per_s": round(tokens / ((window[1] - window[0]) / scale), 2),
    }


def load_test(preset: str, simulated_seconds: float, scale: float, seed: int = SEED,
              warmup: float = WARMUP_SIMULATED_SECONDS, time_limit: float | None = None,
              job_queue_size: int | None = None) -> dict:
    deployment = serving_stack.read_deployment(preset)
    env = serving_stack.ENDPOINT_ENV
    if time_limit is None:
        time_limit = float(deployment.environment.get(env["generationTimeLimit"],
                                                      serving_stack.CONTRACT["defaults"]["generationTimeLimitSeconds"]))
    queue = {} if job_queue_size is None else {"TS_JOB_QUEUE_SIZE": str(job_queue_size)}
    deployment = replace(deployment, environment={**deployment.environment, **queue,
                                                  env["generationTimeLimit"]: str(time_limit * scale)})
    slots = int(deployment.environment[env["batchSize"]])
    capacity = deployment.workers * slots
    n_positions = int(deployment.environment[env["nPositions"]])
    limit = SAGEMAKER_LIMIT_SECONDS * scale
    prompt_words = client_prompts(random.Random(seed), OVERLOAD * capacity, n_positions, PROMPTS)
    phases = {}
    continuous = deployment.continuous_batching
    with serving(deployment, scale) as server:
        workers_before = server.workers()
        attempts_all: list[Attempt] = []
        for name, clients in (("capacity", capacity), ("overload", OVERLOAD * capacity)):
            start = time.time()
            attempts = run_phase(server, clients, prompt_words, simulated_seconds * scale, n_positions, scale,
                                 seed + clients)
            window = (start + warmup * scale, start + simulated_seconds * scale)
            phases[name] = summarize(attempts, server.generations(), window, limit, scale)
            attempts_all += attempts
        prompt_tokens = {a.words: a.prompt_tokens for a in attempts_all if a.status == 200}
        violations = deadline_violations(attempts_all, server.generations(), prompt_tokens, limit)
        workers_after = server.workers()
    restarts = (sorted(w["pid"] for w in workers_before) != sorted(w["pid"] for w in workers_after)
                or any(w["status"] != "READY" for w in workers_after))
    capacity_rate, overload_rate = phases["capacity"]["tokens_per_s"], phases["overload"]["tokens_per_s"]
    ratio = round(overload_rate / capacity_rate, 3) if capacity_rate else None
    overload = phases["overload"]
    # Served in static batches, the refusals are TorchServe's own (its bounded queue full), which carry no
    # Retry-After: the runtime README's "Admission and deadlines" says so, and the README's client backs off instead.
    passed = (
        all(p["answered_late"] == p["refused_late"] == 0 and not p["other"]
            and (p["refused_without_retry_after"] == 0 or not continuous) for p in phases.values())
        and not violations and not restarts and ratio is not None and ratio >= THROUGHPUT_SHARE
    )
    return {
        "preset": preset,
        "batching": "continuous" if continuous else "static",
        "workers": deployment.workers,
        "slots": slots,
        "capacity": capacity,
        "clients": {"capacity": capacity, "overload": OVERLOAD * capacity},
        "simulated_seconds": simulated_seconds,
        "time_scale": scale,
        "generation_time_limit_s": time_limit,
        **({} if job_queue_size is None else {"job_queue_size": job_queue_size}),
        "capacity_phase": phases["capacity"],
        "overload_phase": overload,
        "throughput_ratio": ratio,
        "deadline_violations": len(violations),
        "deadline_violation_examples": violations[:3],
        "worker_restarts": int(restarts),
        "pass": passed,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=(*PRESETS, "staticBatching"), action="append", help="default: both presets")
    parser.add_argument("--simulated-seconds", type=float, default=SIMULATED_SECONDS)
    parser.add_argument("--time-scale", type=float, default=TIME_SCALE)
    parser.add_argument("--time-limit", type=float, help="the handler's generation time limit (default: the template's)")
    parser.add_argument("--job-queue-size", type=int, help="TorchServe's job_queue_size (TS_JOB_QUEUE_SIZE)")
    args = parser.parse_args(argv)
    rows = []
    for preset in args.preset or PRESETS:
        row = load_test(preset, args.simulated_seconds, args.time_scale, time_limit=args.time_limit,
                        job_queue_size=args.job_queue_size)
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(json.dumps({"load_test": rows, "pass": all(row["pass"] for row in rows)}))
    return 0 if all(row["pass"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
