"""The bundled checkpoints: present, small, as good as their metadata says, and usable."""

import pytest

from charrnn import checkpoint
from charrnn.cli import eval_checkpoint
from charrnn.sampling import generate
from tests.conftest import ROOT

BUNDLED = sorted((ROOT / "checkpoints").glob("*.safetensors"))
MB = 2**20


def test_one_of_each_cell_within_the_size_budget():
    cells = {checkpoint.load(p).model_config.cell for p in BUNDLED}
    assert cells >= {"rnn", "gru", "lstm"}, [p.name for p in BUNDLED]
    for path in BUNDLED:
        assert path.stat().st_size < 5.5 * MB, path.name
    assert sum(p.stat().st_size for p in BUNDLED) < 15 * MB


@pytest.mark.parametrize("path", BUNDLED, ids=[p.stem for p in BUNDLED])
def test_recorded_metrics_match_a_fresh_eval(path, shakespeare):
    ck = checkpoint.load(path)
    assert ck.model_config.num_layers == 2
    info = ck.info
    for key in ("command", "train_seconds", "device", "val"):
        assert key in info, key
    assert info["command"].startswith("python -m charrnn train")
    fresh = eval_checkpoint(ck, shakespeare)
    assert fresh["chars"] == info["val"]["chars"]
    assert fresh["loss"] == pytest.approx(info["val"]["loss"], abs=0.005)
    assert fresh["bpc"] == pytest.approx(info["val"]["bpc"], abs=0.01)
    if ck.model_config.cell == "lstm":
        assert fresh["loss"] <= 1.50
    text = generate(ck.model, ck.vocab, "ROMEO:", 200, 0.8, seed=0)
    assert len(text) == 206 and text.startswith("ROMEO:")
