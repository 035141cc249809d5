"""Optuna's own pictures of a sweep's study (its matplotlib backend, PNG): the dev metric as a contour over tau x
theta, the parameters' importances (fANOVA over the completed trials), and each trial's per-epoch curve with
where the pruner stopped it. A picture the study cannot give yet (too few completed trials, an axis with one
value) is left out with the reason, never an error: the summary still gets written."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

logger = logging.getLogger(__name__)


def _save(axes, path: Path) -> Path:
    import numpy as np

    figure = (np.ravel(axes)[0] if isinstance(axes, np.ndarray) else axes).get_figure()
    figure.set_size_inches(7, 5.5)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path


def plot_study(study: optuna.Study, space: dict[str, list], metric: str, folder: Path) -> tuple[list[Path], list[str]]:
    """(the pictures written, why any was left out)."""
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as optuna_plots

    written, skipped = [], []
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varied = [name for name, values in space.items() if len(values) > 1]
    target_name = f"dev {metric}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the matplotlib backend is marked experimental
        seen = {name: {t.params.get(name) for t in completed} - {None} for name in ("temperature", "theta")}
        if all(len(values) >= 2 for values in seen.values()):
            written.append(
                _save(
                    optuna_plots.plot_contour(study, params=["temperature", "theta"], target_name=target_name),
                    folder / "optuna_contour_tau_theta.png",
                )
            )
        else:
            skipped.append("contour: needs completed trials at 2 or more values of both tau and theta")
        if len(varied) >= 1 and len(completed) >= 2:
            try:
                written.append(
                    _save(
                        optuna_plots.plot_param_importances(study, target_name=target_name),
                        folder / "optuna_param_importances.png",
                    )
                )
            except (RuntimeError, ValueError) as error:  # e.g. every completed trial has the same value
                skipped.append(f"parameter importances: {error}")
        else:
            skipped.append("parameter importances: needs a swept axis and 2 completed trials")
        if any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
            written.append(_save(optuna_plots.plot_intermediate_values(study), folder / "optuna_epochs.png"))
    for reason in skipped:
        logger.debug(f"left out of the summary: {reason}")
    return written, skipped
