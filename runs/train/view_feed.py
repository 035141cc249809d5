"""What a training batch feeds the head: the cached clean features, or stored views drawn by the trainer's seeded
generator (config.train_views; the views come from `spp-scl extract --views V`, read by cache/views.py).

- "clean": the clean features, exactly as without views (no random draw is made, so a run is unchanged).
- "epoch": at the start of each epoch, one view number per training record; every forward of that epoch
  (both forwards of the two-step rule) sees it.
- "forward": a new view for each forward: step one's, and step two's of the two-step rule (as the authors'
  encoders in train mode drew new dropout masks for it).
`view_parts` says which parts of the view replace the clean inputs. CLMLF's DBCL needs a second view of each post
(its augmented branch): it takes all parts of a view other than the first one's ("epoch": drawn with it each
epoch; "forward": each step). When a second view is drawn it differs from the first whenever the cache holds
more than one. The MDSE-style head has no second forward: its augmentations are the views it is fed.

The view numbers come from a torch Generator seeded from the config's seed (its own stream, apart from the
shuffling one), so the same seed gives the same views, batch by batch.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import torch

from spp_scl.cache.reader import CachedSplit, FeatureBatch
from spp_scl.heads.config import SPPSCLConfig
from spp_scl.heads.training_step import inter_loss_enabled

logger = logging.getLogger(__name__)

MODEL_INPUTS = ("image_maps", "first_token", "token_states", "token_mask")


@dataclass
class ViewedBatch:
    """A batch of views and, when the step needs one, a second view of the same records."""

    first: FeatureBatch
    second: FeatureBatch | None = None

    def __len__(self) -> int:
        return len(self.first)


def feature_inputs(batch: FeatureBatch, device) -> dict:
    batch = batch.to(device)
    return {
        "image_maps": batch.image_maps,
        "first_token": batch.first_token,
        "token_states": batch.token_states,
        "token_mask": batch.token_mask,
        "labels": batch.labels,
    }


def view_generator(seed: int) -> torch.Generator:
    digest = hashlib.sha256(f"train views|{seed}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def read_slots(config: SPPSCLConfig, num_layers: int) -> list[int]:
    """The positions, among the text layers the trainer opened, that the head reads."""
    if config.head in ("clmlf", "mdse"):
        return [config.token_layer % num_layers]
    if config.head == "spp-scl" and config.modality in ("both", "text"):
        used = config.text_layers_last or num_layers
        return list(range(num_layers - used, num_layers))
    return []


class TrainingFeed:
    def __init__(self, split: CachedSplit, config: SPPSCLConfig):
        self.split, self.config = split, config
        self.views = None
        if config.train_views == "clean":
            return
        self.views = split.views()
        if config.view_parts in ("both", "text"):
            self.views.check_layers(read_slots(config, len(split.layers)))
        self.count = self.views.count
        self.generator = view_generator(config.seed)
        self.second = None  # "dbcl" (all parts of another view) or "step two" (view_parts of another view)
        if config.uses_dbcl:
            self.second = "dbcl"
        elif (
            config.head == "spp-scl"
            and config.train_views == "forward"
            and config.two_step
            and inter_loss_enabled(config)
        ):
            self.second = "step two"
        if self.second == "dbcl" and self.count == 1 and config.view_parts == "both":
            logger.warning(
                "DBCL with one stored view and view_parts both: the second view is the first one again (only the "
                "head's dropout differs); extract more views (--views 2 or more) or train with --view-parts image"
            )
        self.epoch_views = self.epoch_second = None

    def batches(self, batch_size: int, shuffle: torch.Generator):
        """The epoch's training batches, in the order `shuffle` draws (the same as clean training)."""
        draw = None
        if self.views is not None:
            draw = self._read
            if self.config.train_views == "epoch":
                self.epoch_views = self._draw(len(self.split))
                self.epoch_second = self._other(self.epoch_views) if self.second else None
        yield from self.split.batches(batch_size, shuffle=True, generator=shuffle, longest_first=True, draw=draw)

    def inputs(self, batch, device) -> dict:
        """The step's batch: the model inputs and labels, and "second_view" when there is one."""
        if not isinstance(batch, ViewedBatch):
            return feature_inputs(batch, device)
        inputs = feature_inputs(batch.first, device)
        if batch.second is not None:
            second = feature_inputs(batch.second, device)
            inputs["second_view"] = {name: second[name] for name in MODEL_INPUTS}
        return inputs

    def _draw(self, count: int) -> np.ndarray:
        return torch.randint(self.count, (count,), generator=self.generator).numpy()

    def _other(self, views: np.ndarray) -> np.ndarray:
        """A view number other than `views` for each record (the same one when only one is stored)."""
        if self.count == 1:
            return views.copy()
        shift = torch.randint(1, self.count, (len(views),), generator=self.generator).numpy()
        return (views + shift) % self.count

    def _read(self, indices) -> ViewedBatch:
        if self.config.train_views == "epoch":
            first = self.epoch_views[indices]
            second = self.epoch_second[indices] if self.second else None
        else:
            first = self._draw(len(indices))
            second = self._other(first) if self.second else None
        batch = ViewedBatch(self.views.batch(indices, first, self.config.view_parts))
        if second is not None:
            parts = "both" if self.second == "dbcl" else self.config.view_parts
            batch.second = self.views.batch(indices, second, parts)
        return batch
