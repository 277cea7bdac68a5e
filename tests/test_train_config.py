"""The Hydra configs: composition, the interface names, every model option, --help, bad options."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from conftest import CONFIG_DIR, run_script
from rnnlab.nn import Recurrent, TorchRecurrent
from rnnlab.tasks.settings import SCHEDULES, build_optimizer, build_recurrent, optimizer_settings, scheduler_settings

MODELS = ["rnn", "gru", "lstm", "layernorm_lstm", "torch_rnn", "torch_gru", "torch_lstm"]


def test_composed_config_has_the_interface(cfg_train: DictConfig) -> None:
    cfg = cfg_train
    assert cfg.task.name == "charlm"
    assert cfg.model.layer == "rnnlab" and cfg.model.cell == "lstm"
    for key in ["model.hidden_size", "model.num_layers", "model.dropout", "task.data.path", "task.data.batch_size", "task.data.bptt", "seed", "ckpt_path"]:
        assert OmegaConf.select(cfg, key, default="missing") != "missing", key
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
    assert cfg.task.module.dropout == cfg.model.dropout  # one knob for both dropouts unless overridden
    assert cfg.callbacks.model_checkpoint.monitor is None  # filled from the task: CharLMModule.monitor
    assert "_target_" not in cfg.task.module and "_target_" not in cfg.task.data  # the registry finds the classes
    assert "vocab" not in cfg.task.module  # data-derived sizes never live in the config
    assert cfg.hydra.run.dir.startswith("outputs/charlm/runs/") and cfg.hydra.sweep.dir.startswith("outputs/charlm/multiruns/")


@pytest.mark.parametrize("model", MODELS)
def test_every_model_config_builds_the_same_interface(cfg_factory, model: str) -> None:
    cfg = cfg_factory(f"model={model}", "model.hidden_size=10", "model.num_layers=2")
    cell = model.removeprefix("torch_")
    assert cfg.model.cell == cell
    assert cfg.model.layer == ("torch" if model.startswith("torch_") else "rnnlab")
    rnn = build_recurrent(OmegaConf.to_container(cfg.model, resolve=True), input_size=7)
    assert type(rnn) is (TorchRecurrent if model.startswith("torch_") else Recurrent)
    out, state = rnn(torch.randn(3, 5, 7))
    assert out.shape == (3, 5, 10) and rnn.output_size == 10
    h = state[0] if cell.endswith("lstm") else state
    assert h.shape == (2, 3, 10)


def test_experiment_config(cfg_factory) -> None:
    cfg = cfg_factory("experiment=charlm_shakespeare", tiny=False)
    assert cfg.model.cell == "lstm" and cfg.model.layer == "rnnlab"
    assert cfg.trainer.max_time == "00:00:20:00" and cfg.task.data.path is None  # tiny Shakespeare
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.task.module.optimizer.lr)
    # What the Trainer passes on tiny Shakespeare (1,115,394 characters, 90% for training).
    windows = (round(0.9 * 1_115_394) - 1) // cfg.task.data.batch_size // cfg.task.data.bptt
    total = windows * cfg.trainer.max_epochs
    assert (windows, total) == (245, 3185)  # what the run logged; the recipe's comment must say so too
    comment = (CONFIG_DIR / "experiment" / "charlm_shakespeare.yaml").read_text()
    assert f"An epoch is {windows} windows" in comment and f"({total} steps" in comment
    # The recipe names its schedule from the fixed table; the Hydra spelling reads the same.
    settings = scheduler_settings(OmegaConf.to_container(cfg.task.module.scheduler))
    assert settings == {"name": "warmup_cosine", "warmup_steps": 200, "min_lr_ratio": 0.05}
    assert optimizer_settings(OmegaConf.to_container(cfg.task.module.optimizer))["lr"] == 3e-3
    hydra_way = {"_target_": "rnnlab.utils.schedules.warmup_cosine", "_partial_": True, "warmup_steps": 200, "min_lr_ratio": 0.05}
    assert scheduler_settings(hydra_way) == settings
    sched = SCHEDULES[settings["name"]](opt, total_steps=total, **{k: v for k, v in settings.items() if k != "name"})
    assert type(sched) is type(instantiate(hydra_way)(opt, total_steps=total))
    lrs = []
    for _ in range(total + 5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    warm = cfg.task.module.scheduler.warmup_steps
    assert lrs[0] < lrs[warm - 1] == pytest.approx(cfg.task.module.optimizer.lr)  # linear warm-up
    assert lrs[-1] == pytest.approx(cfg.task.module.optimizer.lr * cfg.task.module.scheduler.min_lr_ratio)  # decayed


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_is_fused_by_default_and_steps_as_the_loop_does(name: str) -> None:
    """Adam and AdamW take torch's fused kernel unless the config says `fused`; it must walk the same
    path as torch's per-tensor loop (float64, 20 steps of a quadratic), and `fused: false` is kept."""
    torch.manual_seed(0)
    start = [torch.randn(5, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)]
    paths = {}
    for fused in (None, False):
        params = [torch.nn.Parameter(t.clone()) for t in start]
        settings = {"name": name, "lr": 0.1, "weight_decay": 0.01} | ({} if fused is None else {"fused": fused})
        opt = build_optimizer(settings, params)
        assert opt.defaults["fused"] is (fused is None)
        for _ in range(20):
            opt.zero_grad()
            sum(((p - 1) ** 2 * torch.arange(1, p.numel() + 1, dtype=p.dtype).view_as(p)).sum() for p in params).backward()
            opt.step()
        paths[fused] = params
    assert not torch.equal(paths[None][0], start[0])  # it moved
    assert not build_optimizer({"name": name, "foreach": True}, paths[None]).defaults["fused"]  # asked for another kernel
    for a, b in zip(paths[None], paths[False]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("debug", ["fast", "overfit"])
def test_debug_configs_compose(cfg_factory, debug: str) -> None:
    cfg = cfg_factory(f"debug={debug}")
    assert cfg.trainer.get("fast_dev_run") or cfg.trainer.get("overfit_batches")


def test_eval_and_sample_configs_compose(cfg_factory) -> None:
    cfg = cfg_factory("ckpt_path=x.ckpt", config_name="eval", tiny=False)
    assert cfg.task.name == "charlm" and cfg.ckpt_path == "x.ckpt"
    cfg = cfg_factory("ckpt_path=x.ckpt", "length=7", config_name="sample", tiny=False)
    assert cfg.length == 7 and cfg.prime == "\n" and cfg.top_k is None
    cfg = cfg_factory("ckpt_path=x.ckpt", "input=ab", "task.predict.length=7", config_name="predict", tiny=False)
    assert (cfg.input, cfg.input_file, cfg.format) == ("ab", None, "text")
    assert dict(cfg.task.predict) == {"length": 7, "temperature": 0.8, "top_k": None, "seed": None}


@pytest.mark.parametrize("entry", ["eval", "predict"])
def test_eval_and_predict_configs_resolve(entry: str) -> None:
    # Without a model group: task.module.dropout's default (model.dropout) must still resolve.
    done = run_script(f"{entry}.py", "ckpt_path=x.ckpt", "--cfg", "job", "--resolve")
    assert done.returncode == 0, done.stderr
    resolved = OmegaConf.create(done.stdout)
    assert resolved.task.module.dropout == 0.0 and resolved.ckpt_path == "x.ckpt"


@pytest.mark.slow
def test_help_lists_the_groups_and_options() -> None:
    done = run_script("train.py", "--help")
    assert done.returncode == 0, done.stderr
    for line in [
        "task: charlm",
        "model: gru, layernorm_lstm, lstm, mingru, minlstm, rnn, torch_gru, torch_lstm, torch_rnn",
        "trainer: cpu, ddp, ddp_cpu, gpu",
        "hparams_search: charlm_optuna, sentiment_optuna, seq2seq_optuna",
        "logger: csv, tensorboard",
        "debug: fast, overfit",
        "experiment: charlm_shakespeare",
        "callbacks: default",
        "paths: default",
    ]:
        assert line in done.stdout, line
    assert "RNNLAB_DATA_DIR" in done.stdout


def test_unknown_task_lists_the_valid_ones() -> None:
    done = run_script("train.py", "task=nope")
    assert done.returncode != 0
    assert "Could not find 'task/nope'" in done.stderr and "Available options in 'task':\n\tcharlm" in done.stderr


@pytest.mark.parametrize("recipe", ["sentiment_sst2", "sentiment_sweep", "sentiment_sst2_ensemble", "sentiment_sst2_adversarial",
                                    "sentiment_sst2_stacked"])
def test_sentiment_recipes_build_their_module(cfg_factory, recipe: str) -> None:
    """Each SST-2 recipe composes and builds its module (a tiny vocabulary in place of SST-2's), with
    one batch order per ensemble member or one in all (what SentimentModule.setup checks)."""
    from rnnlab.tasks.sentiment import SentimentModule

    cfg = cfg_factory(f"experiment={recipe}", tiny=False)
    kwargs = OmegaConf.to_container(cfg.task.module, resolve=True)
    module = SentimentModule(vocab=["<pad>", "<unk>", "good", "bad"], labels=["negative", "positive"],
                             model=OmegaConf.to_container(cfg.model, resolve=True), **kwargs)
    assert cfg.task.data.orders in (1, len(module.members))
    assert module.hparams.embeddings["path"] is None  # from scratch: no recipe uses pretrained vectors
    if recipe == "sentiment_sst2_adversarial":
        assert module.hparams.adversarial > 0 and len(module.members) == cfg.task.data.orders > 1
    if recipe == "sentiment_sst2_stacked":  # two layers with dropout between them; 0.5 on the sentence vector
        rnn = module.members[0].encoder.rnn
        assert rnn.num_layers == 2 and rnn.dropout == 0.3 and module.members[0].drop.p == 0.5
        assert len(module.members) == cfg.task.data.orders == 8
