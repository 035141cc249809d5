"""Label new image-text pairs with a trained run: the frozen encoders its cache was made with, then its head.

    from spp_scl.runs.predict.predictor import predict_pairs
    results = predict_pairs("runs/out/my-run", [("photo.jpg", "what a day"), ("other.jpg", "meh")])
    results[0].prediction, results[0].probabilities     # "positive", {"positive": 0.81, ...}

How a prediction is kept equal to what the trainer saw:
- The encoders are checked against the run's cache fingerprint (weight, config and tokenizer hashes, layers,
  max length, image preprocessing); any difference refuses the run with the list of differences. Where the
  encoders were loaded from (their path or id) may differ: the hashes are what identify them.
- The text encoder runs with the layers the head reads and the fingerprint's max length; the image
  preprocessing (resize, crop) is the fingerprint's.
- Encoder outputs are rounded to the cache's storage type (float16) before the head, as the trainer read them.

Batch independence: every step is per pair (encoders in eval mode, padding masked, the head in eval mode), so
a pair's result does not depend on the others in its batch, up to float rounding (about 1e-6 in the encoders;
rarely that flips a float16 rounding of one feature). The one exception is the paper's batch-attention fusion
("cmf-batch"), where each sample attends over its batch-mates. For such a run, predict scores each pair as
the last member of one fixed reference batch: the first (batch_size - 1) dev records of the run's cache (the
batch size and the kind of batch the trainer evaluated with), so a result depends on that pair alone and is
the same whatever is predicted with it. This needs the run's cache at predict time; without it predict refuses.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from spp_scl.core.errors import Refused
from spp_scl.extract.fingerprint import differences, sha256_json
from spp_scl.extract.images import ImageProblem, load_pixels
from spp_scl.extract.records import text_problem
from spp_scl.runs.predict.encoder_choice import check_head_against_fingerprint, checked_fingerprint, choose_encoders
from spp_scl.runs.predict.pair_files import Pair, PairResult
from spp_scl.runs.predict.run_folder import RunFolder, RunFolderError, exported_members

NON_FINITE = (
    "the head's class probabilities for this pair are not finite (NaN or infinity): its features or the run's "
    "weights are out of range; not predicted"
)


class EncoderMismatch(Refused, RunFolderError):
    """The encoders given are not those the run's cache was extracted with."""


def _without(description: dict, key: str) -> dict:
    return {k: v for k, v in description.items() if k != key}


def encoder_differences(fingerprint: dict, text: dict | None, image: dict | None, head_layers: list[int]) -> list[str]:
    """One line per setting in which the encoders' describe() output differs from the cache fingerprint.

    The model path or id (text "model", image "name" of a transformers or timm model) is where the weights were
    loaded from, not what they are, so it is left out; for a plugin, "name" names the weights and is compared.
    The fingerprint's layers are replaced by the head's (it may read only the last k of the cached layers).
    """
    stored, given = {}, {}
    if text is not None:
        stored["text"] = {**_without(fingerprint["text"], "model"), "layers": head_layers}
        given["text"] = _without(text, "model")
    if image is not None:
        ignore = "name" if fingerprint["image"].get("kind") in ("transformers", "timm") else None
        stored["image"] = _without(fingerprint["image"], ignore)
        given["image"] = _without(image, ignore)
        if "source_sha256" not in stored["image"]:  # a cache from before format 2 recorded no plugin source
            given["image"].pop("source_sha256", None)
    return differences(stored, given)


def config_sha256_as_if_loaded_from(config, name_or_path: str | None) -> str:
    """The fingerprint's config hash, computed as if the model had been loaded from `name_or_path`: a transformers
    config records where it was loaded from (`_name_or_path`), and that alone must not refuse a moved model folder."""
    return sha256_json({**config.to_dict(), "_name_or_path": name_or_path})


def _rgb_source(image):
    """A path, or a PIL image as lossless PNG bytes, so that load_rgb decodes both the same way."""
    from PIL import Image

    if isinstance(image, Image.Image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        buffer.seek(0)
        return buffer
    return Path(image)


def as_pairs(items: Iterable) -> Iterator[Pair]:
    """Pairs from Pair objects, (image, text) or (id, image, text); an image's id is its path (else its position)."""
    for index, item in enumerate(items):
        if isinstance(item, Pair):
            yield item
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            image, text = item
            yield Pair(str(image) if isinstance(image, (str, Path)) else str(index), image, text)
        elif isinstance(item, (tuple, list)) and len(item) == 3:
            yield Pair(str(item[0]), item[1], item[2])
        else:
            yield Pair(str(index), None, None, f"pair {index}: expected (image, text) or (id, image, text)")


def check_ensemble_member(member: RunFolder, first: RunFolder, fingerprint: dict) -> None:
    """An ensemble member must read the same features (cache fingerprint, text layers) and name the same classes."""
    config_file = member.path / "config.json"
    differences = []
    if checked_fingerprint(member.fingerprint, config_file) != fingerprint:
        differences.append("its cache fingerprint (other encoders or data)")
    if member.class_names != first.class_names:
        differences.append(f"its classes {member.class_names} (not {first.class_names})")
    if member.text_layers != first.text_layers:
        differences.append(f"its text layers {member.text_layers} (not {first.text_layers})")
    if differences:
        raise RunFolderError(
            f"{member.path} cannot join an ensemble with {first.path}: it differs in " + "; ".join(differences)
        )


class Predictor:
    """A run's encoders and head, loaded once; `predict` streams results in input order.

    Given several run folders (a seed ensemble), the encoders run once and each run's head scores the pairs;
    the class probabilities are averaged. The runs must come from the same cache (the same encoders and text
    layers) and have the same classes."""

    def __init__(
        self,
        run_dir: str | Path | list[str | Path],
        text_encoder: str | None = None,
        image_encoder: str | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 16,
        workers: int = 2,
        trust_plugin: bool = False,
    ):
        """`trust_plugin`: run a plugin image encoder (`file.py:function`) given as `image_encoder`; a plugin
        is code, so it is never taken from the cache and never run without this (runs/predict/encoder_choice.py)."""
        from transformers.utils import logging as transformers_logging

        from spp_scl.extract.encoder_source import check_encoders
        from spp_scl.extract.image_encoder import ImageEncoder
        from spp_scl.extract.text_encoder import TextEncoder

        transformers_logging.disable_progress_bar()  # a bar per model load would mix with predict's own

        run_dirs = [run_dir] if isinstance(run_dir, (str, Path)) else list(run_dir)
        run_dirs = [member for path in run_dirs for member in exported_members(path)]  # an export's ensemble
        if not run_dirs:
            raise RunFolderError("no run folder given")
        self.members = [RunFolder(path) for path in run_dirs]
        self.run = self.members[0]
        self.device = torch.device(device)
        self.batch_size = max(1, batch_size)
        self.workers = workers
        self.class_names = self.run.class_names
        config_file = self.run.path / "config.json"
        fingerprint = checked_fingerprint(self.run.fingerprint, config_file)
        check_head_against_fingerprint(fingerprint, self.class_names, self.run.text_layers, config_file)
        for member in self.members[1:]:
            check_ensemble_member(member, self.run, fingerprint)
        for member in self.members:  # after the fields' own checks, which name a bad value more precisely
            member.check_fingerprint_record()
        self.models = [member.trained_head(self.device) for member in self.members]
        self.model = self.models[0]
        self.uses_text = any(getattr(model, "uses_text", True) for model in self.models)
        self.uses_image = any(getattr(model, "uses_image", True) for model in self.models)
        self.feature_dtype = getattr(torch, fingerprint["dtype"])
        text_encoder, image_encoder = choose_encoders(
            self.run, text_encoder, image_encoder, self.uses_text, self.uses_image, trust_plugin
        )

        self.text = self.image = None
        local_only = check_encoders(  # a missing folder or, offline, an uncached hub id: one line naming it
            text_encoder if self.uses_text else None, image_encoder if self.uses_image else None
        )
        if self.uses_text:
            try:
                self.text = TextEncoder(
                    text_encoder,
                    layers=self.run.text_layers,
                    max_length=fingerprint["text"]["max_length"],
                    device=self.device,
                    local_files_only=local_only.get(text_encoder, False),
                    sentence_token=fingerprint["text"]["sentence_token"],
                )
            except ValueError as error:  # e.g. a model with fewer layers than the head reads
                raise EncoderMismatch(
                    f"text encoder {text_encoder} does not fit this run, whose cache was extracted "
                    f"with {fingerprint['text'].get('model')} (layers {self.run.text_layers} "
                    f"used): {error}"
                ) from None
        if self.uses_image:
            preprocess = fingerprint["image"]["preprocess"]
            self.image = ImageEncoder(
                image_encoder,
                self.device,
                resize=preprocess["resize"],
                crop=preprocess["crop"],
                local_files_only=local_only.get(image_encoder, False),
            )
        lines = encoder_differences(fingerprint, self._describe_text(), self._describe_image(), self.run.text_layers)
        if lines:
            raise EncoderMismatch(
                f"the encoders given differ from those the cache of {self.run.path} was extracted with "
                f"(text {fingerprint['text'].get('model')}, image {fingerprint['image'].get('name')}):\n  "
                + "\n  ".join(line.replace("this run asks", "given") for line in lines)
                + "\nPass --text-encoder / --image-encoder (Python: text_encoder=, image_encoder=) with those encoders."
            )
        # Only SPP-SCL's fusion reads `fusion`; the other heads are per sample whatever it says.
        self.batch_contexts = [
            self._batch_fusion_context(member, model)
            if getattr(member.config, "head", "spp-scl") == "spp-scl" and member.config.fusion == "cmf-batch"
            else None
            for member, model in zip(self.members, self.models)
        ]
        self.batch_context = self.batch_contexts[0]

    def _describe_text(self) -> dict | None:
        if self.text is None:
            return None
        stored = self.run.fingerprint["text"]
        return {
            **self.text.describe(),
            "config_sha256": config_sha256_as_if_loaded_from(self.text.model.config, stored.get("model")),
        }

    def _describe_image(self) -> dict | None:
        if self.image is None:
            return None
        description = self.image.describe()
        if self.image.kind == "transformers":
            stored = self.run.fingerprint["image"]
            description["config_sha256"] = config_sha256_as_if_loaded_from(
                self.image.module.model.config, stored.get("name")
            )
        return description

    @torch.no_grad()
    def _batch_fusion_context(self, run: RunFolder, model) -> tuple[torch.Tensor, torch.Tensor]:
        """(v, t) of the reference batch-mates: the first (batch_size - 1) dev records of the run's cache."""
        run.require_cache("predict with the batch-attention fusion (cmf-batch)")
        splits = run.cache_splits()
        split_name = "dev" if "dev" in splits else splits[0]
        split = run.open_split(split_name, in_memory=False)
        try:
            count = min(run.config.batch_size - 1, len(split))
            batch = split.batch(list(range(count))).to(self.device)
        finally:
            split.close()
        outputs = model(batch.image_maps, batch.first_token, batch.token_states, batch.token_mask)
        return outputs["v"], outputs["t"]

    def _load(self, pair: Pair) -> tuple[Pair, torch.Tensor | None, str | None]:
        """(pair, pixels, problem): runs on the prefetch threads, so image decoding overlaps the encoders."""
        if pair.problem is not None:
            return pair, None, pair.problem
        if self.uses_text:
            problem = text_problem(pair.text, allow_non_english=True)
            if problem is not None:
                return pair, None, problem
        if not self.uses_image:
            return pair, None, None
        if pair.image is None:
            return pair, None, "no image given"
        try:
            return pair, load_pixels(_rgb_source(pair.image), self.image.preprocess), None
        except ImageProblem as problem:
            return pair, None, str(problem)
        except (OSError, ValueError) as error:  # a PIL image that cannot be written as PNG, say
            return pair, None, f"image could not be read ({error})"

    def _round(self, features: torch.Tensor) -> torch.Tensor:
        """As stored in the cache and read back by the trainer: e.g. float16, then float32."""
        return features.to(self.feature_dtype).float().to(self.device)

    @torch.no_grad()
    def _head_inputs(self, pixels: list[torch.Tensor], texts: list[str]) -> dict:
        inputs = {}
        if self.uses_text:
            encoded = self.text.encode(texts)
            longest = max(tokens.shape[1] for _, tokens in encoded)
            layers, dim = encoded[0][1].shape[0], encoded[0][1].shape[2]
            tokens = torch.zeros(len(texts), layers, longest, dim)
            mask = torch.zeros(len(texts), longest, dtype=torch.bool)
            for row, (_, states) in enumerate(encoded):
                tokens[row, :, : states.shape[1]] = states
                mask[row, : states.shape[1]] = True
            inputs.update(
                first_token=self._round(torch.stack([first for first, _ in encoded])),
                token_states=self._round(tokens),
                token_mask=mask.to(self.device),
            )
        if self.uses_image:
            inputs["image_maps"] = self._round(self.image(torch.stack(pixels)))
        return inputs

    @torch.no_grad()
    def _probabilities(self, inputs: dict) -> torch.Tensor:
        """Class probabilities of each pair: the run's, or the mean of the ensemble members'."""
        members = [
            self._member_probabilities(model, context, inputs)
            for model, context in zip(self.models, self.batch_contexts)
        ]
        return members[0] if len(members) == 1 else torch.stack(members).mean(0)

    @staticmethod
    def _member_probabilities(model, batch_context, inputs: dict) -> torch.Tensor:
        text_keys = ("first_token", "token_states", "token_mask")
        wanted = {
            key: value
            for key, value in inputs.items()
            if (getattr(model, "uses_text", True) or key not in text_keys)
            and (getattr(model, "uses_image", True) or key != "image_maps")
        }
        outputs = model(**wanted)
        if batch_context is None:
            logits = outputs["logits"]
        else:  # each pair fused as the last member of the fixed reference batch, one pair at a time
            context_v, context_t = batch_context
            fused = [
                model.fusion(
                    torch.cat([context_v, outputs["v"][row : row + 1]]),
                    torch.cat([context_t, outputs["t"][row : row + 1]]),
                )[-1:]
                for row in range(len(outputs["v"]))
            ]
            logits = model.classifier(torch.cat(fused))
        return torch.softmax(logits.float(), dim=1).cpu()

    def _predict_chunk(self, chunk: list[tuple[Pair, torch.Tensor | None, str | None]]) -> list[PairResult]:
        good = [(pair, pixels) for pair, pixels, problem in chunk if problem is None]
        probabilities = iter(())
        if good:
            inputs = self._head_inputs([pixels for _, pixels in good], [pair.text for pair, _ in good])
            probabilities = iter(self._probabilities(inputs).tolist())
        results = []
        for pair, _, problem in chunk:
            if problem is not None:
                results.append(PairResult(pair.id, error=problem))
                continue
            p = next(probabilities)
            if not all(math.isfinite(value) for value in p):  # never served, and never NaN in a JSON line
                results.append(PairResult(pair.id, error=NON_FINITE))
                continue
            results.append(
                PairResult(
                    pair.id, self.class_names[max(range(len(p)), key=p.__getitem__)], dict(zip(self.class_names, p))
                )
            )
        return results

    def predict(self, pairs: Iterable, progress: bool = False, total: int | None = None) -> Iterator[PairResult]:
        """One result per input, in input order; a bad pair gets a result with `error` set. Streams: pairs are
        read, decoded (on `workers` threads, ahead of the encoders) and scored `batch_size` at a time."""
        from tqdm.auto import tqdm

        from spp_scl.extract.shard_encoding import prefetch

        loaded = prefetch(self._load, as_pairs(pairs), self.workers, depth=2 * self.batch_size)
        with tqdm(total=total, unit="pair", desc="predict", disable=not progress, dynamic_ncols=True) as bar:
            chunk = []
            for item in loaded:
                chunk.append(item)
                if len(chunk) == self.batch_size:
                    yield from self._predict_chunk(chunk)
                    bar.update(len(chunk))
                    chunk = []
            if chunk:
                yield from self._predict_chunk(chunk)
                bar.update(len(chunk))


def predict_pairs(
    run_dir: str | Path | list[str | Path],
    pairs: Iterable,
    *,
    text_encoder: str | None = None,
    image_encoder: str | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
    workers: int = 2,
    trust_plugin: bool = False,
) -> list[PairResult]:
    """Predict a list of (image, text) or (id, image, text) pairs (image: a path or a PIL image) with a run.
    Loads the encoders each call: for repeated calls, build a Predictor once and call its predict().
    `trust_plugin`: see Predictor."""
    predictor = Predictor(run_dir, text_encoder, image_encoder, device, batch_size, workers, trust_plugin)
    return list(predictor.predict(pairs))
