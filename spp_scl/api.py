"""The Python API: extract a cache, train a run, load it, predict and evaluate, in a few calls.

    import spp_scl

    cache = spp_scl.extract("posts.csv", "cache/files/posts.h5")                  # the one encoder pass
    run = spp_scl.train(cache, "runs/out/posts", epochs=40, patience=10, lr=1e-3)   # select on dev, test once
    run.metrics["test"]["accuracy"]
    spp_scl.load_run("runs/out/posts").predict([{"image": "photo.jpg", "text": "what a day"}])
    spp_scl.evaluate(run, "labelled.csv")        # accuracy, F1, per class, confusion matrix

The same steps as `spp-scl extract`, `train`, `predict` and `evaluate`, with the same checks and errors (each a
`spp_scl.core.errors.ToolError` whose message names the file or field). `spp_scl` re-exports these functions and
imports this module only when one is called, so `import spp_scl` stays fast; `extract`, `predict` and `evaluate`
need the `[extract]` extra (the encoders), `train` and `load_run` do not.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from pathlib import Path

from spp_scl.core.errors import InputError, Refused

logger = logging.getLogger(__name__)

PREDICTOR_OPTIONS = ("text_encoder", "image_encoder", "device", "batch_size", "workers", "trust_plugin")
EXAMPLES = 5  # unserved or unlabelled pairs listed by id and reason in evaluate's result


def extract(
    data: str | Path,
    out: str | Path | None = None,
    *,
    dataset: str | None = None,
    text_encoder: str | None = None,
    image_encoder: str | None = None,
    **settings,
) -> Path:
    """Run the frozen encoders over `data` (a CLMLF split folder, or a .csv / .jsonl file with image, text, label,
    split) and write the HDF5 feature cache `out` (default cache/files/<dataset>__<text>__<image>.h5); the path
    of the cache. The encoders default to the paper's (BERT-base, ResNet-50); `settings` are the other fields of
    `spp_scl.extract.config.ExtractConfig` (text_layers, max_length, classes, force, progress, ...). An up-to-date
    cache is left as it is."""
    from spp_scl.core.extras import require

    require("transformers")
    require("accelerate")
    from spp_scl.extract.config import ExtractConfig
    from spp_scl.extract.pipeline import run

    _check_names(settings, [f.name for f in dataclasses.fields(ExtractConfig)], "extract setting")
    given = {"dataset": dataset, "text_encoder": text_encoder, "image_encoder": image_encoder}
    config = ExtractConfig(
        data=str(data),
        out=None if out is None else str(out),
        **{key: value for key, value in given.items() if value is not None},
        **settings,
    )
    return Path(run(config).path)


def train(cache: str | Path, out: str | Path, preset: str | None = None, *, force: bool = False, **fields) -> Run:
    """Train a head on the cache's train split, select on dev, evaluate on test once, write the run folder `out`;
    the finished `Run`. `preset` (mvsa-single, mvsa-multiple, hfm, ...) then `fields` (any field of
    `spp_scl.heads.config.SPPSCLConfig`: lr, epochs, patience, seed, head, ...) give the config, as
    `spp-scl train --preset P --FIELD V`. An `out` that holds a finished run is refused unless `force`."""
    from spp_scl.heads.presets import resolve_config
    from spp_scl.runs.train.finished_run import METRICS_FILE
    from spp_scl.runs.train.trainer import train as train_run

    if not Path(cache).is_file():
        raise InputError(f"cache {cache}: no such file")
    if preset is None:  # the preset the cache's dataset calls for, as `spp-scl train` picks it
        from spp_scl.heads.presets import cache_preset

        preset, note = cache_preset(cache)
        if note:
            logging.getLogger(__name__).info(note)
    config = resolve_config(preset, **fields)
    if (Path(out) / METRICS_FILE).is_file() and not force:
        raise Refused(f"{out} holds a finished run (its {METRICS_FILE}): choose another out, or pass force=True")
    train_run(cache, config, out)
    return load_run(out)


def load_run(path: str | Path) -> Run:
    """The finished run folder at `path` (written by `train` or `spp-scl train`), checked as predict checks it."""
    return Run(path)


class Run:
    """A finished run folder: `path`, `config` (its SPPSCLConfig), `class_names`, `metrics` (metrics.json: dev and
    test accuracy, F1, per class, confusion matrix), and `predict` for new pairs. The encoders are loaded on the
    first `predict` and kept for the next calls with the same options. An export of a seed ensemble (`spp-scl
    export`) predicts as the ensemble; its `members` are its run folders, and `config` and `metrics` the first's."""

    def __init__(self, path: str | Path):
        from spp_scl.runs.predict.run_folder import RunFolder, exported_members
        from spp_scl.runs.train.checkpoint import read_json_object

        self.members: list[Path] = exported_members(path)
        folder = RunFolder(self.members[0])
        self.path: Path = Path(path) if len(self.members) > 1 else folder.path
        self.config = folder.config
        self.class_names: list[str] = folder.class_names
        self.metrics: dict = read_json_object(folder.path / "metrics.json")
        self._predictors: dict = {}

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def predictor(self, **options):
        """The run's `spp_scl.runs.predict.predictor.Predictor` with these options (text_encoder, image_encoder,
        device, batch_size, workers, trust_plugin), built once."""
        _check_names(options, PREDICTOR_OPTIONS, "predict option")
        key = tuple(sorted(options.items()))
        if key not in self._predictors:
            from spp_scl.core.extras import require

            require("transformers")
            from spp_scl.runs.predict.predictor import Predictor

            self._predictors[key] = Predictor(self.path, **options)
        return self._predictors[key]

    def predict(self, pairs, **options) -> list[dict]:
        """One dict per pair, in input order: {"id", "prediction", "probabilities"}, or {"id", "error"} for a pair
        that cannot be scored (a missing image, an empty text). A pair is a dict with `text` and `image` (a path
        or a PIL image) and optionally `id`, as a row of predict's pair files, or an (image, text) tuple.
        `options`: see `predictor`."""
        return [result.as_dict() for result in self.predictor(**options).predict(_pairs_from(pairs))]


def _pairs_from(items) -> list:
    """Dicts (text, image, optional id and label) as predict's Pairs; tuples and Pairs pass as they are."""
    from spp_scl.runs.predict.pair_files import Pair

    pairs = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            pairs.append(item)
            continue
        image, record_id, label = item.get("image"), item.get("id"), item.get("label")
        if image is None or (isinstance(image, str) and not image.strip()):
            name = str(record_id) if record_id is not None else f"pair {index}"
            pairs.append(Pair(name, None, item.get("text"), f"{name}: the pair has no image", label=label))
            continue
        name = str(record_id) if record_id is not None else str(image) if isinstance(image, (str, Path)) else str(index)
        pairs.append(Pair(name, Path(image) if isinstance(image, str) else image, item.get("text"), label=label))
    return pairs


def evaluate(run: Run | str | Path, pairs, *, images: str | Path | None = None, **options) -> dict:
    """The run's metrics on labelled pairs: a .csv / .jsonl / .json pair file as predict reads (`images`: the
    folder its image paths are relative to) with a `label` column (a class name or index), or a list of dicts
    with text, image and label. The result holds `spp_scl.runs.train.metrics.classification_metrics` (accuracy,
    f1_weighted, f1_macro, per_class, confusion_matrix, records: the pairs scored) and what was left out:
    `pairs` (all), `not_predicted` (pairs predict could not serve) and `unlabelled` (no label, or one that is
    not a class of the run), each with up to five examples (id and reason). `options`: see `Run.predictor`."""
    import numpy as np

    from spp_scl.extract.records import parse_label
    from spp_scl.runs.predict.pair_files import read_pair_file
    from spp_scl.runs.train.metrics import classification_metrics

    run = run if isinstance(run, Run) else load_run(run)
    if isinstance(pairs, (str, Path)):
        source = str(pairs)
        try:
            items = list(read_pair_file(pairs, images))
        except ValueError as error:
            raise InputError(str(error)) from None
    else:
        source, items = "pairs", _pairs_from(pairs)
    if not any(_label_given(pair) for pair in items if pair.problem is None):
        raise InputError(
            f"{source}: no pair has a 'label' field (a label column: a class name or index; in a CLMLF .json list "
            "emotion_label): evaluate needs labelled pairs"
        )
    not_predicted, unlabelled, scored, labels = [], [], [], []
    for pair in items:
        label = parse_label(pair.label, run.class_names) if pair.problem is None else None
        if pair.problem is not None:
            not_predicted.append({"id": pair.id, "error": pair.problem})
        elif label is None:
            reason = "no label" if not _label_given(pair) else f"label {pair.label!r} is not one of {run.class_names}"
            unlabelled.append({"id": pair.id, "error": reason})
        else:
            scored.append(pair)
            labels.append(label)
    predictions, kept = [], []
    for label, result in zip(labels, run.predict(scored, **options)):
        if "error" in result:
            not_predicted.append(result)
        else:
            kept.append(label)
            predictions.append(run.class_names.index(result["prediction"]))
    if not kept:
        first = (not_predicted + unlabelled)[0]
        raise InputError(
            f"{source}: none of its {len(items)} pairs could be evaluated ({len(not_predicted)} not predicted, "
            f"{len(unlabelled)} without a known label; first: {first['id']}: {first['error']})"
        )
    metrics = classification_metrics(np.array(kept), np.array(predictions), run.class_names)
    return {
        **metrics,
        "run": str(run.path),
        "source": source,
        "pairs": len(items),
        "not_predicted": len(not_predicted),
        "not_predicted_examples": not_predicted[:EXAMPLES],
        "unlabelled": len(unlabelled),
        "unlabelled_examples": unlabelled[:EXAMPLES],
    }


def _label_given(pair) -> bool:
    return pair.label is not None and not (isinstance(pair.label, str) and not pair.label.strip())


def _check_names(given: dict, known, what: str) -> None:
    """An unknown keyword is a one-line InputError with the closest known name."""
    for name in given:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(known))}"
            raise InputError(f"unknown {what} {name!r}{hint}")
