"""The Hydra Optuna sweeper, resumable: a search with `n_trials` in a study kept in a database runs
only the trials that study still lacks, so a search stopped half-way (killed, or a machine that went
away) goes on where it stopped when the same command runs again. Needs rnnlab[sweep].

Selected by configs/hparams_search/*_optuna.yaml (`hydra.sweeper._target_`); everything else is the
plugin's (hydra-optuna-sweeper), whose options are documented there.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
logging.getLogger("alembic").setLevel(logging.WARNING)  # the SQLite storage's migrations: a line per plugin they set up

try:
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
except ImportError:  # rnnlab[sweep] is not installed: Hydra scans this module anyway, at every start
    OptunaSweeper = None


def finished_trials(study_name: str | None, storage: Any) -> int:
    """Trials of a stored study that ended (complete, pruned or failed); 0 for a new study or no
    storage. A trial left running by a killed search is not counted: it is run again."""
    if not storage or not study_name:
        return 0
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # no such study yet
        return 0
    ended = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    return sum(t.state in ended for t in study.get_trials(deepcopy=False))


if OptunaSweeper is not None:

    class ResumableOptunaSweeper(OptunaSweeper):
        """OptunaSweeper whose `n_trials` is the study's total, not a number of new trials."""

        def sweep(self, arguments: list[str]) -> None:
            impl = self.sweeper
            if isinstance(impl.storage, str) and impl.storage.startswith("sqlite:///"):
                Path(impl.storage[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)  # SQLite makes the file, not its folder
            done = finished_trials(impl.study_name, impl.storage)
            if done:
                left = max(impl.n_trials - done, 0)
                log.info("Study %s in %s has %d finished trials of n_trials=%d: running %d more", impl.study_name, impl.storage, done, impl.n_trials, left)
                impl.n_trials = left
            return super().sweep(arguments)
