"""What hidden units track: the text features on a hand-worked text, the correlations against
numpy's, the activations against the layer's own outputs and final state, and
scripts/visualize.py on a trained checkpoint (its files, and its bad-input errors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_script
from rnnlab.nn import Recurrent
from rnnlab.tasks.charlm.module import CharLM
from rnnlab.tasks.charlm.units import correlations, table_markdown, text_features, top_units, unit_activations

pytestmark = pytest.mark.usefixtures("one_thread")


def test_text_features_by_hand() -> None:
    text = 'a "b(c)"\nDe'
    f = {k: v.tolist() for k, v in text_features(text).items()}
    #                        a  ␠  "  b  (  c  )  "  ↵  D  e
    assert f["inside quotes"] == [0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    assert f["inside brackets"] == [0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0]
    assert f["position in line"] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1]
    assert f["after a line break"] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]
    assert f["upper case"] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]


def test_correlations_are_pearsons_and_nan_for_a_constant() -> None:
    g = torch.Generator().manual_seed(0)
    acts = torch.randn(200, 5, generator=g, dtype=torch.float64)
    feature = acts[:, 2] * 0.5 + torch.randn(200, generator=g, dtype=torch.float64)
    r = correlations(acts, feature)
    want = [np.corrcoef(acts[:, u].numpy(), feature.numpy())[0, 1] for u in range(5)]
    assert np.allclose(r.numpy(), want, atol=1e-12)
    assert torch.isnan(correlations(acts, torch.ones(200, dtype=torch.float64))).all()
    top = top_units({"hidden": acts}, {"f": feature, "never": torch.zeros(200, dtype=torch.float64)}, k=2)
    assert top["f"][0][:2] == ("hidden", 2) and top["never"] == []
    assert "(not in this text)" in table_markdown(top)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_activations_are_the_layers_states(cell: str) -> None:
    torch.manual_seed(0)
    rnn = Recurrent(cell, 6, 7, num_layers=2, batch_first=True).double()
    net = CharLM(11, 6, rnn).double().eval()
    ids = torch.randint(0, 11, (30,))
    states = unit_activations(net, ids)
    out, final = net.rnn(net.embed(ids[None]))
    assert torch.allclose(states["hidden"], out[0], atol=1e-12)  # the top layer's h at every step
    if cell == "lstm":
        assert set(states) == {"hidden", "cell"}
        assert torch.allclose(states["cell"][-1], final[1][-1, 0], atol=1e-12)  # the top layer's last c
    else:
        assert set(states) == {"hidden"}


def test_visualize_writes_the_table_page_and_pictures(tiny_run: tuple[Path, dict], tmp_path: Path) -> None:
    ckpt = tiny_run[0] / "checkpoints" / "last.ckpt"
    text = tmp_path / "text.txt"
    text.write_text("KING:\nThe lord of the night is good.\n\nQUEEN:\nNot so my lord.\n" * 5, encoding="utf-8")  # the corpus's characters
    out = tmp_path / "vis"
    r = run_script("scripts/visualize.py", f"ckpt_path={ckpt}", f"input={text}", "top=2", f"out={out}")
    assert r.returncode == 0, r.stderr
    table = (out / "units.md").read_text(encoding="utf-8")
    for feature in ("position in line", "after a line break", "upper case"):
        assert table.count(f"| {feature} |") == 2
    assert "| inside quotes | (not in this text) |" in table  # a feature the text never shows ranks no unit
    drawn = sorted(out.glob("unit_*.png"))
    assert drawn and (out / "units.html").read_text(encoding="utf-8").count("<h3>") == len(drawn)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in drawn)

    chosen = tmp_path / "chosen"
    r = run_script("scripts/visualize.py", f"ckpt_path={ckpt}", "input=the\\nking", "units=hidden:3,cell:0", f"out={chosen}")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in chosen.glob("*.png")) == ["unit_cell_0.png", "unit_hidden_3.png"]
    assert (chosen / "units.html").read_text(encoding="utf-8").count(": r = ") == 2  # each chosen unit with its strongest feature


@pytest.mark.parametrize("args, says", [
    (["input=the king"], "ckpt_path= is required"),
    (["ckpt_path=CKPT", "input=the king", "colour=red"], "'colour=red'"),
    (["ckpt_path=CKPT", "input=the king", "units=hidden:999"], "unit below 16"),
    (["ckpt_path=CKPT", "input=the king", "show=0"], "show='0'"),
    (["ckpt_path=CKPT", "input=BINARY"], "not UTF-8"),
])
def test_visualize_bad_input_exits_2(args: list[str], says: str, tiny_run: tuple[Path, dict], tmp_path: Path) -> None:
    binary = tmp_path / "latin1.txt"
    binary.write_bytes("caf\xe9 au lait".encode("latin-1"))
    out = tmp_path / "vis"
    args = [a.replace("CKPT", str(tiny_run[0] / "checkpoints" / "last.ckpt")).replace("BINARY", str(binary)) for a in args]
    r = run_script("scripts/visualize.py", *args, f"out={out}")
    assert r.returncode == 2 and says in r.stderr, r.stderr
    assert not out.exists()  # nothing written before the error
