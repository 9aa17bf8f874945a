"""The command line: python -m charrnn train | sample | eval | trace | bench.

Every bad argument or input ends as one `error: ...` line on stderr and exit status 2; the
package's ValueErrors already say what is wrong and what to do.
"""

import argparse
import json
import logging
import math
import os
import re
import sys
from dataclasses import MISSING, fields

from .config import BACKENDS, CELLS, ModelConfig, TrainConfig

LN2 = math.log(2)
# short spellings for the flags people type most (the long dataclass names also work)
ALIASES = {"hidden_size": ["--hidden"], "num_layers": ["--layers"], "embed_size": ["--embed"]}
CHOICES = {"cell": CELLS, "backend": BACKENDS}


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one `error:` line (exit 2) rather than a usage dump."""

    def error(self, message):
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def _add_config_flags(parser, cls, skip=("vocab_size",)):
    """One --flag per dataclass field, typed and defaulted from the dataclass."""
    for f in fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = type(f.default) if f.default is not MISSING else str
        parser.add_argument(
            flag,
            *ALIASES.get(f.name, []),
            dest=f.name,
            type=kind,
            default=f.default,
            choices=CHOICES.get(f.name),
            help=f"default {f.default}",
        )


def _config_from(args, cls, skip=("vocab_size",)):
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if f.name not in skip})


def build_parser() -> Parser:
    parser = Parser(prog="python -m charrnn", description="Character-level RNN playground.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log diagnostics")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model and save a checkpoint")
    p.add_argument(
        "--corpus",
        default="tiny-shakespeare",
        help="tiny-shakespeare | python-source | PATH to a text file",
    )
    p.add_argument("--encoding", default="utf-8", choices=["utf-8", "latin-1"])
    p.add_argument("--out", default="model.safetensors", help="checkpoint path to write")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="the most torch CPU threads training may use (default: all cores); steps run at "
        "1 thread or at this many, whichever the last steps measured faster",
    )
    _add_config_flags(p, ModelConfig)
    _add_config_flags(p, TrainConfig)

    p = sub.add_parser("sample", help="generate text from a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--prime", default="\n")
    p.add_argument("--length", type=int, default=300)
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=0, help="keep the k likeliest; 0 = all")
    p.add_argument("--seed", type=int, default=None, help="0 to 2**63-1; same seed, same text")

    p = sub.add_parser("eval", help="loss of a checkpoint on a corpus's held-out split")
    p.add_argument("checkpoint")
    p.add_argument("--corpus", default="tiny-shakespeare")
    p.add_argument("--encoding", default="utf-8", choices=["utf-8", "latin-1"])
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--record",
        action="store_true",
        help="also write the figures into the checkpoint's metadata (info.val)",
    )

    p = sub.add_parser("trace", help="every gate of every layer on a text")
    p.add_argument("checkpoint")
    p.add_argument("--text", required=True)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("bench", help="speed and quality figures on this machine")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quality", action="store_true", help="train for --minutes, report val loss")
    p.add_argument("--minutes", type=float, default=10.0)
    return parser


# ---------------------------------------------------------------------------------------------


def cmd_train(args) -> None:
    from tqdm import tqdm

    from .corpus import load_corpus
    from .jobs import TrainingJob

    model_config, train_config = _config_from(args, ModelConfig), _config_from(args, TrainConfig)
    threads, out = _torch_threads(args.threads), _out_path(args.out)  # refuse before any work
    bars = []  # the download bar appears only if a download really happens

    def progress(done, total):
        if not bars:
            bars.append(
                tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    desc="download",
                    disable=args.quiet,
                    leave=False,
                )
            )
        bars[0].update(done - bars[0].n)

    corpus = load_corpus(args.corpus, progress=progress, encoding=args.encoding)
    for bar in bars:
        bar.close()
    command = "python -m charrnn " + " ".join(sys.argv[1:])
    job = TrainingJob(
        corpus,
        model_config,
        train_config,
        checkpoint_path=out,
        extra={"command": command},
    )
    trainer = job.trainer
    bar = tqdm(total=train_config.steps, unit="step", disable=args.quiet, dynamic_ncols=True)

    def show(_, m):
        bar.update(m.step - bar.n)
        val = f" val {m.val_loss:.3f}" if m.val_loss is not None else ""
        bar.set_postfix_str(f"loss {m.loss:.3f}{val} | {m.chars_per_s:,.0f} chars/s")

    trainer.add_callback("on_step", show)
    trainer.add_callback("on_eval", show)
    print(
        f"training {job.name} ({trainer.model.num_params():,} parameters) on {corpus.name} "
        f"[{trainer.device}{', bf16' if trainer.bf16 else ''}]",
        file=sys.stderr,
    )
    job._start(threads=threads)
    try:
        while job.status == "running":
            job.join(timeout=0.5)
    except KeyboardInterrupt:
        print("\nstopping: saving the weights so far...", file=sys.stderr)
        job.stop()
        job.join()
    bar.close()
    snap = job.snapshot()
    if snap.status == "failed":
        raise RuntimeError(snap.message)
    val = snap.val_loss
    print(
        f"{snap.status} at step {snap.step}: val loss {val:.4f} nats/char "
        f"({val / LN2:.3f} bits/char, perplexity {math.exp(val):.2f}); saved {snap.checkpoint_path}"
    )


def _torch_threads(asked: int | None) -> int:
    cores = os.cpu_count() or 1
    if asked is None:
        return cores
    if not 1 <= asked <= cores:
        raise ValueError(f"--threads must be between 1 and {cores} (this machine's cores)")
    return asked


def _out_path(out: str):
    from pathlib import Path

    path = Path(out)
    if path.suffix != ".safetensors":
        raise ValueError(f"--out must end in .safetensors, got {out!r}")
    if path.is_dir():
        raise ValueError(f"--out {out!r} is a folder: give a file name")
    if not path.parent.is_dir():
        raise ValueError(f"--out: the folder {str(path.parent)!r} does not exist; create it first")
    return path


def cmd_sample(args) -> None:
    from .checkpoint import load
    from .sampling import check_sampling_args, stream

    if args.seed is not None and not 0 <= args.seed < 2**63:
        raise ValueError(f"--seed must be between 0 and {2**63 - 1}, got {args.seed}")
    ckpt = load(args.checkpoint)
    prime, top_k = unescape(args.prime), args.top_k or None
    # every check before the first character is printed: an error leaves stdout empty
    check_sampling_args(ckpt.vocab, prime, args.length, args.temperature, top_k)
    sys.stdout.write(prime)
    for ch in stream(
        ckpt.model, ckpt.vocab, prime, args.length, args.temperature, top_k, args.seed
    ):
        sys.stdout.write(ch)
        sys.stdout.flush()
    sys.stdout.write("\n")


ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def unescape(text: str) -> str:
    """Turn the shell-friendly escapes \\n, \\t, \\r and \\\\ into the characters; leave
    everything else, non-ASCII text included, exactly as typed."""
    return re.sub(r"\\([ntr\\])", lambda m: ESCAPES[m.group(1)], text)


def eval_checkpoint(ckpt, corpus) -> dict:
    """Loss of a loaded checkpoint on the held-out tail of a corpus, with its own vocabulary."""
    from .corpus import split_ids
    from .training import evaluate_loss

    val_fraction = ckpt.train_config.val_fraction if ckpt.train_config else 0.1
    ids = ckpt.vocab.encode(corpus.text)
    _, val_ids = split_ids(ids, val_fraction, seq_len=1)
    loss = evaluate_loss(ckpt.model, val_ids)
    return {
        "loss": loss,
        "bpc": loss / LN2,
        "perplexity": math.exp(loss),
        "chars": len(val_ids),
        "corpus": corpus.name,
        "val_fraction": val_fraction,
    }


def cmd_eval(args) -> None:
    from . import checkpoint
    from .corpus import load_corpus

    ckpt = checkpoint.load(args.checkpoint)
    result = eval_checkpoint(ckpt, load_corpus(args.corpus, encoding=args.encoding))
    if args.record:  # the same file, its info now holding this evaluation
        info = {**ckpt.info, "val": {k: result[k] for k in ("loss", "bpc", "perplexity", "chars")}}
        checkpoint.save(
            args.checkpoint,
            ckpt.model,
            ckpt.vocab,
            train_config=ckpt.train_config,
            history=ckpt.history,
            corpus=ckpt.corpus,
            info=info,
        )
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['corpus']}: loss {result['loss']:.4f} nats/char, {result['bpc']:.4f} "
            f"bits/char, perplexity {result['perplexity']:.3f} over {result['chars']:,} chars"
        )


def cmd_trace(args) -> None:
    from .checkpoint import load
    from .trace import trace

    ckpt = load(args.checkpoint)
    tr = trace(ckpt.model, ckpt.vocab, args.text)
    if args.json:
        print(json.dumps(tr.to_dict(), ensure_ascii=False))
        return
    print(f"{tr.cell}, {len(tr.layers)} layers, {len(tr.chars)} characters")
    for k, layer in enumerate(tr.layers):
        means = "  ".join(f"{n} {v.mean():+.3f}" for n, v in layer.items())
        print(f"layer {k}: mean  {means}")
    if len(tr.next_char_prob):
        print(f"mean probability of the actual next character: {tr.next_char_prob.mean():.3f}")


def cmd_bench(args) -> None:
    from . import bench

    bench.main(as_json=args.json, quality_run=args.quality, minutes=args.minutes)


COMMANDS = {
    "train": cmd_train,
    "sample": cmd_sample,
    "eval": cmd_eval,
    "trace": cmd_trace,
    "bench": cmd_bench,
}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        COMMANDS[args.command](args)
    except BrokenPipeError:  # `... | head`: the reader has all it wanted; exit quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug, not bad input: still one line, the traceback behind -v
        logging.getLogger(__name__).debug("traceback", exc_info=True)
        print(
            f"error: unexpected {type(e).__name__}: {e} (rerun with -v for details)",
            file=sys.stderr,
        )
        return 1
    return 0
