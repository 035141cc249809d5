"""Stochastic views of each record, stored beside its clean features (`spp-scl extract --views V`).

The clean cache is computed once in eval mode, so the heads see the same features every epoch; the authors' code
ran BERT and ResNet in train mode inside every step (new dropout masks, batch statistics), and CLMLF's and MDSE's
training saw augmented images (CLMLF also a back-translated text). A view stands in for one such draw:
- text: the encoder with its dropout on (`view_text_dropout`), over the record's own text or, with
  `view_paraphrases`, over its paraphrase (CLMLF's back-translation); a paraphrase without dropout is one
  deterministic view, stored once and served for every view number;
- image: CLMLF's RandAugment (`view_image_augment`, extract/randaugment.py) and/or the image encoder with its
  BatchNorm layers in train mode over random batches of `view_batchnorm_batch` records of the same shard
  (`view_image_batchnorm`, the authors' regime; everything else stays in eval mode).
View k of a record pairs text view k with image view k; a part whose kinds are all off is not stored (the reader
serves the clean features for it). Views are stored for the splits in `view_splits` (train by default: dev and
test are evaluated on clean features) and for the text layers in `view_text_layers` (all cached ones by default).

Each view's randomness comes from its own stream (extract/view_streams.py), so a rerun, a resumed or a
multi-process extraction write the same views. Batch-statistics views depend on their batch-mates by nature:
those batches are drawn from a stream of the shard, so they depend on `shard_size` too, which the fingerprint
then records. The fingerprint records every setting here (with RandAugment's operations and values); V = 0 adds
nothing to it or to the file.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from spp_scl.extract.images import Preprocess, normalise, resize_and_crop
from spp_scl.extract.randaugment import RandAugment
from spp_scl.extract.records import BadInput, Dataset, Record
from spp_scl.extract.text_encoder import resolve_layers
from spp_scl.extract.view_streams import numpy_stream, torch_stream, view_seed

VIEW_TENSORS = ("view_image_maps", "view_token_states", "view_text_lengths")


@dataclass
class ViewPlan:
    """What views to make, resolved against the dataset and the encoders."""

    count: int
    splits: tuple[str, ...]
    seed: int
    text_dropout: bool
    text_layers: list[int]  # encoder layer numbers kept in text views, a subset of the cached ones
    text_positions: list[int]  # their positions among the cached layers
    augment: RandAugment | None
    batchnorm: bool
    batchnorm_batch: int
    shard_size: int
    paraphrases: dict[str, str] | None = None
    paraphrase_sha256: str | None = None
    own_text: dict[str, int] = field(default_factory=dict)  # view records without a paraphrase, per split (a note)
    _batchnorm_module: torch.nn.Module | None = None

    @property
    def text_views(self) -> int:
        """Text views stored per record: V with dropout, 1 for a paraphrase alone, 0 when the text stays clean."""
        return self.count if self.text_dropout else (1 if self.paraphrases is not None else 0)

    @property
    def image_views(self) -> int:
        return self.count if (self.augment is not None or self.batchnorm) else 0

    def wants(self, record: Record) -> bool:
        return record.split in self.splits

    def work(self, records: list[Record]) -> int:
        """Progress units of the views of these records (one per record, view and part)."""
        parts = (self.text_views > 0) + (self.image_views > 0)
        return sum(self.wants(r) for r in records) * self.count * parts

    def text_for(self, record: Record) -> str:
        if self.paraphrases is None:
            return record.text
        paraphrase = self.paraphrases.get(record.id, "")
        return paraphrase if paraphrase.strip() else record.text

    def describe(self, text_encoder, image_encoder) -> dict:
        """The fingerprint section: every setting that decides the stored views."""
        config = getattr(text_encoder.model, "config", None)
        text = None
        if self.text_views:
            text = {
                "views": self.text_views,
                "layers": self.text_layers,
                "dropout": self.text_dropout,
                "dropout_probabilities": {
                    "hidden": getattr(config, "hidden_dropout_prob", None),
                    "attention": getattr(config, "attention_probs_dropout_prob", None),
                }
                if self.text_dropout
                else None,
                "dropout_masks": "per record, over its real tokens, from its own stream" if self.text_dropout else None,
                "paraphrases_sha256": self.paraphrase_sha256,
                "missing_paraphrase": "the record's own text" if self.paraphrases is not None else None,
            }
        image = None
        if self.image_views:
            image = {
                "views": self.image_views,
                "randaugment": self.augment.describe() if self.augment is not None else None,
                "batchnorm_train_mode": {
                    "batch": self.batchnorm_batch,
                    "batches": "random within each shard of shard_size records",
                    "shard_size": self.shard_size,
                }
                if self.batchnorm
                else None,
                "preprocess": image_encoder.preprocess.as_dict(),
            }
        return {
            "count": self.count,
            "splits": list(self.splits),
            "seed": self.seed,
            "streams": "sha256(seed, kind, split, record id, view number)",
            "text": text,
            "image": image,
        }

    def attributes(self) -> dict:
        """The `views` file attribute: what the reader needs to serve the views."""
        return {
            "count": self.count,
            "splits": list(self.splits),
            "text_views": self.text_views,
            "image_views": self.image_views,
            "text_layers": self.text_layers if self.text_views else [],
        }

    # --- work done in the image loading threads --------------------------------------------------------
    def image_arrays(self, record: Record, rgb, preprocess: Preprocess) -> list[np.ndarray] | None:
        """The augmented crops of a record ([crop, crop, 3] uint8, one per view), or None without augmentation."""
        if self.augment is None:
            return None
        arrays = []
        for view in range(self.image_views):
            stream = numpy_stream(self.seed, "image-augment", record.split, record.id, view)
            crop = np.asarray(resize_and_crop(self.augment.augment(rgb, stream), preprocess))
            arrays.append(np.ascontiguousarray(crop[:, ::-1]) if self.augment.flips(stream) else crop)
        return arrays

    # --- per shard ----------------------------------------------------------------------------------------
    def batchnorm_module(self, image_encoder) -> torch.nn.Module:
        """A copy of the image encoder with only its BatchNorm layers in train mode (the encoder itself is never
        touched: its running statistics stay as loaded)."""
        if self._batchnorm_module is None:
            module = copy.deepcopy(image_encoder.module).eval()
            norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
            for norm in norms:
                norm.train()
            self._batchnorm_module = module
        return self._batchnorm_module

    def shard_views(
        self,
        records: list[Record],
        inputs: list,
        first_index: int,
        text_encoder,
        image_encoder,
        dtype: torch.dtype,
        text_batch_size: int,
        image_batch_size: int,
        progress,
    ) -> tuple[dict, dict]:
        """The views of one shard's view records (in order): (tensors, metadata). `inputs[i]` is record i's
        augmented crops (with augmentation) or its clean pixels (batch statistics alone)."""
        tensors = {}
        if self.text_views:
            tensors.update(self._text_views(records, text_encoder, dtype, text_batch_size, progress))
        if self.image_views:
            maps = self._image_views(records, inputs, first_index, image_encoder, image_batch_size, progress)
            tensors["view_image_maps"] = maps.to(dtype)
        return tensors, {}

    def _text_views(self, records, text_encoder, dtype, batch_size, progress) -> dict:
        texts = [self.text_for(r) for r in records]
        lengths = text_encoder.token_lengths(texts) if texts else []
        order = sorted(range(len(texts)), key=lambda i: (lengths[i], i))
        positions = self.text_positions
        per_view = []
        for view in range(self.text_views):
            encoded = [None] * len(texts)
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                streams = None
                if self.text_dropout:
                    streams = [
                        torch_stream(self.seed, "text-dropout", records[i].split, records[i].id, view) for i in chunk
                    ]
                for i, (_, tokens) in zip(chunk, text_encoder.encode([texts[i] for i in chunk], streams)):
                    encoded[i] = tokens[positions].transpose(0, 1)  # [L, Kv, D]
                progress(len(chunk) * (self.count if self.text_views == 1 else 1))
            per_view.append(encoded)
        k, d = len(positions), text_encoder.dim
        if not texts:
            states = torch.zeros(0, self.text_views, k, d, dtype=dtype)
        else:  # record-major: token rows of record 0 (every view), then record 1, ...
            states = torch.stack([torch.cat(view) for view in per_view], dim=1).to(dtype).contiguous()
        view_lengths = [len(tokens) for tokens in per_view[0]] if texts else []
        return {"view_token_states": states, "view_text_lengths": torch.tensor(view_lengths, dtype=torch.int32)}

    def _image_views(self, records, inputs, first_index, image_encoder, batch_size, progress) -> torch.Tensor:
        """[n, Vi, C, h, w] float32."""
        preprocess = image_encoder.preprocess
        per_view = []
        for view in range(self.image_views):
            pixels = [normalise(item[view], preprocess) if self.augment is not None else item for item in inputs]
            if self.batchnorm:
                maps = self._batch_statistics_maps(pixels, first_index, view, image_encoder)
            else:
                maps = [
                    image_encoder(torch.stack(pixels[s : s + batch_size])) for s in range(0, len(pixels), batch_size)
                ]
                maps = torch.cat(maps) if maps else None
            per_view.append(maps)
            progress(len(records))
        if not records:
            return torch.zeros(0, self.image_views, 1, 1, 1)
        return torch.stack(per_view, dim=1).contiguous()

    def _batch_statistics_maps(self, pixels, first_index, view, image_encoder) -> torch.Tensor | None:
        """Maps with BatchNorm in train mode over random batches of about `batchnorm_batch` of the shard's records
        (a seeded permutation, cut into near-equal batches so that no batch is tiny)."""
        count = len(pixels)
        if count == 0:
            return None
        generator = torch.Generator().manual_seed(
            view_seed(self.seed, "batchnorm-batches", "shard", str(first_index), view)
        )
        order = torch.randperm(count, generator=generator)
        batches = max(1, math.ceil(count / self.batchnorm_batch))
        module = self.batchnorm_module(image_encoder)
        out = [None] * count
        for chunk in torch.tensor_split(order, batches):
            with torch.no_grad():
                maps = module(torch.stack([pixels[i] for i in chunk]).to(image_encoder.device))
            if maps.dim() != 4:
                raise ValueError(f"image encoder returned shape {tuple(maps.shape)}; expected [B, C, h, w]")
            for i, item in zip(chunk.tolist(), maps.float().cpu()):
                out[i] = item
        return torch.stack(out)


def make_view_plan(config, dataset: Dataset, text_encoder, image_encoder) -> ViewPlan | None:
    """The view plan of an extraction config, None when it asks for no views (V = 0). Bad settings are errors
    naming the option."""
    if config.views == 0:
        return None
    layers = text_encoder.layers
    if config.view_text_layers:
        try:
            wanted = resolve_layers(config.view_text_layers, text_encoder.model.config.num_hidden_layers)
        except ValueError as error:
            raise BadInput(str(error).replace("--text-layers", "--view-text-layers")) from None
        missing = [layer for layer in wanted if layer not in layers]
        if missing:
            raise BadInput(f"--view-text-layers {config.view_text_layers}: layers {missing} are not cached ({layers})")
        wanted = [layer for layer in layers if layer in wanted]  # in the cache's order
    else:
        wanted = list(layers)
    paraphrases, sha = None, None
    if config.view_paraphrases:
        from spp_scl.extract.paraphrases import read_paraphrases

        paraphrases, sha = read_paraphrases(config.view_paraphrases)
    augment = None
    if config.view_image_augment:
        augment = RandAugment(config.view_randaugment_ops, config.view_randaugment_magnitude, config.view_flip)
    plan = ViewPlan(
        count=config.views,
        splits=tuple(split for split in ("train", "dev", "test") if split in config.view_splits),
        seed=config.view_seed,
        text_dropout=config.view_text_dropout,
        text_layers=wanted,
        text_positions=[layers.index(layer) for layer in wanted],
        augment=augment,
        batchnorm=config.view_image_batchnorm,
        batchnorm_batch=config.view_batchnorm_batch,
        shard_size=config.shard_size,
        paraphrases=paraphrases,
        paraphrase_sha256=sha,
    )
    if not plan.text_views and not plan.image_views:
        raise BadInput(
            f"--views {config.views} asks for views but every kind is off: turn on --view-text-dropout, "
            "--view-paraphrases, --view-image-augment or --view-image-batchnorm"
        )
    if plan.batchnorm and not any(
        isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in image_encoder.module.modules()
    ):
        raise BadInput(f"--view-image-batchnorm: the image encoder {image_encoder.spec} has no BatchNorm layer")
    if paraphrases is not None:
        for record in dataset.records:
            if plan.wants(record) and not paraphrases.get(record.id, "").strip():
                if config.strict:
                    raise BadInput(
                        f"{config.view_paraphrases}: no paraphrase for {record.split} record id {record.id!r} "
                        "(strict mode; without --strict it keeps its own text)"
                    )
                plan.own_text[record.split] = plan.own_text.get(record.split, 0) + 1
    return plan
