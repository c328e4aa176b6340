"""The GPU memory of the service's device, read through NVML (a double of NVML here: this
machine has no GPU), and nothing exported on a CPU or without a driver."""

from __future__ import annotations

from dataclasses import dataclass

import pynvml
import pytest
from prometheus_client import CollectorRegistry

from consumers import gpu
from consumers.gpu import TOTAL_METRIC, USED_METRIC, export_gpu_memory, physical_device


@dataclass
class _Info:
    used: int
    total: int


class FakeNvml:
    """Two devices by index and by UUID; a read fails while ``broken``."""

    def __init__(self) -> None:
        self.used = {0: 1 << 30, 1: 5 << 30}
        self.broken = False

    def init(self) -> None:
        pass

    def by_index(self, index: int) -> int:
        return index

    def by_uuid(self, uuid: str) -> int:
        return {"GPU-aa": 0, "GPU-bb": 1}[uuid]

    def memory(self, handle: int) -> _Info:
        if self.broken:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return _Info(self.used[handle], 80 << 30)


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    fake = FakeNvml()
    monkeypatch.setattr(gpu.pynvml, "nvmlInit", fake.init)
    monkeypatch.setattr(gpu.pynvml, "nvmlDeviceGetHandleByIndex", fake.by_index)
    monkeypatch.setattr(gpu.pynvml, "nvmlDeviceGetHandleByUUID", fake.by_uuid)
    monkeypatch.setattr(gpu.pynvml, "nvmlDeviceGetMemoryInfo", fake.memory)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return fake


def _read(registry: CollectorRegistry, device: str) -> tuple[float | None, float | None]:
    return (registry.get_sample_value(USED_METRIC, {"device": device}),
            registry.get_sample_value(TOTAL_METRIC, {"device": device}))


def test_the_devices_memory_is_read_at_each_scrape(nvml: FakeNvml) -> None:
    registry = CollectorRegistry()
    assert export_gpu_memory(registry, "cuda:1")
    assert _read(registry, "cuda:1") == (5 << 30, 80 << 30)
    nvml.used[1] = 7 << 30
    assert _read(registry, "cuda:1") == (7 << 30, 80 << 30)
    nvml.broken = True  # a lost GPU: the scrape goes on without it
    assert _read(registry, "cuda:1") == (None, None)


def test_cuda_visible_devices_maps_to_nvmls_device(nvml: FakeNvml,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bb")
    registry = CollectorRegistry()
    assert export_gpu_memory(registry, "cuda:0")
    assert _read(registry, "cuda:0") == (5 << 30, 80 << 30)
    assert physical_device("cuda:1", "3, 1") == 1
    assert physical_device("cuda:0", None) == 0
    with pytest.raises(ValueError, match="not among"):
        physical_device("cuda:2", "0,1")


def test_a_cpu_device_exports_nothing(nvml: FakeNvml) -> None:
    registry = CollectorRegistry()
    assert not export_gpu_memory(registry, "cpu")
    assert _read(registry, "cpu") == (None, None)


def test_without_a_driver_nothing_is_exported(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(gpu.pynvml, "nvmlInit", missing)
    registry = CollectorRegistry()
    assert not export_gpu_memory(registry, "cuda:0")
    assert _read(registry, "cuda:0") == (None, None)
