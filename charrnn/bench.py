"""Side-by-side performance figures on the current machine: `python -m charrnn bench`.

Every figure comes from one process and one run, so ratios compare like with like on a shared,
noisy machine. Chars/s counts characters of training text per second (batch x sequence length
per step). FLOPs are counted from the model's shapes: a training step is about three times the
forward matmuls (forward, and backward for inputs and for weights).
"""

import json
import math
import os
import platform
import threading
import time
from dataclasses import replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig, TrainConfig
from .corpus import corpus_from_text, load_corpus
from .devices import describe, pick_device
from .jobs import TrainingJob
from .sampling import generate
from .threads import one_thread
from .trace import trace
from .training import Trainer, build_model

LN2 = math.log(2)


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn, seconds: float, min_reps: int = 3) -> float:
    """Median seconds per call of fn over about `seconds` of wall time (after one warm-up).
    On a GPU each call is waited for, so queued kernels are not mistaken for speed."""
    fn()
    _sync()
    times, deadline = [], time.perf_counter() + seconds
    while len(times) < min_reps or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def matmul_gflops(device, dtype=torch.float32, n: int = 2048, seconds: float = 2.0) -> float:
    """The device's dense matmul rate for this dtype, the yardstick for the training rate."""
    a, b = (
        torch.randn(n, n, device=device, dtype=dtype),
        torch.randn(n, n, device=device, dtype=dtype),
    )
    return 2 * n**3 / _timed(lambda: a @ b, seconds) / 1e9


# --- 1. the course notebook's step, as it was ------------------------------------------------


class NotebookLSTM(nn.Module):
    """spro/char-rnn.pytorch's model: embedding -> nn.LSTM fed one character at a time
    (time-major (1, B, H)) -> linear decoder."""

    def __init__(self, vocab: int, hidden: int, layers: int):
        super().__init__()
        self.encoder = nn.Embedding(vocab, hidden)
        self.rnn = nn.LSTM(hidden, hidden, layers)
        self.decoder = nn.Linear(hidden, vocab)

    def forward(self, x, hidden):
        B = x.shape[0]
        out, hidden = self.rnn(self.encoder(x).view(1, B, -1), hidden)
        return self.decoder(out.view(B, -1)), hidden


def notebook_step_fn(device, V=65, H=100, L=2, B=100, T=200):
    """One training step of the notebook: a Python loop over T characters, the loss summed."""
    model = NotebookLSTM(V, H, L).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = torch.randint(V, (B, T), device=device), torch.randint(V, (B, T), device=device)

    def step():
        hidden = (torch.zeros(L, B, H, device=device), torch.zeros(L, B, H, device=device))
        model.zero_grad()
        loss = 0
        for c in range(T):
            out, hidden = model(x[:, c], hidden)
            loss = loss + F.cross_entropy(out, y[:, c])
        loss.backward()
        opt.step()

    return step


# --- 2-3. our real training step -------------------------------------------------------------


def _random_corpus(chars: int = 400_000, vocab: int = 65):
    g = torch.Generator().manual_seed(0)
    alphabet = [chr(33 + i) for i in range(vocab)]
    ids = torch.randint(vocab, (chars,), generator=g).tolist()
    return corpus_from_text("".join(alphabet[i] for i in ids), "random")


def trainer_for(
    hidden, layers, batch, seq, embed, lr=3e-3, dropout=None, threads=None, precision="auto"
):
    """A Trainer as the app makes one, on random text; dropout None keeps the default."""
    corpus = _random_corpus()
    mc = ModelConfig(cell="lstm", hidden_size=hidden, num_layers=layers, embed_size=embed)
    mc = mc if dropout is None else replace(mc, dropout=dropout)
    tc = TrainConfig(
        steps=10_000,
        batch_size=batch,
        seq_len=seq,
        lr=lr,
        eval_every=0,
        sample_every=0,
        precision=precision,
    )
    return Trainer(corpus, mc, tc, threads=threads)


def train_flops_per_step(hidden, layers, batch, seq, embed, vocab=65) -> float:
    """3 x the forward matmul FLOPs of an LSTM language model step."""
    forward = 0
    for k in range(layers):
        fan_in = embed if k == 0 else hidden
        forward += 2 * batch * seq * (fan_in * 4 * hidden + hidden * 4 * hidden)
    forward += 2 * batch * seq * hidden * vocab
    return 3 * forward


def bench_step(trainer: Trainer, seconds: float) -> float:
    """Median seconds per real Trainer step, once its thread tuner has chosen a count (the
    steady state a long run spends its time in; `_timed` already waits for a GPU)."""
    trainer.train_step()
    while trainer.tuner and trainer.tuner.probing:
        trainer.train_step()
    return _timed(trainer.train_step, seconds)


def _threads_used(trainer: Trainer) -> int:
    return trainer.tuner.best if trainer.tuner else torch.get_num_threads()


# --- 4. sampling and traces ------------------------------------------------------------------


def bench_sampling(device) -> dict:
    vocab = _random_corpus(2000).vocab
    model = build_model(ModelConfig(vocab_size=len(vocab), hidden_size=256), seed=0).to(device)
    t0 = time.perf_counter()
    generate(model, vocab, vocab.chars[0], 2000, 0.8, seed=0)
    sample_s = time.perf_counter() - t0
    text = "".join(vocab.chars[i % len(vocab)] for i in range(1000))
    with one_thread():  # as the app's pages run it
        trace_s = _timed(lambda: trace(model, vocab, text), 1.0)
    return {"sample_chars_per_s": 2000 / sample_s, "trace_1000_s": trace_s}


# --- 5. what a polling UI costs a running job ------------------------------------------------


def ui_poll_speeds(seconds: float, threads: int, phases: int = 8) -> tuple[float, float]:
    """Chars/s of one running TrainingJob with nobody watching and with a thread reading its
    snapshot once a second (what the Train page's fragment does). The two conditions alternate
    in short phases of one job, so a change in the machine's load hits both alike. A phase's
    speed is timed from its first finished step to its last, not counted in whole steps, which
    at a few steps a second would be off by a step in ten."""
    job = TrainingJob(
        _random_corpus(),
        ModelConfig(hidden_size=256),
        TrainConfig(steps=100_000, batch_size=64, seq_len=128, eval_every=0, sample_every=0),
    )
    finished: list[float] = []  # when each step ended (appending to a list is thread-safe)
    job.trainer.add_callback("on_step", lambda *_: finished.append(time.perf_counter()))
    polling, done = threading.Event(), threading.Event()

    def poller():
        while not done.wait(1.0):
            if polling.is_set():
                job.snapshot()

    threading.Thread(target=poller, daemon=True).start()
    job._start(threads=threads)
    time.sleep(2.0)  # warm-up, and the thread tuner's first choice
    rates = {False: [], True: []}
    for k in range(phases):
        watched = k % 2 == 1
        polling.set() if watched else polling.clear()
        t0 = time.perf_counter()
        time.sleep(seconds / phases)
        inside = [t for t in finished if t >= t0]
        if len(inside) >= 2:
            rates[watched].append((len(inside) - 1) * 64 * 128 / (inside[-1] - inside[0]))
    done.set()
    job.stop()
    job.join()
    median = lambda xs: sorted(xs)[len(xs) // 2] if xs else float("nan")  # noqa: E731
    return median(rates[False]), median(rates[True])


# --- the whole run -----------------------------------------------------------------------------


def run(seconds: float = 4.0) -> dict:
    """Every figure, measured side by side in this process."""
    device = pick_device("auto")
    r = {
        "device": describe(device),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "openmp": {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")},
    }
    r["matmul_fp32_gflops"] = matmul_gflops(device, torch.float32)
    r["matmul_bf16_gflops"] = matmul_gflops(device, torch.bfloat16)

    # 1 vs 2: the notebook's loop against our step on the same model and batch
    seed_s = _timed(notebook_step_fn(device), seconds)
    # every trainer may use the threads this run started with: a tuner that settled on one
    # thread leaves the calling thread at one, and the next trainer must not inherit that
    threads = r["threads"]
    # the notebook's model, so no dropout
    ours = trainer_for(100, 2, 100, 200, 100, lr=0.01, dropout=0.0, threads=threads)
    ours_s = bench_step(ours, seconds)
    r["seed_loop"] = {"steps_per_s": 1 / seed_s, "chars_per_s": 20_000 / seed_s}
    r["charrnn_seed_config"] = {
        "steps_per_s": 1 / ours_s,
        "chars_per_s": 20_000 / ours_s,
        "bf16": ours.bf16,
        "threads": _threads_used(ours),
    }
    r["ratio_vs_seed_loop"] = seed_s / ours_s

    # 3: bigger LSTMs, as a fraction of the fp32 matmul rate
    for hidden in (256, 512):
        t = trainer_for(hidden=hidden, layers=2, batch=64, seq=128, embed=64, threads=threads)
        s = bench_step(t, seconds)
        gflops = train_flops_per_step(hidden, 2, 64, 128, 64) / s / 1e9
        r[f"lstm{hidden}"] = {
            "chars_per_s": 64 * 128 / s,
            "train_gflops": gflops,
            "bf16": t.bf16,
            "threads": _threads_used(t),
        }
        r[f"lstm{hidden}_matmul_fraction"] = gflops / r["matmul_fp32_gflops"]

    r.update(bench_sampling(device))
    quiet, polled = ui_poll_speeds(6 * seconds, threads)
    r["ui_job_chars_per_s"] = {"unpolled": quiet, "polled_1hz": polled}
    r["ui_poll_cost"] = max(0.0, 1 - polled / quiet)
    return r


def print_table(r: dict) -> None:
    omp = ", ".join(f"{k}={v}" for k, v in r["openmp"].items() if v is not None) or "defaults"
    print(f"device {r['device']} | torch {r['torch']} | {r['threads']} threads | OpenMP {omp}")
    print(
        f"matmul 2048x2048: fp32 {r['matmul_fp32_gflops']:.0f} GFLOP/s, "
        f"bf16 {r['matmul_bf16_gflops']:.0f} GFLOP/s"
    )
    rows = [
        (
            "seed_loop (notebook, 2x100, B100 T200)",
            f"{r['seed_loop']['chars_per_s']:,.0f} chars/s",
            f"{r['seed_loop']['steps_per_s']:.2f} steps/s",
        ),
        (
            f"charrnn, same model and batch ({r['charrnn_seed_config']['threads']} thr)",
            f"{r['charrnn_seed_config']['chars_per_s']:,.0f} chars/s",
            f"{r['ratio_vs_seed_loop']:.2f}x the notebook",
        ),
    ]
    for h in (256, 512):
        x = r[f"lstm{h}"]
        rows.append(
            (
                f"LSTM 2x{h} (B64 T128, {x['threads']} thr)",
                f"{x['chars_per_s']:,.0f} chars/s",
                f"{x['train_gflops']:.0f} GFLOP/s = {r[f'lstm{h}_matmul_fraction']:.2f}x "
                "fp32 matmul",
            )
        )
    rows.append(("sampling, 2x256, batch 1 (1 thr)", f"{r['sample_chars_per_s']:,.0f} chars/s", ""))
    rows.append(("gate trace, 1,000 chars (1 thr)", f"{r['trace_1000_s'] * 1000:.0f} ms", ""))
    ui = r["ui_job_chars_per_s"]
    rows.append(
        (
            "job, polled 1/s vs not",
            f"{ui['polled_1hz']:,.0f} vs {ui['unpolled']:,.0f}",
            f"cost {r['ui_poll_cost']:.1%}",
        )
    )
    width = max(len(a) for a, _, _ in rows)
    for a, b, c in rows:
        print(f"{a:<{width}}  {b:>22}  {c}")


def quality(
    minutes: float,
    log=print,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
) -> list[dict]:
    """Train on tiny Shakespeare for `minutes` of wall time and report the validation loss at
    five points along the way. The configuration is the default unless given; the number of
    steps is always sized to the time budget, so the cosine schedule ends on time."""
    corpus = load_corpus("tiny-shakespeare")
    mc = model_config or ModelConfig()
    tc = replace(train_config or TrainConfig(), eval_every=0, sample_every=0)
    threads = torch.get_num_threads()  # for both trainers (see run())
    per_step = bench_step(Trainer(corpus, mc, tc, threads=threads), 5.0)
    steps = max(50, int(minutes * 60 / per_step))
    trainer = Trainer(corpus, mc, replace(tc, steps=steps), threads=threads)
    log(
        f"{'given' if model_config or train_config else 'default'} config, about {steps} steps "
        f"in {minutes:g} min ({per_step * 1000:.0f} ms/step, bf16 {trainer.bf16})"
    )
    points, marks = [], [minutes * 60 * k / 5 for k in range(1, 6)]
    t0 = time.perf_counter()
    while trainer.step < steps and marks:
        trainer.train_step()
        if time.perf_counter() - t0 >= marks[0] or trainer.step == steps:
            marks.pop(0)
            loss = trainer.evaluate(final=True)
            wall = time.perf_counter() - t0
            points.append(
                {
                    "minutes": wall / 60,
                    "step": trainer.step,
                    "val_loss": loss,
                    "val_bpc": loss / LN2,
                }
            )
            log(
                f"{wall / 60:5.1f} min  step {trainer.step:5d}  val {loss:.4f} nats "
                f"({loss / LN2:.3f} bpc)"
            )
    return points


def main(as_json: bool = False, quality_run: bool = False, minutes: float = 10.0) -> None:
    if quality_run:
        points = quality(minutes, log=(lambda *_: None) if as_json else print)
        if as_json:
            print(json.dumps({"minutes": minutes, "points": points}))
        return
    result = run()
    if as_json:
        print(json.dumps(result))
    else:
        print_table(result)
