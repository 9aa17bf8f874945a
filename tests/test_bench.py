"""The benchmark's pieces (the full `python -m charrnn bench` takes about a minute: run it by
hand, its figures are in the README)."""

import torch

from charrnn import bench


def test_flop_count_from_shapes():
    # one layer, E = H = 1, B = T = 1, V = 1: forward = 2 * (1*4 + 1*4) + 2 * 1 = 18
    assert bench.train_flops_per_step(1, 1, 1, 1, 1, vocab=1) == 3 * 18
    big = bench.train_flops_per_step(512, 2, 64, 128, 64)
    assert 1.6e11 < big < 1.65e11  # 2x512 LSTM, B64 T128: about 163 GFLOP per step


def test_notebook_step_learns():
    step = bench.notebook_step_fn("cpu", V=5, H=8, L=2, B=4, T=6)
    step()  # runs: the loop, backward and Adam step of the course notebook


def test_our_step_at_the_notebook_config_uses_the_real_trainer():
    t = bench.trainer_for(hidden=8, layers=2, batch=4, seq=6, embed=8)
    assert bench.bench_step(t, 0.05) > 0 and t.step >= 4


def test_table_prints_every_figure(capsys):
    fig = {
        "chars_per_s": 1000.0,
        "train_gflops": 50.0,
        "bf16": True,
        "steps_per_s": 1.0,
        "threads": 2,
    }
    result = {
        "device": "CPU",
        "torch": torch.__version__,
        "threads": 2,
        "openmp": {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "10000"},
        "matmul_fp32_gflops": 100.0,
        "matmul_bf16_gflops": 200.0,
        "seed_loop": fig,
        "charrnn_seed_config": fig,
        "ratio_vs_seed_loop": 4.5,
        "lstm256": fig,
        "lstm512": fig,
        "lstm256_matmul_fraction": 0.8,
        "lstm512_matmul_fraction": 1.3,
        "sample_chars_per_s": 6000.0,
        "trace_1000_s": 0.1,
        "ui_job_chars_per_s": {"unpolled": 1000.0, "polled_1hz": 990.0},
        "ui_poll_cost": 0.01,
    }
    bench.print_table(result)
    out = capsys.readouterr().out
    for text in ("4.50x the notebook", "1.30x fp32 matmul", "6,000 chars/s", "100 ms", "1.0%"):
        assert text in out
    for text in ("GOMP_SPINCOUNT=10000", "(2 thr)"):
        assert text in out
