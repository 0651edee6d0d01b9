"""The accumulator: bounded memory whatever the slide's size, the median per slide, "unknown"
without a reference, and the reference's round trip through a model card."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from unitumour_dicom.domain.accumulator import DomainAccumulator
from unitumour_dicom.domain.features import BottleneckHook, pool_features
from unitumour_dicom.domain.fit import with_reference
from unitumour_dicom.domain.reference import fit_reference
from unitumour_dicom.errors import ModelError
from unitumour_dicom.model.card import ModelCard
from unitumour_dicom.model.checkpoint import packaged_weights_dir
from unitumour_dicom.model.network import TumourUNet


def _groups(rng: np.random.Generator, n: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    return {
        "stain": rng.normal(size=(n, 12)) + shift,
        "quality": rng.normal(size=(n, 4)),
        "network": rng.normal(size=(n, 20)),
    }


@pytest.fixture(scope="module")
def reference():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    return fit_reference(_groups(rng, 300), _groups(rng, 150), n_components=8)


def test_memory_stays_bounded_and_the_median_is_kept(reference) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    acc = DomainAccumulator(reference, max_tiles=500)
    sizes = []
    for _ in range(40):  # 40 batches of 100 tiles: 4000 tiles, 8x the cap
        acc.add(_groups(rng, 100))
        sizes.append(acc.record_bytes)
    assert max(sizes) == sizes[-1] <= 500 * (8 + 4 + 4 * 3)
    result = acc.finish()
    assert result.n_tiles == result.n_scored == 4000
    assert len(result.tile_scores) == len(result.tile_indices) == 500
    assert len(np.unique(result.tile_indices)) == 500  # a sample of distinct tiles
    assert result.tile_indices.max() > 3000  # late tiles are sampled too (reservoir)
    assert result.verdict == "in_domain"
    # The reservoir's median is close to the median of every tile.
    exact = DomainAccumulator(reference)
    rng = np.random.default_rng(1)
    for _ in range(40):
        exact.add(_groups(rng, 100))
    full = exact.finish()
    assert len(full.tile_scores) == 4000
    assert abs(result.score - full.score) < 0.05 * full.score


def test_shifted_tiles_and_odd_tiles(reference) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(2)
    out = DomainAccumulator(reference)
    out.add(_groups(rng, 50, shift=3.0))
    assert out.finish().verdict == "out_of_domain"
    # A few odd tiles (10%) do not flag a slide: the median ignores them, the fraction shows.
    mixed = DomainAccumulator(reference)
    mixed.add(_groups(rng, 90))
    mixed.add(_groups(rng, 10, shift=4.0))
    r = mixed.finish()
    assert r.verdict == "in_domain"
    assert r.components["fraction_tiles_out"] >= 0.09
    assert set(r.components) >= {"stain", "quality", "network", "fraction_tiles_out"}
    # Tiles without enough tissue (NaN rows) are counted but not scored.
    glass = _groups(rng, 5)
    glass["stain"][:] = np.nan
    acc = DomainAccumulator(reference)
    assert np.isnan(acc.add(glass)).all()
    r = acc.finish()
    assert r.verdict == "unknown" and r.n_tiles == 5 and r.n_scored == 0


def test_no_reference_gives_unknown() -> None:
    acc = DomainAccumulator(None)
    tiles = np.zeros((3, 3, 32, 32), np.uint8)  # NCHW is accepted as well as NHWC
    scores = acc.update(tiles, None, np.zeros((3, 8), np.float32))
    assert np.isnan(scores).all()
    r = acc.finish()
    assert r.verdict == "unknown" and r.score is None and r.n_tiles == 3
    assert "no domain reference" in r.reason
    assert json.loads(json.dumps(r.to_dict()))["verdict"] == "unknown"


def test_card_without_reference_loads_and_with_one_round_trips(reference, tmp_path) -> None:  # type: ignore[no-untyped-def]
    card = ModelCard.read(packaged_weights_dir() / "demo.card.json")
    plain = replace(card, domain_reference=None)
    assert "domain_reference" not in plain.to_dict()  # old readers see the old card
    assert plain.domain() is None
    path = tmp_path / "m.card.json"
    with_reference(plain, reference).write(path)
    back = ModelCard.read(path)
    ref_back = back.domain()
    assert ref_back is not None
    rng = np.random.default_rng(5)
    feats = _groups(rng, 20)
    assert np.allclose(ref_back.tile_scores(feats), reference.tile_scores(feats), rtol=1e-4)
    broken = back.to_dict()
    broken["domain_reference"]["thresholds"] = {"borderline": 2.0, "out_of_domain": 1.0}
    with pytest.raises(ModelError, match="domain_reference"):
        ModelCard.from_dict(broken)


def test_the_hook_changes_nothing_and_pools_over_tissue() -> None:
    torch.manual_seed(0)
    net = TumourUNet(widths=(8, 16, 24), context_dilations=(2,)).eval()
    x = torch.randn(2, 3, 72, 80)  # not a multiple of the stride: the network pads
    with torch.no_grad():
        plain = net(x)
        with BottleneckHook(net) as hook:
            hooked = net(x)
            maps = hook.maps
            assert maps is not None and maps.shape[:2] == (2, 24)
            pooled = hook.pooled(np.ones((2, 72, 80), bool))
    assert torch.equal(plain, hooked)
    assert pooled.shape == (2, 48)
    # Pooling over a mask: a map whose left half is 1 and right half 3; tissue on the left.
    m = torch.ones(1, 1, 4, 4)
    m[..., 2:] = 3.0
    mask = np.zeros((1, 64, 64), bool)
    mask[:, :, :32] = True
    mean_std = pool_features(m, mask)
    assert mean_std[0, 0] == pytest.approx(1.0) and mean_std[0, 1] == pytest.approx(0.0, abs=1e-5)
    everywhere = pool_features(m, None)
    assert everywhere[0, 0] == pytest.approx(2.0) and everywhere[0, 1] == pytest.approx(1.0)


def test_sample_every_scores_a_systematic_subset_of_real_tiles() -> None:
    from unitumour_dicom.domain.stain import QUALITY_FEATURE_NAMES, STAIN_FEATURE_NAMES

    rng = np.random.default_rng(6)

    def groups(n: int) -> dict[str, np.ndarray]:
        return {
            "stain": rng.normal(size=(n, len(STAIN_FEATURE_NAMES))),
            "quality": rng.normal(size=(n, len(QUALITY_FEATURE_NAMES))),
            "network": rng.normal(size=(n, 6)),
        }

    ref = fit_reference(groups(100), groups(50), n_components=4)
    tiles = rng.integers(60, 200, size=(10, 32, 32, 3), dtype=np.uint8)  # coloured, not glass
    acc = DomainAccumulator(ref, sample_every=3)
    first = acc.update(tiles, None, rng.normal(size=(10, 6)))
    second = acc.update(tiles[:5], None, rng.normal(size=(5, 6)))
    assert list(np.flatnonzero(np.isfinite(first))) == [0, 3, 6, 9]
    assert list(np.flatnonzero(np.isfinite(second))) == [2]  # tile 12 of the slide
    r = acc.finish()
    assert r.n_tiles == 15 and r.n_scored == 5
    assert list(r.tile_indices) == [0, 3, 6, 9, 12]
