"""The training loop, without threads: a Trainer takes one optimizer step at a time and reports.

One step: draw a batch (B, T) -> set the learning rate -> forward (bf16 autocast where fast)
-> check the loss is finite -> backward -> clip -> Adam step -> bookkeeping.

Metrics are reported as data (a `Metrics` record per step, callbacks for steps, evaluations
and samples); printing and drawing are the caller's business. Losses are in nats per
character; bits per char = nats / ln 2, perplexity = e^nats.
"""

import copy
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import torch

from .config import ModelConfig, TrainConfig, check_fits
from .corpus import Corpus, make_sampler, split_ids
from .devices import pick_device, use_bf16
from .model import CharRNN
from .state import detach_state
from .threads import ThreadTuner

log = logging.getLogger(__name__)
LN2 = math.log(2)
_INIT_LOCK = threading.Lock()  # seeding uses torch's global generator: one model at a time


class TrainingDiverged(RuntimeError):
    """The loss or the gradients stopped being finite; the weights are the last good ones."""


@dataclass
class Metrics:
    """One row of a run's history. Losses in nats per character."""

    step: int
    loss: float
    lr: float
    chars_per_s: float
    elapsed_s: float
    val_loss: float | None = None

    @property
    def bpc(self) -> float:
        return self.loss / LN2

    @property
    def ppl(self) -> float:
        return math.exp(min(self.loss, 50.0))

    @property
    def val_bpc(self) -> float | None:
        return None if self.val_loss is None else self.val_loss / LN2

    @property
    def val_ppl(self) -> float | None:
        return None if self.val_loss is None else math.exp(min(self.val_loss, 50.0))

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        """A log line: step, loss with units, speed."""
        text = f"step {self.step:5d} | loss {self.loss:.4f} nats ({self.bpc:.3f} bpc)"
        if self.val_loss is not None:
            text += f" | val {self.val_loss:.4f} nats ({self.val_bpc:.3f} bpc)"
        return text + f" | {self.chars_per_s:,.0f} chars/s"


def thin_history(rows: list, limit: int) -> list:
    """At most about `limit` evenly spaced rows, always keeping the last one and every
    evaluation row (they are few, and they are the curve people compare). Rows are Metrics or
    their dicts: a live chart thins the one, a checkpoint the other."""
    if len(rows) <= limit:
        return list(rows)
    stride = -(-len(rows) // limit)

    def evaluated(r) -> bool:
        return (r.get("val_loss") if isinstance(r, dict) else r.val_loss) is not None

    return [r for i, r in enumerate(rows) if i % stride == 0 or evaluated(r) or i == len(rows) - 1]


def build_model(config: ModelConfig, seed: int) -> CharRNN:
    """A freshly initialised model; the same seed gives the same weights on either backend."""
    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CharRNN(config)


@torch.inference_mode()
def evaluate_loss(
    model: CharRNN,
    ids: torch.Tensor,
    max_chars: int = 1 << 30,
    bf16: bool = False,
    chunk: int = 256,
    streams: int = 16,
) -> float:
    """Mean next-character loss (nats) over `ids`, read as a few contiguous streams whose state
    carries from chunk to chunk, so every prediction after the first sees its real context."""
    was_training = model.training
    model.eval()
    ids = ids[: max_chars + 1].long().to(model.device)
    per_stream = (len(ids) - 1) // streams
    if per_stream < 1:
        streams, per_stream = 1, len(ids) - 1
    x_rows = ids[: per_stream * streams].view(streams, per_stream)
    y_rows = ids[1 : per_stream * streams + 1].view(streams, per_stream)
    total, state = 0.0, None
    for t in range(0, per_stream, chunk):
        x, y = x_rows[:, t : t + chunk], y_rows[:, t : t + chunk]
        with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
            _, loss, state = model(x, y, state)
        total += loss.item() * y.numel()
    model.train(was_training)
    return total / y_rows.numel()


class Trainer:
    """Trains a CharRNN on a corpus, one `step()` at a time.

    Public fields a caller may read: step, history (list of Metrics), model, vocab, device,
    bf16, model_config, train_config, last_sample, tuner (None off the CPU).

    `threads` caps the CPU threads a step may use; the default is the calling thread's count
    now. NOTE: a tuner that settled on one thread leaves its thread at one, so code that makes
    several trainers in one thread should pass the cap explicitly (bench.py does).
    """

    def __init__(
        self,
        corpus: Corpus,
        model_config: ModelConfig | None = None,
        train_config: TrainConfig | None = None,
        model: CharRNN | None = None,
        threads: int | None = None,
    ):
        self.corpus, self.vocab = corpus, corpus.vocab
        self.train_config = tc = train_config or TrainConfig()
        self.model_config = replace(model_config or ModelConfig(), vocab_size=len(self.vocab))
        check_fits(self.model_config, tc)
        self.device = pick_device(tc.device)
        self.bf16 = use_bf16(tc.precision, self.device)
        # on a CPU each step runs at the thread count measured fastest, at most `threads`
        cpu = self.device.type == "cpu"
        self.tuner = ThreadTuner(threads or torch.get_num_threads()) if cpu else None
        self.train_ids, self.val_ids = split_ids(corpus.ids, tc.val_fraction, tc.seq_len)

        self.model = (model or build_model(self.model_config, tc.seed)).to(self.device)
        self.model.train()
        self.gen = torch.Generator().manual_seed(tc.seed)
        self.sampler = make_sampler(tc.sampler, self.train_ids, tc.batch_size, tc.seq_len, self.gen)
        # the fused kernel updates every tensor in one pass: ~10% faster steps at 2x512 on a CPU
        fused = self.device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=tc.lr,
            betas=(0.9, 0.99),
            weight_decay=tc.weight_decay,
            fused=fused or None,
        )
        self.step, self.history, self.last_sample = 0, [], ""
        self.carried = None  # recurrent state carried between batches (stream sampler only)
        self.elapsed = 0.0  # seconds spent inside step(), evaluation excluded
        self.callbacks: dict[str, list[Callable]] = {"on_step": [], "on_eval": [], "on_sample": []}

    # --- callbacks ------------------------------------------------------------------------
    def add_callback(self, event: str, fn: Callable[["Trainer", object], None]) -> None:
        """Register fn(trainer, payload) for on_step (Metrics), on_eval (Metrics) or
        on_sample (str)."""
        self.callbacks[event].append(fn)

    def _fire(self, event: str, payload) -> None:
        for fn in self.callbacks[event]:
            fn(self, payload)

    # --- one step -------------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        tc = self.train_config
        if step < tc.warmup_steps:
            return tc.lr * (step + 1) / tc.warmup_steps
        if tc.schedule == "constant":
            return tc.lr
        progress = (step - tc.warmup_steps) / max(1, tc.steps - tc.warmup_steps)
        floor = tc.lr * tc.min_lr_ratio
        return floor + (tc.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def train_step(self) -> Metrics:
        """One optimizer update. Raises TrainingDiverged (weights untouched) on NaN/inf."""
        if self.tuner:
            self.tuner.threads()
        t0 = time.perf_counter()
        tc, model = self.train_config, self.model
        x, y = self.sampler()  # (B, T) each
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        state = self.carried if self.sampler.carries_state and not self.sampler.reset else None

        # dropout draws from torch's global generator (nn.LSTM takes no other), so seed it from
        # the run's own generator: a seeded run then repeats exactly. NOTE: jobs training at
        # the same time share that global generator, so they repeat only when run alone.
        if model.config.dropout > 0:
            torch.manual_seed(int(torch.randint(2**62, (1,), generator=self.gen)))
        # forward and backward; the loss itself is always computed in fp32
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            _, loss, state = model(x, y, state)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"the loss became {loss.item()} at step {self.step + 1}: "
                "lower the learning rate (the weights before it are kept)"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip or float("inf"))
        if not torch.isfinite(norm):
            raise TrainingDiverged(
                f"the gradients became {norm.item()} at step {self.step + 1}: "
                "lower the learning rate or clip harder (weights are kept)"
            )
        self.optimizer.step()

        # bookkeeping
        if self.sampler.carries_state:
            self.carried = detach_state(state)
        self.step += 1
        dt = time.perf_counter() - t0
        self.elapsed += dt
        if self.tuner:
            self.tuner.record(dt)
        metrics = Metrics(self.step, loss.item(), lr, x.numel() / dt, self.elapsed)
        self.history.append(metrics)
        self._fire("on_step", metrics)
        return metrics

    # --- evaluation and samples -----------------------------------------------------------
    def evaluate(self, final: bool = False) -> float:
        """Validation loss in nats per char; recorded on the latest history row.

        During training it reads the first `eval_chars` of the split with the run's arithmetic;
        the final evaluation reads the whole split in fp32, the figure a checkpoint records and
        that `python -m charrnn eval` reproduces."""
        if final:
            val = evaluate_loss(self.model, self.val_ids)
        else:
            val = evaluate_loss(self.model, self.val_ids, self.train_config.eval_chars, self.bf16)
        if self.history:
            self.history[-1].val_loss = val
            self._fire("on_eval", self.history[-1])
        return val

    def weights_copy(self) -> CharRNN:
        """A CPU copy of the model in eval mode: safe to sample from while training goes on."""
        twin = copy.deepcopy(self.model).to("cpu")
        return twin.eval()

    def sample(self, length: int | None = None, temperature: float = 0.8) -> str:
        from .sampling import generate  # sampling imports nothing from here; avoid a cycle

        length = length or self.train_config.sample_length
        prime = self.corpus.text[:1]
        text = generate(
            self.weights_copy(),
            self.vocab,
            prime,
            length,
            temperature,
            seed=self.train_config.seed + self.step,
        )
        self.last_sample = text
        self._fire("on_sample", text)
        return text

    # --- the loop ---------------------------------------------------------------------------
    def due(self, every: int) -> bool:
        return every > 0 and self.step % every == 0

    def run(self, stop: threading.Event | None = None, on_checkpoint: Callable | None = None):
        """Train until `steps` or until `stop` is set; evaluate on schedule and at the end."""
        tc = self.train_config
        while self.step < tc.steps and not (stop and stop.is_set()):
            self.train_step()
            if self.due(tc.eval_every) and self.step < tc.steps:
                self.evaluate()
            if self.due(tc.sample_every):
                self.sample()
            if on_checkpoint and self.due(tc.checkpoint_every) and self.step < tc.steps:
                on_checkpoint(self)
        if self.history:
            self.evaluate(final=True)
        return self.history[-1] if self.history else None

    def final_val_loss(self) -> float | None:
        vals = [m.val_loss for m in self.history if m.val_loss is not None]
        return vals[-1] if vals else None
