"""The GPU memory of an evaluator's or an auditor's device, read from NVIDIA's management
library (NVML) at each scrape.

The evaluation runs in a child process (``scoring.isolation``), so the service's own torch
counters see none of it; NVML sees the device: ``speechstream_gpu_memory_used_bytes{device}``
and ``speechstream_gpu_memory_total_bytes{device}``, ``device`` the service's own (``cuda:N``).
On a CPU device, or where NVML cannot be loaded (no NVIDIA driver), nothing is exported.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pynvml
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

USED_METRIC = "speechstream_gpu_memory_used_bytes"
TOTAL_METRIC = "speechstream_gpu_memory_total_bytes"


def physical_device(device: str, visible: str | None) -> int | str:
    """NVML's name for ``device`` (``cuda:N``): CUDA numbers the devices
    ``CUDA_VISIBLE_DEVICES`` (``visible``) lists, NVML every device; an index, or a UUID where
    the list names devices by UUID."""
    index = int(device.split(":", 1)[1])
    if not visible:
        return index
    listed = [entry.strip() for entry in visible.split(",") if entry.strip()]
    if index >= len(listed):
        raise ValueError(f"{device} is not among CUDA_VISIBLE_DEVICES={visible!r}")
    entry = listed[index]
    return int(entry) if entry.isdigit() else entry


class GpuMemory(Collector):
    """Collects the used and total memory of one device (an NVML handle) at each scrape."""

    def __init__(self, device: str, handle: Any) -> None:
        self._device = device
        self._handle = handle
        self._failed = False

    def collect(self) -> Iterator[Metric]:
        try:
            info = pynvml.nvmlDeviceGetMemoryInfo(self._handle)
        except pynvml.NVMLError as exc:
            if not self._failed:
                log.warning("GPU memory of %s unreadable: %s", self._device, exc)
            self._failed = True
            return
        self._failed = False
        used = GaugeMetricFamily(USED_METRIC, "Memory in use on the service's GPU, by every "
                                 "process (NVML)", labels=["device"])
        used.add_metric([self._device], float(info.used))
        total = GaugeMetricFamily(TOTAL_METRIC, "Memory of the service's GPU (NVML)",
                                  labels=["device"])
        total.add_metric([self._device], float(info.total))
        yield used
        yield total


def export_gpu_memory(registry: CollectorRegistry, device: str) -> bool:
    """Register the memory of ``device`` in ``registry`` when it is a GPU NVML can read;
    whether it did (a CPU device, or no NVIDIA driver: not, with a warning for the latter)."""
    if not device.startswith("cuda:"):
        return False
    try:
        pynvml.nvmlInit()
        name = physical_device(device, os.environ.get("CUDA_VISIBLE_DEVICES"))
        handle = (pynvml.nvmlDeviceGetHandleByIndex(name) if isinstance(name, int)
                  else pynvml.nvmlDeviceGetHandleByUUID(name))
    except (pynvml.NVMLError, ValueError) as exc:
        log.warning("GPU memory of %s not exported: %s", device, exc)
        return False
    registry.register(GpuMemory(device, handle))
    return True
