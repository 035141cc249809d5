"""One extraction: dataset -> frozen encoders -> shard files -> one HDF5 cache.

Why shards: an extraction must survive Ctrl-C or kill -9 at any point and resume without redoing finished
work, and an HDF5 file being written is not crash-safe. So the records (in canonical order) are cut into
fixed shards; each shard's features go to `<cache>.parts/shard-NNNNN.safetensors`, written to a temporary
name and renamed, so a shard file exists whole or not at all. A rerun skips the shards that exist. When all
exist, they are laid out in the HDF5 cache (extract/assembly.py: written under a temporary name, read back
against its checksums, renamed). The shard plan depends only on the records and the batch sizes, never on
where a run stopped or on how many processes ran it, so a resumed or a multi-process run computes every batch
exactly as one uninterrupted run does.

What protects finished work: one extraction per output at a time (extract/output_lock.py); shards carry a
checksum, and a damaged one is named and extracted again (extract/shards.py); a full disk is one line naming
the file and the space needed, with the partial file removed and finished shards kept (spp_scl/core/storage.py);
anything at --out that is not this tool's cache, or an unreadable unfinished extraction, is refused by name
and replaced only with --force.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from spp_scl.cache.checksums import CacheDamaged
from spp_scl.cache.layout import is_verifiable, read_attrs, read_skipped, skip_reason_counts, split_sizes
from spp_scl.core.allocator import keep_freed_memory
from spp_scl.core.errors import InputError, Refused
from spp_scl.core.storage import write_atomically
from spp_scl.extract.assembly import assemble
from spp_scl.extract.config import ExtractConfig
from spp_scl.extract.encoder_source import check_encoders
from spp_scl.extract.fingerprint import FORMAT_VERSION, cache_differences
from spp_scl.extract.image_encoder import ImageEncoder, is_plugin
from spp_scl.extract.output_lock import OutputLock
from spp_scl.extract.records import BadInput, Dataset, cache_name, data_notes, read_dataset
from spp_scl.extract.shard_encoding import extract_shards, plan_shards, storage_dtype
from spp_scl.extract.shards import shard_path, shard_problem
from spp_scl.extract.skip_report import no_usable_record, skipped_report_path, write_skipped_report
from spp_scl.extract.text_encoder import TextEncoder
from spp_scl.extract.timm_encoder import is_timm, local_folder
from spp_scl.extract.view_budget import check_view_budget
from spp_scl.extract.views import make_view_plan

logger = logging.getLogger(__name__)


class CacheMismatch(Refused):
    """An existing cache (or unfinished extraction) was made with other settings."""


@dataclass
class Summary:
    path: Path
    records: dict[str, int]
    skipped: list[dict]
    file_bytes: int
    seconds: float
    up_to_date: bool = False
    notes: list[str] = field(default_factory=list)  # classes read off the labels, a cache that cannot be verified

    def text(self) -> str:
        lines = [f"cache {self.path}" + (" is up to date: nothing to do" if self.up_to_date else " written")]
        lines.extend(self.notes)
        lines.append("records: " + ", ".join(f"{split} {count}" for split, count in self.records.items()))
        lines.append(
            f"skipped: {len(self.skipped)}" + "".join(f"\n  {n} x {r}" for r, n in skip_reason_counts(self.skipped))
        )
        if self.skipped:
            lines.append(f"  the list with reasons: {skipped_report_path(self.path)}")
        total = max(sum(self.records.values()), 1)
        lines.append(
            f"file size: {self.file_bytes / 2**20:.1f} MiB ({self.file_bytes / total / 1024:.1f} KiB per record)"
        )
        lines.append(f"time: {self.seconds:.1f} s")
        return "\n".join(lines)


def parts_folder(cache: Path) -> Path:
    return cache.with_name(cache.name + ".parts")


class UnfinishedWorkUnreadable(InputError):
    """The record of an unfinished extraction (plan.json, fingerprint.json) cannot be read."""


def _read_json(path: Path, parts: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UnfinishedWorkUnreadable(
            f"{path} is unreadable ({error}): pass --force to start this extraction over (deletes {parts})"
        ) from None


def _read_plan(path: Path, parts: Path, records: int) -> dict:
    plan = _read_json(path, parts)
    keys = ("shard_size", "image_batch_size", "text_batch_size")
    if (
        not isinstance(plan, dict)
        or plan.get("records") != records
        or not all(isinstance(plan.get(k), int) and not isinstance(plan.get(k), bool) and plan[k] > 0 for k in keys)
    ):
        raise UnfinishedWorkUnreadable(
            f"{path} does not describe this extraction's plan (positive {', '.join(keys)} and records {records}): "
            f"pass --force to start this extraction over (deletes {parts})"
        )
    return plan


def _write_json(path: Path, value) -> None:
    write_atomically(path, json.dumps(value, indent=1).encode(), kept=f"finished shards are kept in {path.parent}")


def build_fingerprint(dataset: Dataset, text: TextEncoder, image: ImageEncoder, dtype: str) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "dataset": {
            "name": dataset.name,
            "class_names": dataset.class_names,
            "sources_sha256": dataset.sources_sha256(),
            "policy": dataset.policy,
        },
        "text": text.describe(),
        "image": image.describe(),
        "dtype": dtype,
    }


def _check(stored: dict, wanted: dict, what: Path, force: bool) -> bool:
    """True when `stored` matches; raises CacheMismatch when not (unless force, then False)."""
    lines = cache_differences(stored, wanted)
    if not lines:
        return True
    if force:
        return False
    raise CacheMismatch(
        f"{what} was made with other settings:\n  "
        + "\n  ".join(lines)
        + "\nUse another --out for these settings, or pass --force to rebuild it."
    )


def _summary(cache: Path, seconds: float, up_to_date: bool, notes: list[str]) -> Summary:
    records = split_sizes(cache)
    return Summary(cache, records, read_skipped(cache), cache.stat().st_size, seconds, up_to_date, notes)


def _where(spec: str) -> str:
    """An encoder's location as recorded in the cache: a local folder or plugin file as an absolute path (so it
    never resolves against another directory later); a hub id as given."""
    folder = local_folder(spec) if is_timm(spec) else None
    if folder is not None:
        return f"timm:local-dir:{folder.resolve()}"
    if is_plugin(spec):
        target, function = spec.rsplit(":", 1)
        return f"{Path(target).resolve()}:{function}" if target.endswith(".py") else spec
    return str(Path(spec).resolve()) if Path(spec).exists() else spec


def _existing_cache(cache: Path, force: bool) -> dict | None:
    """The attributes of what is at `cache`, None when there is nothing there (or --force replaces what is)."""
    if not cache.exists():
        return None
    if cache.is_dir():
        raise InputError(f"--out {cache} is a folder: give the path of the cache file")
    try:
        return read_attrs(cache)
    except CacheDamaged as damaged:
        if force:
            return None  # replaced when the new cache is renamed into place
        raise InputError(f"{damaged}; pass --force to replace it, or choose another --out") from None


def run(config: ExtractConfig, log=None) -> Summary:
    log = log or logger.info
    from accelerate import PartialState
    from transformers.utils import logging as transformers_logging

    started = time.time()
    keep_freed_memory()
    state = PartialState()
    transformers_logging.disable_progress_bar()
    storage_dtype(config.dtype)
    local_only = check_encoders(config.text_encoder, config.image_encoder)  # before any record: fail fast
    dataset = read_dataset(
        config.data,
        config.dataset,
        config.images,
        config.classes,
        config.strict,
        config.allow_non_english,
        config.split,
        config.split_seed,
        {
            "text": config.text_column,
            "image": config.image_column,
            "label": config.label_column,
            "id": config.id_column,
        },
    )
    cache = (
        Path(config.out)
        if config.out
        else Path("cache/files") / cache_name(dataset, config.text_encoder, config.image_encoder)
    )
    if cache.is_dir():
        raise InputError(f"--out {cache} is a folder: give the path of the cache file")
    if not dataset.records:  # the reasons in the message, and every skipped record beside where the cache would be
        skipped = [item.as_dict() for item in dataset.skipped]
        if state.is_main_process and skipped:
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_skipped_report(cache, skipped)
        raise BadInput(no_usable_record(config.data, skipped, skipped_report_path(cache)))
    cache.parent.mkdir(parents=True, exist_ok=True)
    # One extraction per output: the main process holds the lock (and names its holder when it cannot).
    lock, refusal = OutputLock(cache), None
    if state.is_main_process:
        try:
            lock.acquire()
        except Refused as error:
            refusal = error
    if state.num_processes > 1:
        from accelerate.utils import gather_object

        if any(gather_object([refusal is not None])) and refusal is None:
            raise Refused(f"{cache} is being written by another extraction (the main process names it)")
    if refusal is not None:
        raise refusal
    try:
        return _run_locked(config, state, dataset, cache, started, log, local_only)
    finally:
        lock.release()


def _run_locked(
    config: ExtractConfig, state, dataset: Dataset, cache: Path, started: float, log, local_only: dict
) -> Summary:
    parts = parts_folder(cache)
    notes = data_notes(dataset)  # said again in the summary
    for note in notes:
        if note.startswith("warning: "):
            logger.warning(note.removeprefix("warning: "))
    text_local, image_local = (local_only.get(spec, False) for spec in (config.text_encoder, config.image_encoder))
    text = TextEncoder(
        config.text_encoder, config.text_layers, config.max_length, state.device, text_local, config.sentence_token
    )
    if text.max_length < config.max_length:
        notes = notes + [f"note: {config.text_encoder} reads at most {text.max_length} tokens; texts are cut there"]
    image = ImageEncoder(config.image_encoder, state.device, config.image_resize, config.image_crop, image_local)
    fingerprint = build_fingerprint(dataset, text, image, config.dtype)
    views = make_view_plan(config, dataset, text, image)
    if views is not None:  # only then: a cache without views keeps the fingerprint it always had
        fingerprint["views"] = views.describe(text, image)
        notes = notes + [
            f"note: {count} {split} records have no paraphrase in {config.view_paraphrases}: their text views "
            "encode their own text"
            for split, count in views.own_text.items()
        ]

    existing = _existing_cache(cache, config.force)
    if existing is not None and _check(existing["fingerprint"], fingerprint, cache, config.force):
        state.wait_for_everyone()
        if state.is_main_process:
            shutil.rmtree(parts, ignore_errors=True)
            write_skipped_report(cache, read_skipped(cache))  # a kill right after the rename may have lost it
        if not is_verifiable(existing):
            notes = notes + [
                f"note: {cache} was written before checksums (format 1): it cannot be verified; "
                "--force rebuilds it with them"
            ]
        return _summary(cache, time.time() - started, True, notes)
    if views is not None:
        check_view_budget(views, dataset, text, image, config, cache, parts)
    plan = {
        "shard_size": config.shard_size,
        "image_batch_size": config.image_batch_size,
        "text_batch_size": config.text_batch_size,
        "records": len(dataset.records),
    }
    resuming = False
    if (parts / "fingerprint.json").exists():
        try:
            stored = _read_json(parts / "fingerprint.json", parts)
            stored_plan = _read_plan(parts / "plan.json", parts, len(dataset.records))
        except UnfinishedWorkUnreadable:
            if not config.force:
                raise
            log(f"--force: starting over; the unfinished extraction in {parts} cannot be read")
        else:
            resuming = _check(stored, fingerprint, parts, config.force)
            if resuming and stored_plan != plan:
                log(f"resuming {parts} with its batch plan {stored_plan} (the batch sizes it was started with)")
                plan = stored_plan
    state.wait_for_everyone()
    if state.is_main_process and not resuming:
        shutil.rmtree(parts, ignore_errors=True)
        parts.mkdir(parents=True)
        _write_json(parts / "plan.json", plan)
        _write_json(parts / "fingerprint.json", fingerprint)
    config = ExtractConfig(
        **{
            **asdict(config),
            "shard_size": plan["shard_size"],
            "image_batch_size": plan["image_batch_size"],
            "text_batch_size": plan["text_batch_size"],
        }
    )
    shards = plan_shards(len(dataset.records), config.shard_size)
    if state.is_main_process and resuming:
        for leftover in parts.glob("*.tmp"):  # a write a kill interrupted
            leftover.unlink(missing_ok=True)
        for i in range(len(shards)):  # every finished shard read back against its checksum
            path = shard_path(parts, i)
            problem = shard_problem(path) if path.exists() else None
            if problem is not None:
                logger.warning(f"{problem}: it is deleted and extracted again")
                path.unlink(missing_ok=True)
    state.wait_for_everyone()
    finished = {i for i in range(len(shards)) if shard_path(parts, i).exists()}
    if finished and state.is_main_process:
        log(f"resuming: {len(finished)} of {len(shards)} shards already extracted in {parts}")
    mine = [i for i in range(len(shards)) if i % state.num_processes == state.process_index and i not in finished]
    error = None
    try:
        # Each process checks the unfinished work against its own settings: processes could differ (weights, files).
        _check(_read_json(parts / "fingerprint.json", parts), fingerprint, parts, force=False)
        extract_shards(mine, shards, parts, dataset, text, image, config, show=state.is_main_process, views=views)
    except Exception as caught:  # reported after every process has stopped, so none waits for ever
        error = caught
    if state.num_processes > 1:
        from accelerate.utils import gather_object

        if any(gather_object([error is not None])) and error is None:
            raise RuntimeError("another extraction process failed; see its error above (finished shards are kept)")
    if error is not None:
        raise error
    state.wait_for_everyone()

    if state.is_main_process:
        import h5py
        import safetensors
        import transformers

        attrs = {
            "format_version": FORMAT_VERSION,
            "dataset": dataset.name,
            "class_names": dataset.class_names,
            "text_layers": text.layers,
            "dtype": config.dtype,
            "fingerprint": fingerprint,
            "provenance": {
                "data": config.data if config.data.startswith("hf:") else str(Path(config.data).resolve()),
                "images": str(dataset.image_root.resolve()),
                "text_encoder": _where(config.text_encoder),
                "image_encoder": _where(config.image_encoder),
                **(
                    {"view_paraphrases": str(Path(config.view_paraphrases).resolve())}
                    if config.view_paraphrases
                    else {}
                ),
                "versions": {
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "h5py": h5py.__version__,
                    "safetensors": safetensors.__version__,
                    "python": sys.version.split()[0],
                },
            },
        }
        if views is not None:
            attrs["views"] = views.attributes()
        skipped = assemble(cache, parts, len(shards), dataset, attrs, (len(text.layers), text.dim), views)
        write_skipped_report(cache, skipped)
        shutil.rmtree(parts, ignore_errors=True)
    state.wait_for_everyone()
    return _summary(cache, time.time() - started, False, notes)
