"""Training on stored views: the reader serves exactly the stored view asked for, the trainer's generator draws
the same views for the same seed, the two-step rule and CLMLF's DBCL get their second view, DBCL is what it says,
and the compared methods are named by what they train."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from spp_scl.cache.reader import CachedSplit
from spp_scl.cache.views import NoViews
from spp_scl.extract.pipeline import run as extract
from spp_scl.heads.config import SPPSCLConfig
from spp_scl.heads.losses.data_based_contrastive import data_based_contrastive_loss
from spp_scl.heads.model import SPPSCLHead
from spp_scl.heads.presets import resolve_config
from spp_scl.heads.training_step import spp_scl_step
from spp_scl.runs.protocols.comparison import METHODS, methods_for
from spp_scl.runs.train.trainer import train
from spp_scl.runs.train.view_feed import TrainingFeed
from tests.conftest import tiny_config
from tests.tiny_run import tiny_cache


@pytest.fixture(scope="module")
def viewed(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("viewed") / "views.h5"
    extract(tiny_config(tiny, out, views=3), log=lambda *_: None)
    return out


@pytest.fixture(scope="module")
def last_layer_paraphrased(tiny, tmp_path_factory):
    """Text views of the last layer only, from paraphrases without dropout (a third of the train records have none)."""
    folder = tmp_path_factory.mktemp("paraphrased")
    train_records = json.loads((__import__("pathlib").Path(tiny["data"]) / "train.json").read_text())
    paraphrases = {r["id"]: f"{r['text']} {r['text']}" for i, r in enumerate(train_records) if i % 3}
    (folder / "paraphrases.json").write_text(json.dumps(paraphrases))
    out = folder / "views.h5"
    settings = dict(
        views=2, view_text_layers=[-1], view_paraphrases=str(folder / "paraphrases.json"), view_text_dropout=False
    )
    extract(tiny_config(tiny, out, **settings), log=lambda *_: None)
    return out


def test_dbcl_equals_a_naive_loop():
    generator = torch.Generator().manual_seed(0)
    anchors, positives = torch.randn(6, 5, generator=generator), torch.randn(6, 5, generator=generator)
    total = 0.0
    for i in range(6):
        cos = [float(torch.dot(anchors[i], positives[j]) / (anchors[i].norm() * positives[j].norm())) for j in range(6)]
        total += -math.log(math.exp(cos[i] / 0.1) / sum(math.exp(c / 0.1) for c in cos))
    assert float(data_based_contrastive_loss(anchors, positives, 0.1)) == pytest.approx(total / 6, rel=1e-5)
    # A post matched with itself, far from the others, costs almost nothing; matched with another, a lot.
    distinct = torch.eye(4) * 5
    assert float(data_based_contrastive_loss(distinct, distinct, 0.1)) < 1e-3
    assert float(data_based_contrastive_loss(distinct, distinct.roll(1, 0), 0.1)) > 5


def test_a_served_view_is_the_stored_one_and_the_other_part_stays_clean(viewed):
    split = CachedSplit(viewed, "train")
    views = split.views()
    indices, chosen = np.array([5, 0, 17, 3]), np.array([2, 0, 1, 2])
    clean = split.batch(indices)
    with h5py.File(viewed, "r") as file:
        stored = file["train"]["views"]
        offsets, maps = stored["token_offsets"][:], stored["image_maps"]
        both = views.batch(indices, chosen, "both")
        for row, (index, view) in enumerate(zip(indices, chosen)):
            expected_map = torch.from_numpy(maps[index, view].astype(np.float32))
            assert torch.equal(both.image_maps[row], expected_map)
            tokens = torch.from_numpy(
                stored["token_states"][offsets[index] : offsets[index + 1], view].astype(np.float32)
            )
            length = len(tokens)
            assert torch.equal(both.token_states[row, :, :length], tokens.transpose(0, 1))
            assert torch.equal(both.first_token[row], tokens[0])  # a view's first token is its first row
            assert both.token_mask[row].sum() == length and not both.token_states[row, :, length:].any()
    image_only, text_only = views.batch(indices, chosen, "image"), views.batch(indices, chosen, "text")
    assert torch.equal(image_only.token_states, clean.token_states) and torch.equal(
        image_only.image_maps, both.image_maps
    )
    assert torch.equal(text_only.image_maps, clean.image_maps) and torch.equal(
        text_only.token_states, both.token_states
    )
    assert torch.equal(both.labels, clean.labels) and both.ids == clean.ids


def test_paraphrase_views_have_their_own_lengths_and_only_the_stored_layer(last_layer_paraphrased):
    split = CachedSplit(last_layer_paraphrased, "train")
    views = split.views()
    assert views.text_views == 1 and views.slots == [None, None, None, 0]
    indices = np.arange(9)
    for view in (0, 1):  # one stored text view: the same for every view number
        batch = views.batch(indices, np.full(9, view), "text")
        lengths = batch.token_mask.sum(1).numpy()
        assert np.array_equal(lengths, views.lengths[indices])
        assert not batch.token_states[:, :3].any()  # layers not stored in the views: zero, never read
    clean_lengths = split.lengths[indices]
    assert (lengths[1::3] > clean_lengths[1::3]).all() and np.array_equal(lengths[0::3], clean_lengths[0::3])
    TrainingFeed(split, SPPSCLConfig(head="clmlf", train_views="forward"))  # reads the last layer: served
    TrainingFeed(split, SPPSCLConfig(train_views="forward", view_parts="image"))  # no text from views
    with pytest.raises(NoViews, match=r"text views hold layers \[4\], but the head reads layers \[1, 2, 3\]"):
        TrainingFeed(split, SPPSCLConfig(train_views="forward"))


def _drawn(feed, epochs=2):
    shuffle = torch.Generator().manual_seed(0)
    out = []
    for _ in range(epochs):
        for batch in feed.batches(8, shuffle):
            out.append(batch)
    return out


def test_the_same_seed_draws_the_same_views_and_another_seed_others(viewed):
    split = CachedSplit(viewed, "train")
    config = SPPSCLConfig(train_views="forward")
    first, again = _drawn(TrainingFeed(split, config)), _drawn(TrainingFeed(split, config))
    other = _drawn(TrainingFeed(split, config.replace(seed=7)))
    for a, b in zip(first, again):
        assert torch.equal(a.first.image_maps, b.first.image_maps) and torch.equal(
            a.second.token_states, b.second.token_states
        )
    assert any(not torch.equal(a.first.image_maps, c.first.image_maps) for a, c in zip(first, other))
    # The clean feed is the split's own batches, in the same order.
    clean = _drawn(TrainingFeed(split, SPPSCLConfig()))
    shuffle = torch.Generator().manual_seed(0)
    plain = [b for _ in range(2) for b in split.batches(8, shuffle=True, generator=shuffle, longest_first=True)]
    assert [b.ids for b in clean] == [b.ids for b in plain] == [b.first.ids for b in first]
    assert all(torch.equal(a.token_states, b.token_states) for a, b in zip(clean, plain))


def _view_numbers(split, batch) -> list[tuple[int, int | None]]:
    """Which stored view each row of a served batch is (found by comparing image maps)."""
    views = split.views()
    found = []
    for part in (batch.first, batch.second):
        if part is None:
            found.append(None)
            continue
        rows = []
        for row, record_id in enumerate(part.ids):
            index = split.ids.index(record_id)
            maps = views.arrays["image_maps"][index]  # [Vi, h, w, C]
            served = part.image_maps[row].permute(1, 2, 0).numpy()
            rows.append(next(v for v in range(len(maps)) if np.array_equal(maps[v].astype(np.float32), served)))
        found.append(rows)
    return found


def test_epoch_views_hold_for_an_epoch_and_forward_views_change_at_every_forward(viewed):
    split = CachedSplit(viewed, "train")
    epoch = TrainingFeed(split, SPPSCLConfig(head="clmlf", train_views="epoch"))  # DBCL: a second view
    per_epoch = []
    shuffle = torch.Generator().manual_seed(0)
    for _ in range(3):
        seen = {}
        for batch in epoch.batches(8, shuffle):
            first, second = _view_numbers(split, batch)
            assert all(a != b for a, b in zip(first, second))  # the second view is another stored one
            seen.update({record: (a, b) for record, a, b in zip(batch.first.ids, first, second)})
        per_epoch.append(seen)
    assert per_epoch[0] != per_epoch[1] != per_epoch[2]  # drawn anew each epoch
    forward = TrainingFeed(split, SPPSCLConfig(train_views="forward"))  # two-step SPP-SCL: step two's own view
    pairs = [
        pair
        for batch in forward.batches(8, torch.Generator().manual_seed(0))
        for pair in zip(*_view_numbers(split, batch))
    ]
    assert all(a != b for a, b in pairs) and len({a for a, _ in pairs}) == 3
    no_second = TrainingFeed(split, SPPSCLConfig(train_views="epoch"))  # SPP-SCL per epoch: both forwards the same
    assert all(b.second is None for b in no_second.batches(8, torch.Generator().manual_seed(0)))
    mdse = TrainingFeed(split, SPPSCLConfig(head="mdse", train_views="forward"))
    assert all(b.second is None for b in mdse.batches(8, torch.Generator().manual_seed(0)))


class Recording(nn.Module):
    """An SPP-SCL head that keeps the image maps of each forward it receives."""

    def __init__(self, head):
        super().__init__()
        self.head, self.seen = head, []

    def forward(self, **inputs):
        self.seen.append(inputs["image_maps"])
        return self.head(**inputs)


def test_step_two_of_the_rule_embeds_the_second_view():
    config = SPPSCLConfig(
        theta=2.0, embed_dim=8, lstm_hidden=8, image_reduced_channels=8, fusion_hidden=8
    )  # never aligned
    torch.manual_seed(0)
    model = Recording(SPPSCLHead(config, 6, 10, 2, 3)).train()
    generator = torch.Generator().manual_seed(1)
    inputs = {
        "image_maps": torch.randn(8, 6, 2, 2, generator=generator),
        "first_token": torch.randn(8, 2, 10, generator=generator),
        "token_states": torch.randn(8, 2, 5, 10, generator=generator),
        "token_mask": torch.ones(8, 5, dtype=torch.bool),
    }
    second = {**inputs, "image_maps": torch.randn(8, 6, 2, 2, generator=generator)}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    report = spp_scl_step(model, {**inputs, "labels": torch.arange(8) % 3, "second_view": second}, optimizer, config)
    assert report["step_two_ran"] == 1.0
    assert torch.equal(model.seen[0], inputs["image_maps"])
    assert all(torch.equal(seen, second["image_maps"]) for seen in model.seen[1:]) and len(model.seen) >= 2


@pytest.mark.parametrize("head", ["spp-scl", "clmlf", "mdse"])
def test_training_on_views_runs_and_repeats_to_the_last_digit(viewed, tmp_path, head):
    config = resolve_config("mvsa-single", head=head, train_views="forward", epochs=2, batch_size=8, lr=2e-3)
    results = [train(viewed, config, tmp_path / f"run{i}", log=lambda *_: None) for i in range(2)]
    assert results[0].metrics == results[1].metrics
    log = [json.loads(line) for line in (tmp_path / "run0" / "log.jsonl").read_text().splitlines()]
    if head == "clmlf":  # the full loss, with DBCL's own projection saved in the checkpoint
        from safetensors import safe_open

        assert all(line["dbcl"] > 0 for line in log)
        with safe_open(str(tmp_path / "run0" / "model.safetensors"), framework="pt") as weights:
            assert any(name.startswith("augment_projection.") for name in weights.keys())
    train(viewed, config.replace(train_views="clean"), tmp_path / "clean", log=lambda *_: None)
    clean_log = json.loads((tmp_path / "clean" / "log.jsonl").read_text().splitlines()[0])
    assert clean_log["loss_step_one"] != log[0]["loss_step_one"]  # the views did reach the head


def test_clmlf_loss_is_complete_only_on_views(viewed, tmp_path):
    config = resolve_config("mvsa-single", head="clmlf", train_views="epoch", epochs=1, batch_size=8)
    assert config.uses_dbcl and not config.replace(train_views="clean").uses_dbcl
    assert not config.replace(dbcl_weight=0.0).uses_dbcl
    train(viewed, config.replace(train_views="clean"), tmp_path / "clean", log=lambda *_: None)
    log = json.loads((tmp_path / "clean" / "log.jsonl").read_text().splitlines()[0])
    assert log["dbcl"] == 0.0


def test_views_asked_of_a_cache_without_them_is_one_error(tiny, tmp_path_factory, tmp_path):
    config = resolve_config("mvsa-single", train_views="epoch", epochs=1)
    with pytest.raises(NoViews, match="has no views of its train split: extract it with `spp-scl extract --views V`"):
        train(tiny_cache(tiny, tmp_path_factory), config, tmp_path / "run", log=lambda *_: None)


def test_config_refuses_unknown_view_settings():
    for bad in ({"train_views": "sometimes"}, {"view_parts": "audio"}, {"dbcl_weight": -1.0}):
        with pytest.raises(ValueError):
            SPPSCLConfig(**bad)


def test_compared_methods_are_named_by_what_they_train():
    clean = methods_for(list(METHODS), SPPSCLConfig())
    assert [m.label for m in clean] == [m.label for m in METHODS]
    views = {m.key: m for m in methods_for(list(METHODS), SPPSCLConfig(train_views="forward"))}
    assert "no DBCL" not in views["clmlf"].label and "DBCL" in views["clmlf"].label
    assert views["clmlf"].paper_row == "CLMLF" and "augment" in views["mdse"].label
    without_dbcl = {m.key: m for m in methods_for(list(METHODS), SPPSCLConfig(train_views="forward", dbcl_weight=0))}
    assert without_dbcl["clmlf"].label == next(m.label for m in METHODS if m.key == "clmlf")
