"""Device choice for the segmentation processes of a host: one per visible GPU."""

from __future__ import annotations

import pytest

from unitumour_dicom.model.device import segmentation_devices

pytestmark = pytest.mark.unittest


def test_one_segmentation_process_per_visible_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert segmentation_devices("auto") == ["2", "3"]
    assert segmentation_devices("cuda") == ["2", "3"]
    assert segmentation_devices("auto", 3) == ["2", "3", "2"]  # more processes share round robin
    assert segmentation_devices("auto", 1) == ["2"]
    assert segmentation_devices("cpu") == [None]
    assert segmentation_devices("cpu", 2) == [None, None]
    assert segmentation_devices("cuda:1") == [None]  # one named GPU: not split by process
    assert segmentation_devices(" CUDA:1 ", 2) == [None, None]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert segmentation_devices("auto") == [None]  # no GPU visible: one CPU process
    assert segmentation_devices("auto", 2) == [None, None]
