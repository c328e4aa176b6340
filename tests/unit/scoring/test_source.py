"""Prechecks on crafted repos and the weights' content hash."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from scoring.exceptions import PrecheckError
from scoring.source import HubSource, LocalSource, check_listing, content_hash
from scoring.types import Submission
from speechstream.settings import GIB, ScoringSettings


def _sub(namespace: str = "carol", name: str = "crafted") -> Submission:
    return Submission(hash="42", repo_namespace=namespace, repo_name=name)


def _code(source: LocalSource, submission: Submission) -> str:
    with pytest.raises(PrecheckError) as info:
        source.resolve(submission)
    assert info.value.message
    return info.value.code


def test_good_local_repo_resolves(models_root: Path) -> None:
    resolved = LocalSource(models_root, 18 * GIB).resolve(_sub("alice", "tiny-tts"))
    assert resolved.architecture == "MusicgenForConditionalGeneration"
    assert len(resolved.content_hash) == 64
    assert resolved.weight_bytes > 0


def test_missing_repo(models_root: Path) -> None:
    assert _code(LocalSource(models_root, GIB), _sub("nobody", "nothing")) == "REPO_NOT_FOUND"


def test_pickle_file_is_refused_without_loading(repo_copy: Path) -> None:
    (repo_copy / "pytorch_model.bin").write_bytes(b"not even a pickle")
    assert _code(LocalSource(repo_copy.parents[1], 18 * GIB), _sub()) == "PICKLE_WEIGHTS"


def test_oversized_index_is_refused(repo_copy: Path) -> None:
    index = {"metadata": {"total_size": 19 * GIB}, "weight_map": {}}
    (repo_copy / "model.safetensors.index.json").write_text(json.dumps(index))
    assert _code(LocalSource(repo_copy.parents[1], 18 * GIB), _sub()) == "TOO_LARGE"


def test_oversized_files_are_refused(repo_copy: Path) -> None:
    assert _code(LocalSource(repo_copy.parents[1], 1024), _sub()) == "TOO_LARGE"


@pytest.mark.parametrize(
    ("architectures", "code"),
    [
        (["LlamaForCausalLM"], "UNSUPPORTED_ARCHITECTURE"),
        ([], "UNSUPPORTED_ARCHITECTURE"),
        (["ParlerTTSForConditionalGeneration"], "ARCHITECTURE_ELSEWHERE"),
    ],
)
def test_architecture_from_config(repo_copy: Path, architectures: list[str], code: str) -> None:
    config = json.loads((repo_copy / "config.json").read_text())
    config["architectures"] = architectures
    (repo_copy / "config.json").write_text(json.dumps(config))
    assert _code(LocalSource(repo_copy.parents[1], 18 * GIB), _sub()) == code


def test_no_weights_and_no_config(repo_copy: Path) -> None:
    (repo_copy / "config.json").unlink()
    assert _code(LocalSource(repo_copy.parents[1], 18 * GIB), _sub()) == "NO_CONFIG"
    (repo_copy / "model.safetensors").unlink()
    assert _code(LocalSource(repo_copy.parents[1], 18 * GIB), _sub()) == "NO_WEIGHTS"


def test_content_hash_identifies_identical_weights(models_root: Path, tmp_path: Path) -> None:
    alice = models_root / "alice" / "tiny-tts"
    copy = tmp_path / "copy"
    shutil.copytree(alice, copy)
    (copy / "README.md").write_text("same weights, another repo")
    assert content_hash(copy) == content_hash(alice)
    assert content_hash(models_root / "bob" / "tiny-tts") != content_hash(alice)


def test_check_listing_sums_safetensors_only() -> None:
    files = [("a.safetensors", 10), ("b.safetensors", 5), ("config.json", 999)]
    assert check_listing(files, 100) == 15


class _FakeApi:
    """A hub API stand-in that records downloads."""

    def __init__(self, files: list[tuple[str, int]]) -> None:
        self.files = files
        self.downloads: list[Any] = []

    def model_info(self, repo_id: str, revision: str | None, files_metadata: bool) -> Any:
        siblings = [SimpleNamespace(rfilename=n, size=s) for n, s in self.files]
        return SimpleNamespace(sha="0" * 40, siblings=siblings)

    def hf_hub_download(self, *args: Any, **kwargs: Any) -> str:
        self.downloads.append(args)
        raise AssertionError("nothing may be downloaded after a failed listing precheck")

    snapshot_download = hf_hub_download


@pytest.mark.parametrize(
    ("files", "code"),
    [
        ([("model.safetensors", 10), ("optimizer.pt", 10)], "PICKLE_WEIGHTS"),
        ([("model-1.safetensors", 10 * GIB), ("model-2.safetensors", 9 * GIB)], "TOO_LARGE"),
        ([("config.json", 10)], "NO_WEIGHTS"),
    ],
)
def test_hub_prechecks_run_before_any_download(
    tmp_path: Path, files: list[tuple[str, int]], code: str
) -> None:
    api = _FakeApi(files)
    source = HubSource(ScoringSettings(cache_dir=tmp_path), api=api)
    with pytest.raises(PrecheckError) as info:
        source.resolve(_sub())
    assert info.value.code == code
    assert api.downloads == []


def test_a_repo_outside_the_models_root_is_never_loaded(repo_copy: Path, tmp_path: Path) -> None:
    root = repo_copy.parents[1]
    outside = tmp_path / "outside-root"
    shutil.copytree(repo_copy, outside)
    source = LocalSource(root, 18 * GIB)
    # `<root>/../outside-root` exists and holds a loadable model: the name rule refuses it.
    assert (root / ".." / "outside-root" / "config.json").is_file()
    assert _code(source, _sub("..", "outside-root")) == "INVALID_REPO"
    # A well-named repo that is a link out of the root is refused too.
    (root / "eve").mkdir()
    (root / "eve" / "linked").symlink_to(outside, target_is_directory=True)
    assert _code(source, _sub("eve", "linked")) == "INVALID_REPO"
