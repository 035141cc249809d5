"""Which encoders predict may load, decided before any of them is loaded or run.

The rule: nothing read from a data file (the cache's attributes, the run folder's config.json or head.json)
names code that predict runs. Whoever hands over a run folder and a cache must not get to run code.
- Taken from the cache: only transformers model ids or folders, loaded with trust_remote_code=False (weights
  and configs are data; a folder's own modelling code is never imported).
- A plugin encoder (`file.py:function`, `package.module:function`) is code: predict uses one only when the
  user names it (`--image-encoder X`) and opts in (`--trust-plugin`; Python: `trust_plugin=True`), as with
  transformers' trust_remote_code. A plugin recorded in the cache is refused with a line saying how to opt in.
- Before the plugin's code runs, what can be compared is: the cache must have been made with a plugin, and
  the plugin's source file must have the sha256 its fingerprint records (caches from before format 2 record
  none). Everything else (weights, preprocessing) is compared after loading, as for any encoder.
- The fingerprint's values are checked before they are used (a storage type, sizes within bounds).
"""

from __future__ import annotations

from pathlib import Path

from spp_scl.core.errors import InputError, Refused
from spp_scl.extract.fingerprint import with_defaults
from spp_scl.extract.image_encoder import is_plugin, plugin_source_file, plugin_source_sha256
from spp_scl.extract.text_encoder import SENTENCE_TOKENS

FEATURE_DTYPES = ("float16", "float32")
IMAGE_KINDS = ("transformers", "timm", "plugin")
# Bounds on the sizes a run folder sets, so that a tampered one cannot make predict allocate without bound: the
# longest text encoders read 8,192 tokens (BERT 512), and image encoders take 224 to 896 pixels a side (a 1,024
# pixel float image is 12 MiB; an 8,192 pixel one, 805 MiB per image, before the encoder's own activations).
MAX_TOKENS = 1 << 13
MAX_SIDE = 1 << 10  # image resize and crop, in pixels


class PluginRefused(Refused):
    """A plugin encoder predict will not run: not asked for explicitly, or not the one the cache was made with."""


def _opt_in(spec: str = "FILE.py:FUNCTION") -> str:
    return f"--image-encoder {spec} --trust-plugin (Python: image_encoder={spec!r}, trust_plugin=True)"


def checked_fingerprint(fingerprint: object, source: Path) -> dict:
    """The run's record of its cache fingerprint, its values checked; `source` is the file it was read from."""

    def fail(field: str, why: str):
        raise InputError(f"{source}: field cache_fingerprint.{field} {why}")

    if not isinstance(fingerprint, dict) or not {"text", "image", "dtype"} <= fingerprint.keys():
        raise InputError(
            f"{source}: the run trained on a cache without an encoder fingerprint (a generated cache?); "
            "there are no encoders to predict with"
        )
    if fingerprint["dtype"] not in FEATURE_DTYPES:
        fail("dtype", f"must be one of {FEATURE_DTYPES}, got {fingerprint['dtype']!r}")
    text, image = fingerprint["text"], fingerprint["image"]
    if not isinstance(text, dict) or not isinstance(image, dict):
        fail("text", "and image must be objects")
    length = text.get("max_length")
    if not isinstance(length, int) or isinstance(length, bool) or not 1 <= length <= MAX_TOKENS:
        fail("text.max_length", f"must be a whole number from 1 to {MAX_TOKENS}, got {length!r}")
    layers = text.get("layers")
    if not isinstance(layers, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in layers):
        fail("text.layers", f"must be a list of layer numbers, got {layers!r}")
    preprocess = image.get("preprocess")
    if not isinstance(preprocess, dict):
        fail("image.preprocess", "must be an object")
    for key in ("resize", "crop"):
        value = preprocess.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_SIDE:
            fail(f"image.preprocess.{key}", f"must be a whole number from 1 to {MAX_SIDE}, got {value!r}")
    if preprocess["crop"] > preprocess["resize"]:
        fail("image.preprocess.crop", f"({preprocess['crop']}) must be at most the resize ({preprocess['resize']})")
    if image.get("kind") not in IMAGE_KINDS:
        fail("image.kind", f"must be one of {', '.join(IMAGE_KINDS)}, got {image.get('kind')!r}")
    fingerprint = with_defaults(fingerprint)  # a cache from before the sentence-token choice holds the first token
    if fingerprint["text"]["sentence_token"] not in SENTENCE_TOKENS:
        fail("text.sentence_token", f"must be one of {', '.join(SENTENCE_TOKENS)}, got {text['sentence_token']!r}")
    return fingerprint


def check_head_against_fingerprint(fingerprint: dict, class_names: list[str], head_layers: list[int], source: Path):
    """The head must read layers the cache holds and name the cache's classes, in its order."""
    missing = [layer for layer in head_layers if layer not in fingerprint["text"]["layers"]]
    if missing:
        raise InputError(
            f"{source}: head.json reads text layers {head_layers}, but the cache holds {fingerprint['text']['layers']}"
        )
    recorded = (
        fingerprint.get("dataset", {}).get("class_names") if isinstance(fingerprint.get("dataset"), dict) else None
    )
    if recorded is not None and list(recorded) != list(class_names):
        raise InputError(f"{source}: head.json names the classes {class_names}, but the cache's are {recorded}")


def check_plugin_before_running(spec: str, fingerprint_image: dict, trust_plugin: bool) -> None:
    """Everything about a plugin that can be compared without running it; raises PluginRefused."""
    if not trust_plugin:
        source = plugin_source_file(spec)
        raise PluginRefused(
            f"--image-encoder {spec} is a plugin: it runs the code of {source or spec}; predict runs it only when "
            f"you opt in: {_opt_in(spec)}"
        )
    if fingerprint_image.get("kind") != "plugin":
        raise PluginRefused(
            f"--image-encoder {spec} is a plugin, but the run's cache was extracted with the "
            f"{fingerprint_image.get('kind')} model {fingerprint_image.get('name')!r}: pass that model instead"
        )
    recorded = fingerprint_image.get("source_sha256")
    if recorded is not None:
        actual = plugin_source_sha256(spec)
        if actual != recorded:
            raise PluginRefused(
                f"--image-encoder {spec}: its source file {plugin_source_file(spec) or '(not found)'} is not the one "
                f"the run's cache was extracted with (sha256 {str(actual)[:12]}..., recorded {recorded[:12]}...); "
                "it was not run"
            )


def _recorded_encoders(recorded: dict, source: Path, wanted: dict[str, bool]) -> dict[str, str]:
    """The encoders `source` records for the roles wanted ({"text": True, ...}: True where none was given); a role
    it does not record is named, and a plugin (code) is never taken from a file."""
    chosen = {}
    for role, needed in wanted.items():
        value = recorded.get(role)
        if not needed:
            continue
        if not isinstance(value, str) or not value:
            raise InputError(f"{source} records no {role} encoder: name it with --{role}-encoder")
        if is_plugin(value):
            raise PluginRefused(
                f"{source} names the {role} encoder {value!r}, a plugin (code): predict does not run code named by "
                f"a data file; pass it yourself with {_opt_in()}"
            )
        chosen[role] = value
    return chosen


def choose_encoders(
    run, text_given: str | None, image_given: str | None, uses_text: bool, uses_image: bool, trust_plugin: bool
) -> tuple[str | None, str | None]:
    """(text, image) encoder specs for predict: those given, else those the run's config.json records (where they
    were loaded from; runs of 0.11 on), else those its cache records (older runs, which need the cache)."""
    fingerprint = run.fingerprint
    if uses_image and image_given is None and fingerprint["image"].get("kind") == "plugin":
        raise PluginRefused(
            f"the cache of {run.path} was extracted with a plugin image encoder ({fingerprint['image'].get('name')!r}); "
            f"a plugin is code, and predict never runs code named by a data file: pass it yourself with {_opt_in()}"
        )
    wanted = {"text": text_given is None and uses_text, "image": image_given is None and uses_image}
    if any(wanted.values()):
        in_run = run.run_config.get("encoders")
        if isinstance(in_run, dict):
            chosen = _recorded_encoders(in_run, run.path / "config.json", wanted)
        elif not run.cache.is_file():
            raise InputError(
                f"name the encoders with --text-encoder and --image-encoder: the run's cache "
                f"{run.cache}, which records where they were loaded from, is not there"
            )
        else:
            from spp_scl.cache.layout import read_attrs

            # the cache must still be the one the run trained on, or its encoders would be other ones
            provenance = read_attrs(run.require_cache("choosing the encoders")).get("provenance", {})
            provenance = provenance if isinstance(provenance, dict) else {}
            in_cache = {role: provenance.get(f"{role}_encoder") for role in ("text", "image")}
            chosen = _recorded_encoders(in_cache, run.cache, wanted)
        text_given = text_given or chosen.get("text")
        image_given = image_given or chosen.get("image")
    if uses_text and text_given is not None and is_plugin(text_given):
        raise PluginRefused(f"--text-encoder {text_given}: a text encoder is a transformers model id or folder")
    if uses_image and image_given is not None and is_plugin(image_given):
        check_plugin_before_running(image_given, fingerprint["image"], trust_plugin)
    return text_given, image_given
