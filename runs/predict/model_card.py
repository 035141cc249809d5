"""The model card of an export (README.md): YAML metadata in the Hugging Face model-card format (library, tags,
datasets, metrics, a model-index with the evaluated numbers) and the sections a reader needs to use the model
honestly: what it is, its encoders, its data and split, how it was trained and selected, its dev and test metrics
(per run, over runs with their interval, and the seed ensemble), how to run it, and its limits. Everything is read
from the runs' own files; nothing is estimated."""

from __future__ import annotations

import json

from spp_scl.runs.predict.run_folder import RunFolder
from spp_scl.runs.train.checkpoint import read_json_object
from spp_scl.runs.trials.seed_summary import HEADLINE, HEADLINE_NAMES, ensemble_summary
from spp_scl.runs.trials.statistics import collapse_reason, describe, spread_cell

SPLITS = ("dev", "test")


def _yaml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid YAML scalar, quotes and escapes included


def _front_matter(name: str, dataset: str, summaries: dict) -> list[str]:
    lines = [
        "---",
        "library_name: spp-scl",
        "tags:",
        *(f"- {tag}" for tag in ("spp-scl", "multimodal", "image-text-classification", "sentiment-analysis")),
        "datasets:",
        f"- {_yaml_string(dataset)}",
        "metrics:",
        "- accuracy",
        "- f1",
        "model-index:",
        f"- name: {_yaml_string(name)}",
        "  results:",
    ]
    for split, summary in summaries.items():
        lines += [
            "  - task:",
            "      type: image-text-classification",
            "      name: Image-text sentiment classification",
            "    dataset:",
            f"      name: {_yaml_string(dataset)}",
            f"      type: {_yaml_string(dataset)}",
            f"      split: {split}",
            "    metrics:",
        ]
        for key in HEADLINE:
            kind = "accuracy" if key == "accuracy" else "f1"
            label = f"{split} {HEADLINE_NAMES[key]} (mean of {summary[key]['n']} run(s))"
            lines += [
                f"    - type: {kind}",
                f"      value: {summary[key]['mean']:.4f}",
                f"      name: {_yaml_string(label)}",
            ]
    return [*lines, "---", ""]


def model_card(runs: list[RunFolder], members: list[str], name: str) -> str:
    first = runs[0]
    fingerprint = first.fingerprint
    dataset = fingerprint.get("dataset", {})
    dataset_name = dataset.get("name", "unknown")
    metrics = [read_json_object(run.path / "metrics.json") for run in runs]
    splits = [split for split in SPLITS if all(split in entry for entry in metrics)]
    summaries = {
        split: {key: describe([entry[split][key] for entry in metrics]) for key in HEADLINE} for split in splits
    }
    rows = [{"run_dir": str(run.path), "seed": run.config.seed, "config": run.config.to_dict()} for run in runs]
    text, image = fingerprint.get("text", {}), fingerprint.get("image", {})
    encoders = first.run_config.get("encoders") or {}
    config = first.config
    selections = sorted({run.config.selection for run in runs})
    lines = _front_matter(
        name, dataset_name, {split: summaries[split] for split in splits if split == "test"} or summaries
    )
    lines += [
        f"# {name}",
        "",
        f"{'A seed ensemble of ' + str(len(runs)) + ' heads' if len(runs) > 1 else 'A head'} "
        f"(`{config.head}`{', fusion ' + config.fusion if config.head == 'spp-scl' else ''}, modality "
        f"{config.modality}) for {len(first.class_names)}-class image-text classification ({', '.join(first.class_names)}), "
        f"trained with spp-scl on frozen features of a text and an image encoder. "
        f"{first.run_config.get('trainable_parameters', '?'):,} trainable parameters per head.",
        "",
        "## How to use",
        "",
        "With spp-scl installed (its README's set-up):",
        "",
        f'    spp-scl predict {name} --image photo.jpg --text "what a day"',
        f"    spp-scl evaluate {name} --pairs labelled.csv",
        "",
        "predict loads the encoders named below (a hub id, or a local folder at the path given; "
        "`--text-encoder` / `--image-encoder` point elsewhere) and refuses any whose weights differ from those the "
        "head was trained on (their sha256 is in each run's config.json).",
        "",
        "## Encoders (frozen)",
        "",
        f"- Text: `{encoders.get('text') or text.get('model')}` ({text.get('class', '?')}), layers {text.get('layers')}, "
        f"at most {text.get('max_length')} tokens; weights sha256 `{str(text.get('weights_sha256', '?'))[:16]}...`.",
        f"- Image: `{encoders.get('image') or image.get('name')}` ({image.get('kind', '?')}), resize "
        f"{image.get('preprocess', {}).get('resize')}, crop {image.get('preprocess', {}).get('crop')}; weights "
        f"sha256 `{str(image.get('weights_sha256', '?'))[:16]}...`.",
        f"- Features stored as {fingerprint.get('dtype', '?')}.",
        "",
        "## Data",
        "",
        f"- Dataset `{dataset_name}`; classes {', '.join(first.class_names)}.",
    ]
    policy = dataset.get("policy", {})
    if "split" in policy:
        lines.append(
            f"- Splits drawn by `extract --split {','.join(map(str, policy['split']))} --split-seed "
            f"{policy.get('split_seed')}` (stratified by label)."
        )
    else:
        lines.append("- Splits as the data files give them.")
    records = {split: metrics[0][split].get("records") for split in splits}
    lines.append("- Evaluated records: " + ", ".join(f"{split} {count}" for split, count in records.items()) + ".")
    lines += [
        "",
        "## Training and selection",
        "",
        f"- Selection protocol: {', '.join(selections)}"
        + (" (**optimistic**: the checkpoint was picked on test)" if "authors" in selections else "")
        + f"; the checkpoint with the best dev {metrics[0].get('selection_metric', config.selection_metric)}.",
        f"- lr {config.lr:g}, batch {config.batch_size}, up to {config.epochs} epochs"
        + (f", patience {config.patience}" if config.patience else "")
        + (f", weight averaging {config.weight_average:g}" if config.weight_average else "")
        + f", precision {config.precision}.",
        "",
        "| run | seed | selected epoch | epochs run | command |",
        "|---|---|---|---|---|",
    ]
    for run, member, entry in zip(runs, members, metrics):
        finished = read_json_object(run.path / "finished.json") if (run.path / "finished.json").is_file() else {}
        command = run.run_config.get("command", "-")
        lines.append(
            f"| `{member}` | {run.config.seed} | {entry.get('selected_epoch', '-')} | {finished.get('epochs_run', '-')} "
            f"| `{command}` |"
        )
    lines += ["", "## Evaluation", ""]
    header = " | ".join(f"{split} {HEADLINE_NAMES[key]}" for split in splits for key in HEADLINE)
    lines += [f"| run | {header} |", "|---|" + "---|" * (len(splits) * len(HEADLINE))]
    for member, entry in zip(members, metrics):
        lines.append(
            f"| `{member}` | " + " | ".join(f"{entry[split][key]:.4f}" for split in splits for key in HEADLINE) + " |"
        )
    if len(runs) > 1:
        lines.append(
            "| mean +- std [95% interval] | "
            + " | ".join(spread_cell(summaries[split][key]) for split in splits for key in HEADLINE)
            + " |"
        )
        ensembles = {split: ensemble_summary(rows, split) for split in splits}
        if all(ensembles.values()):
            lines.append(
                "| seed ensemble (what predict serves) | "
                + " | ".join(f"{ensembles[split][key]:.4f}" for split in splits for key in HEADLINE)
                + " |"
            )
    collapsed = [
        f"`{member}` ({split}: {reason})"
        for member, entry in zip(members, metrics)
        for split in splits
        if (reason := collapse_reason(entry[split]["confusion_matrix"]))
    ]
    if collapsed:
        lines += ["", "**Collapsed**: " + "; ".join(collapsed) + "."]
    lines += [
        "",
        "## Limits",
        "",
        "- The heads read features of the encoders above only; other encoders are refused, not adapted to.",
        f"- Trained and evaluated on `{dataset_name}` alone; other domains, languages (non-English texts were "
        "skipped by default) and label definitions are untested.",
        "- The checkpoint was selected on dev, so dev figures are optimistic; the test figures are one look at "
        "the test split. Probabilities are not calibrated.",
        "",
    ]
    return "\n".join(lines)
