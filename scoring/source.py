"""Model sources: resolve a submission to local files and run the SPEC §3 prechecks."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.fields import repo_part_problem
from scoring.exceptions import PrecheckError
from scoring.models import check_architecture
from scoring.types import Submission
from speechstream.settings import ScoringSettings

PICKLE_SUFFIXES = (".bin", ".pt", ".pkl", ".pth", ".ckpt", ".pickle")
ALLOW_PATTERNS = [
    "*.safetensors",
    "*.json",
    "tokenizer*",
    "*.model",
    "*.txt",
    "*.tiktoken",
]
_CHUNK = 1 << 20


@dataclass
class ResolvedModel:
    """A checked model on local disk: where, which revision, its architecture and content hash."""

    path: Path
    revision: str | None
    architecture: str
    weight_bytes: int
    content_hash: str = ""
    evict_dir: Path | None = field(default=None, repr=False)

    def evict(self) -> None:
        """Delete a downloaded snapshot (local repos are left alone)."""
        if self.evict_dir is not None:
            shutil.rmtree(self.evict_dir, ignore_errors=True)
            self.evict_dir = None


def check_repo_id(submission: Submission) -> None:
    """Raise ``INVALID_REPO`` unless the namespace and the name keep the Hub's naming rules
    (checked at intake too; here again, before any path or URL is built from them)."""
    for what, part in (("namespace", submission.repo_namespace),
                       ("name", submission.repo_name)):
        problem = repo_part_problem(part)
        if problem is not None:
            raise PrecheckError("INVALID_REPO", f"repo {what} {problem}")


def check_listing(files: Iterable[tuple[str, int | None]], max_bytes: int) -> int:
    """Refuse pickle files and oversized weights from a repo listing of (name, size).

    Returns the total safetensors size in bytes.
    """
    files = list(files)
    pickles = sorted(n for n, _ in files if n.lower().endswith(PICKLE_SUFFIXES))
    if pickles:
        raise PrecheckError(
            "PICKLE_WEIGHTS",
            f"the repo holds pickle files ({', '.join(pickles[:5])}); only safetensors weights "
            "are accepted",
        )
    weights = [(n, s) for n, s in files if n.endswith(".safetensors")]
    if not weights:
        raise PrecheckError("NO_WEIGHTS", "the repo holds no .safetensors weights")
    total = sum(s or 0 for _, s in weights)
    if total > max_bytes:
        raise PrecheckError(
            "TOO_LARGE",
            f"weights are {total / 1024**3:.2f} GiB, over the {max_bytes / 1024**3:.2f} GiB limit",
        )
    return total


def index_total_size(index_file: Path) -> int | None:
    """``metadata.total_size`` of a safetensors index, if it has one."""
    try:
        meta = json.loads(index_file.read_text()).get("metadata") or {}
    except (OSError, ValueError) as exc:
        raise PrecheckError("BAD_WEIGHTS", f"unreadable {index_file.name}: {exc}") from exc
    size = meta.get("total_size")
    return int(size) if size is not None else None


def read_config_architectures(config_file: Path) -> list[str]:
    """The ``architectures`` list of a config.json."""
    if not config_file.is_file():
        raise PrecheckError("NO_CONFIG", "the repo has no config.json")
    try:
        config: dict[str, Any] = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise PrecheckError("NO_CONFIG", f"config.json is not valid JSON: {exc}") from exc
    return list(config.get("architectures") or [])


def _header(path: Path) -> tuple[int, dict[str, Any]]:
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise PrecheckError("BAD_WEIGHTS", f"{path.name} is not a safetensors file")
        (length,) = struct.unpack("<Q", raw)
        if length > 100 * 1024 * 1024:
            raise PrecheckError("BAD_WEIGHTS", f"{path.name} has an implausible header")
        try:
            header = json.loads(fh.read(length))
        except ValueError as exc:
            raise PrecheckError("BAD_WEIGHTS", f"{path.name} header is not JSON") from exc
    return 8 + length, header


def content_hash(directory: Path) -> str:
    """sha256 over every tensor (name, dtype, shape, bytes) of the safetensors files, in name
    order, so that re-sharded or re-annotated copies of the same weights hash alike."""
    tensors: list[tuple[str, str, list[int], Path, int, int]] = []
    for file in sorted(directory.rglob("*.safetensors")):
        base, header = _header(file)
        for name, info in header.items():
            if name == "__metadata__":
                continue
            start, end = info["data_offsets"]
            tensors.append((name, info["dtype"], info["shape"], file, base + start, end - start))
    digest = hashlib.sha256()
    for name, dtype, shape, file, offset, size in sorted(tensors, key=lambda t: t[0]):
        digest.update(f"{name}|{dtype}|{shape}|".encode())
        with file.open("rb") as fh:
            fh.seek(offset)
            left = size
            while left > 0:
                chunk = fh.read(min(_CHUNK, left))
                if not chunk:
                    raise PrecheckError("BAD_WEIGHTS", f"{file.name} is truncated at {name}")
                digest.update(chunk)
                left -= len(chunk)
    return digest.hexdigest()


class LocalSource:
    """Repos under ``<models_root>/<namespace>/<name>`` (the demo and tests; no hub)."""

    def __init__(self, root: Path, max_weight_bytes: int) -> None:
        self.root = root
        self.max_weight_bytes = max_weight_bytes

    def resolve(self, submission: Submission) -> ResolvedModel:
        """Check and return the submission's local directory (never one outside the root)."""
        check_repo_id(submission)
        path = self.root / submission.repo_namespace / submission.repo_name
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise PrecheckError("INVALID_REPO", f"repo {submission.repo_id} lies outside the "
                                "models root")
        if not path.is_dir():
            raise PrecheckError("REPO_NOT_FOUND", f"repo {submission.repo_id} does not exist")
        files = [
            (str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*") if p.is_file()
        ]
        total = check_listing(files, self.max_weight_bytes)
        index = path / "model.safetensors.index.json"
        if index.is_file():
            declared = index_total_size(index)
            if declared is not None and declared > self.max_weight_bytes:
                check_listing([("model.safetensors", declared)], self.max_weight_bytes)
        arch = check_architecture(read_config_architectures(path / "config.json"))
        return ResolvedModel(path, submission.revision, arch, total, content_hash(path))


class HubSource:
    """Repos on the Hugging Face Hub: listing and config first, weights only if they pass."""

    def __init__(self, settings: ScoringSettings, api: Any = None) -> None:
        from huggingface_hub import HfApi

        token = settings.hf_token.get_secret_value() if settings.hf_token else None
        self.api = api or HfApi(endpoint=settings.hf_endpoint, token=token)
        self.max_weight_bytes = settings.max_weight_bytes
        self.cache_dir = settings.models_cache_dir

    def resolve(self, submission: Submission) -> ResolvedModel:
        """Prechecks from the listing, then a snapshot of the allowed files at that commit."""
        check_repo_id(submission)
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

        try:
            info = self.api.model_info(
                submission.repo_id, revision=submission.revision, files_metadata=True
            )
        except RepositoryNotFoundError as exc:
            raise PrecheckError(
                "REPO_NOT_FOUND", f"repo {submission.repo_id} does not exist or is private"
            ) from exc
        except HfHubHTTPError as exc:
            raise PrecheckError(
                "REPO_NOT_FOUND",
                f"repo {submission.repo_id}@{submission.revision or 'main'} unavailable: {exc}",
            ) from exc
        files = [(s.rfilename, s.size) for s in info.siblings or []]
        total = check_listing(files, self.max_weight_bytes)
        target = self.cache_dir / f"{submission.hash}-{info.sha}"
        try:
            config = self.api.hf_hub_download(
                submission.repo_id, "config.json", revision=info.sha, local_dir=target
            )
            arch = check_architecture(read_config_architectures(Path(config)))
            self.api.snapshot_download(
                submission.repo_id,
                revision=info.sha,
                allow_patterns=ALLOW_PATTERNS,
                local_dir=target,
            )
            digest = content_hash(target)
        except PrecheckError:
            shutil.rmtree(target, ignore_errors=True)
            raise
        except HfHubHTTPError as exc:
            shutil.rmtree(target, ignore_errors=True)
            raise PrecheckError("REPO_NOT_FOUND", f"download failed: {exc}") from exc
        return ResolvedModel(target, info.sha, arch, total, digest, evict_dir=target)


def make_source(settings: ScoringSettings) -> LocalSource | HubSource:
    """A local source when ``models_root`` is set, the hub otherwise."""
    if settings.models_root is not None:
        return LocalSource(settings.models_root, settings.max_weight_bytes)
    return HubSource(settings)
