"""Where each encoder comes from, decided before any record is read: a local model folder, a plugin, or a hub id
that is in the local Hugging Face cache or can be downloaded.

Without this check a mistyped local folder reads as a bad hub id, and offline a hub id that is not cached retries
for about 50 s and ends in a transformers error naming neither the encoder nor the fix. Here a missing folder is
named at once; offline (HF_HUB_OFFLINE set, or the hub's host refusing a connection within HUB_PROBE_SECONDS) an
uncached hub id is a one-line error with the fix, and a cached one is loaded from the cache without asking the hub.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from spp_scl.core.errors import InputError

HUB_PROBE_SECONDS = 3.0
OFFLINE_WORDS = ("1", "true", "yes", "on")


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_unreachable_reason() -> str | None:
    """Why the hub cannot be asked (None when it can): offline mode set, or no connection to its host."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in OFFLINE_WORDS:
            return f"{name} is set"
    endpoint = urlparse(hub_endpoint())
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=HUB_PROBE_SECONDS).close()
    except OSError as error:
        return f"{hub_endpoint()} cannot be reached: {error.strerror or error}"
    return None


def looks_like_path(spec: str) -> bool:
    """A spec no hub id can be: absolute, relative to . or ~, or with more than one '/' (ids are org/name)."""
    return spec.startswith(("/", ".", "~")) or "\\" in spec or spec.count("/") > 1


def hub_cache_folder() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def check_encoder(spec: str, option: str, unreachable) -> bool:
    """True when `spec` must load from the local Hugging Face cache only (a cached hub id, the hub out of reach); an
    InputError naming the option, the encoder and the fix when it cannot be loaded at all. `unreachable()` says why
    the hub cannot be asked (None when it can); it is called only for a hub id."""
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise InputError(f"{option} {spec}: a file, not a model folder (a folder with config.json, or a hub id)")
        if not (path / "config.json").is_file():
            raise InputError(f"{option} {spec}: the folder has no config.json, so it is not a transformers model")
        return False  # a folder: transformers never asks the hub
    if looks_like_path(spec):
        raise InputError(f"{option} {spec}: no such folder")
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = isinstance(try_to_load_from_cache(spec, "config.json"), str)
    except ValueError as error:  # huggingface_hub's HFValidationError: no id has this form
        raise InputError(f"{option} {spec}: neither a local folder nor a hub id ({error})") from None
    why = unreachable()
    if why is not None and not cached:
        raise InputError(
            f"{option} {spec}: not in the local Hugging Face cache ({hub_cache_folder()}) and the hub cannot be asked "
            f"({why}): download it where the hub can be reached (huggingface-cli download {spec}) and copy that "
            "cache here, or give a local model folder"
        )
    return why is not None


def check_encoders(text_encoder: str | None, image_encoder: str | None) -> dict[str, bool]:
    """{spec: load from the local cache only} for both encoders (an image plugin is the plugin loader's to check, a
    timm model timm's, after the checks of check_timm_spec); the hub is probed at most once, and only for a hub id.
    See check_encoder."""
    from spp_scl.extract.image_encoder import is_plugin
    from spp_scl.extract.timm_encoder import check_timm_spec, is_timm

    probed: list[str | None] = []

    def unreachable() -> str | None:
        if not probed:
            probed.append(hub_unreachable_reason())
        return probed[0]

    local_only = {}
    if text_encoder is not None:
        local_only[text_encoder] = check_encoder(text_encoder, "--text-encoder", unreachable)
    if image_encoder is not None and is_timm(image_encoder):
        check_timm_spec(image_encoder)
    elif image_encoder is not None and not is_plugin(image_encoder):
        local_only[image_encoder] = check_encoder(image_encoder, "--image-encoder", unreachable)
    return local_only
