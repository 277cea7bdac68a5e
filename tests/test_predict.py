"""predict.py: any task's checkpoint on raw text, from input=, input_file= or stdin."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, compose_cfg
from rnnlab.predict import main, predict, read_inputs
from rnnlab.tasks.charlm import CharLMModule
from rnnlab.utils.errors import UserError

OPTIONS = ["task.predict.length=30", "task.predict.temperature=0.8", "task.predict.top_k=5", "task.predict.seed=3"]


def expected(ckpt: Path, inputs: list[str]) -> list[str]:
    """What the module itself gives for `inputs` with OPTIONS."""
    return CharLMModule.from_checkpoint(ckpt).predict_text(inputs, length=30, temperature=0.8, top_k=5, seed=3)


def run_predict(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    # The child's stdin is a pipe (never a terminal), holding `stdin` or nothing.
    return subprocess.run([sys.executable, "predict.py", *args], cwd=ROOT, input=stdin or "", capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("form", ["input", "input_file", "stdin"])
def test_predict_command_line_reads_every_input_form(tiny_run: tuple[Path, dict], tmp_path: Path, form: str) -> None:
    ckpt = tiny_run[0] / "checkpoints" / "best.ckpt"
    inputs = ["KING:"] if form == "input" else ["KING:", "QUEEN:", "Good night"]
    lines = "".join(f"{text}\n" for text in inputs)
    args = {
        "input": (["input=KING:"], None),
        "input_file": ([f"input_file={tmp_path / 'in.txt'}"], None),
        "stdin": ([], lines),  # neither input nor input_file, stdin piped (input=-: test_read_inputs)
    }[form]
    (tmp_path / "in.txt").write_text(lines)
    done = run_predict(f"ckpt_path={ckpt}", *args[0], *OPTIONS, stdin=args[1])
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = expected(ckpt, inputs)
    assert done.stdout == "".join(f"{o}\n" for o in outputs)  # each output, then a line break
    assert [o[: len(i)] for o, i in zip(outputs, inputs)] == inputs and all(len(o) == len(i) + 30 for o, i in zip(outputs, inputs))


def test_predict_jsonl_pairs_inputs_and_outputs(tiny_run: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = tiny_run[0] / "checkpoints" / "best.ckpt"
    (tmp_path / "in.txt").write_text("KING:\nQUEEN:\n")
    cfg = compose_cfg(tmp_path, [f"ckpt_path={ckpt}", f"input_file={tmp_path / 'in.txt'}", "format=jsonl", *OPTIONS], "predict")
    outputs = expected(ckpt, ["KING:", "QUEEN:"])
    assert predict(cfg) == list(zip(["KING:", "QUEEN:"], outputs))
    main(cfg)
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]  # one JSON object a line
    assert printed == [{"input": "KING:", "output": outputs[0]}, {"input": "QUEEN:", "output": outputs[1]}]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_read_inputs(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("\ufeffa b\n\nc\n")  # a byte-order mark, an empty line kept in place
    base = ["ckpt_path=x.ckpt"]
    cfg = lambda *o: compose_cfg(tmp_path, [*base, *o], "predict")  # noqa: E731
    assert read_inputs(cfg(r"input=KING:\nGood")) == ["KING:\nGood"]  # \n in input= is a newline
    assert read_inputs(cfg(f"input_file={tmp_path / 'in.txt'}")) == ["a b", "", "c"]
    assert read_inputs(cfg(), stdin=io.StringIO("x\ny\n")) == ["x", "y"]
    assert read_inputs(cfg("input=-"), stdin=Terminal("typed\n")) == ["typed"]  # '-': stdin even from a terminal
    for overrides, message in [
        ((), "no input: give input="),  # nothing given and stdin is a terminal: do not wait on it
        (("input=a", f"input_file={tmp_path / 'in.txt'}"), "give one of them, not both"),
        ((f"input_file={tmp_path / 'nope.txt'}",), "nope.txt: no such file"),
    ]:
        with pytest.raises(UserError, match=message):
            read_inputs(cfg(*overrides), stdin=Terminal(""))


def test_predict_bad_options(tiny_run: tuple[Path, dict], tmp_path: Path) -> None:
    ckpt = tiny_run[0] / "checkpoints" / "best.ckpt"
    for overrides, message in [
        (["+task.predict.beam=3"], r"task.predict.beam: the charlm task has no such option; it takes \['length', 'temperature', 'top_k', 'seed'\]"),
        (["task.predict.top_k=0"], "top_k=0: must be a positive integer"),
        (["format=xml"], r"format='xml': choose one of \('text', 'jsonl'\)"),
        (["input=KING7"], "input 1 contains characters the vocabulary lacks: '7'"),
    ]:
        with pytest.raises(UserError, match=message):
            predict(compose_cfg(tmp_path, [f"ckpt_path={ckpt}", "input=KING:", *overrides], "predict"))


def test_bare_options_go_to_the_checkpoints_task(tiny_run: tuple[Path, dict], tmp_path: Path) -> None:
    """predict.py's `length=30 ...` (no task.predict. prefix, no task=) reach the checkpoint's predict_text."""
    sys.path.insert(0, str(ROOT))
    try:
        from predict import bare_options
    finally:
        sys.path.remove(str(ROOT))
    from omegaconf import OmegaConf

    own = {k for k in OmegaConf.load(ROOT / "configs" / "predict.yaml") if k != "defaults"}
    assert bare_options([f"{k}=x" for k in own]) == [f"{k}=x" for k in own]  # predict.yaml's own keys stay as they are
    ckpt = tiny_run[0] / "checkpoints" / "best.ckpt"
    bare = ["length=30", "temperature=0.8", "top_k=5", "seed=3"]
    argv = bare_options(["predict.py", f"ckpt_path={ckpt}", "input=KING:", "format=text", *bare])
    assert argv == ["predict.py", f"ckpt_path={ckpt}", "input=KING:", "format=text", *(f"+options.{o}" for o in bare)]
    assert predict(compose_cfg(tmp_path, argv[1:], "predict")) == [("KING:", expected(ckpt, ["KING:"])[0])]
    with pytest.raises(UserError, match=r"^beam: the charlm task has no such option; it takes \['length'"):
        predict(compose_cfg(tmp_path, bare_options([f"ckpt_path={ckpt}", "input=KING:", "beam=5"]), "predict"))
