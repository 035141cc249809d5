"""A paraphrase file for text views: one paraphrase (e.g. a back-translation) per post, by record id.

CLMLF's data-based contrastive learning pairs each post with one back-translation of its text; CLMLF published
them as a JSON list `[{"id": "1", "text_translation": "..."}]` (for MVSA-Single's posts, `back_translations.json`
beside its split files). Accepted forms:
- a JSON list (or a JSONL file, one object per line) of objects with `id` and one of `text_translation`,
  `paraphrase` or `text`;
- a JSON object mapping id -> paraphrase.
Ids are compared as text ("5" and 5 are the same id, as in the split files). A malformed file, an entry without
an id or a text, a text that is not a string, or an id given twice is an error naming the file and the entry.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from spp_scl.extract.records import BadInput

TEXT_FIELDS = ("text_translation", "paraphrase", "text")


def _entries(path: Path):
    """(where, raw entry) pairs of the file."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BadInput(f"--view-paraphrases {path} is not UTF-8 text: {error}") from None
    if path.suffix.lower() == ".jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    yield f"{path}:{number}", json.loads(line)
                except json.JSONDecodeError as error:
                    raise BadInput(f"--view-paraphrases {path}:{number} is not valid JSON: {error}") from None
        return
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise BadInput(f"--view-paraphrases {path} is not valid JSON: {error}") from None
    if isinstance(value, dict):
        for key, paraphrase in value.items():
            yield f"{path}[{key!r}]", {"id": key, "paraphrase": paraphrase}
    elif isinstance(value, list):
        for index, entry in enumerate(value):
            yield f"{path}[{index}]", entry
    else:
        raise BadInput(f"--view-paraphrases {path} must hold a JSON list or object, not a {type(value).__name__}")


def read_paraphrases(path: str | Path) -> tuple[dict[str, str], str]:
    """({record id: paraphrase}, sha256 of the file's bytes)."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"--view-paraphrases {path}: no such file")
    paraphrases: dict[str, str] = {}
    for where, entry in _entries(path):
        if not isinstance(entry, dict):
            raise BadInput(f"{where}: expected an object with id and text_translation, got {type(entry).__name__}")
        if entry.get("id") is None or isinstance(entry["id"], (dict, list, bool)):
            raise BadInput(f"{where}: field 'id' is missing or not a string or number")
        field = next((name for name in TEXT_FIELDS if name in entry), None)
        if field is None:
            raise BadInput(f"{where}: no paraphrase field (one of {', '.join(TEXT_FIELDS)})")
        if not isinstance(entry[field], str):
            raise BadInput(f"{where}: field {field!r} must be a string, got {type(entry[field]).__name__}")
        record_id = str(entry["id"])
        if record_id in paraphrases:
            raise BadInput(f"{where}: id {record_id!r} is given twice")
        paraphrases[record_id] = entry[field]
    return paraphrases, hashlib.sha256(path.read_bytes()).hexdigest()
