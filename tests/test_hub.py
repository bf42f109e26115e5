"""Publishing to and streaming from the Hub, against the in-process fake of its HTTP API (tests/fake_hub.py).

Only the remote service is faked: huggingface_hub, datasets, HfFileSystem, DuckDB, pyarrow, the
trainer's reader and the mgrs commands all run their real code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest_shards import make_records, write_dataset
from fake_hub import ENDPOINT, OWNER, READ_TOKEN, WRITE_TOKEN, FakeHub, install, uninstall
from typer.testing import CliRunner

from mgrs import hub_errors
from mgrs.cli import app
from mgrs.hub import pull, push
from mgrs.hub_card import split_card

REPO = f"{OWNER}/rs-captions"
runner = CliRunner()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    fake = FakeHub()
    install(monkeypatch, fake, tmp_path / "hf-cache")
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)
    monkeypatch.setattr(hub_errors, "FIRST_WAIT", 0.0)
    yield fake
    uninstall()


def output_of(result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shard_hashes(folder: Path) -> dict[str, str]:
    return {p.name: sha256(p) for p in sorted((folder / "data").glob("*.parquet"))}


def rows_of(folder: Path) -> list[dict]:
    rows = []
    for shard in sorted((folder / "data").glob("*.parquet")):
        rows += pq.read_table(shard).to_pylist()
    return sorted(rows, key=lambda row: row["image_id"])


def card_of(hub: FakeHub, revision: str = "main") -> dict:
    front, _ = split_card(hub.files(REPO, revision)["README.md"].data.decode())
    return front


def lfs_paths(hub: FakeHub, repo_files, oids) -> set[str]:
    return {path for path, blob in repo_files.items() if blob.lfs and blob.sha256 in oids}


@pytest.fixture
def dataset(tmp_path):
    records = make_records({"train": 8, "validation": 3}, seed=3)
    return write_dataset(tmp_path / "ds", records=records, shards_per_split=3, row_group_size=2)


def test_push_uploads_shards_card_and_report(hub, dataset):
    result = push(dataset, REPO)

    files = hub.files(REPO)
    shards = sorted(p for p in files if p.endswith(".parquet"))
    assert shards == sorted(f"data/{name}" for name in shard_hashes(dataset))
    for name, digest in shard_hashes(dataset).items():
        assert files[f"data/{name}"].lfs
        assert files[f"data/{name}"].sha256 == digest
    assert files["build-report.json"].data == (dataset / "build-report.json").read_bytes()
    card = card_of(hub)
    assert [c["config_name"] for c in card["configs"]] == ["default"]
    listed = {entry["split"]: entry["path"] for entry in card["configs"][0]["data_files"]}
    assert listed == {split: sorted(p for p in shards if p.startswith(f"data/{split}-")) for split in ("train", "validation")}
    assert {s["name"]: s["num_examples"] for s in card["dataset_info"][0]["splits"]} == {"train": 8, "validation": 3}
    assert hub.yaml_validations >= 1
    assert result.uploaded == shards
    assert result.unchanged == []
    # The shards were committed before the card.
    assert hub.commit_log[-1]["added"][0] == "README.md"
    assert all(path.endswith(".parquet") for entry in hub.commit_log[:-1] for path in entry["added"])


def test_repush_uploads_only_the_changed_shard(hub, dataset, tmp_path):
    push(dataset, REPO)
    before = len(hub.lfs_uploads)
    commits = len(hub.commit_log)

    again = push(dataset, REPO)
    assert again.uploaded == []
    assert len(hub.lfs_uploads) == before
    assert len(hub.commit_log) == commits

    # Rewrite one shard with other records.
    changed = dataset / "data" / "train-00001-of-00003.parquet"
    table = pq.read_table(changed)
    pq.write_table(table.slice(0, 1), changed)
    result = push(dataset, REPO)

    assert result.uploaded == ["data/train-00001-of-00003.parquet"]
    assert hub.lfs_uploads[before:] == [sha256(changed)]
    assert hub.files(REPO)["data/train-00001-of-00003.parquet"].sha256 == sha256(changed)


def test_second_subset_merges_card(hub, dataset, tmp_path):
    push(dataset, REPO)
    first = {path: blob.sha256 for path, blob in hub.files(REPO).items() if path != "README.md"}
    other = write_dataset(tmp_path / "other", {"train": 5}, seed=9, shards_per_split=2)

    push(other, REPO, subset="harbours")

    files = hub.files(REPO)
    for path, digest in first.items():
        assert files[path].sha256 == digest
    assert sorted(p for p in files if p.startswith("harbours/data/")) == sorted(f"harbours/data/{n}" for n in shard_hashes(other))
    assert files["harbours/README.md"].data == (other / "README.md").read_bytes()
    card = card_of(hub)
    assert [c["config_name"] for c in card["configs"]] == ["default", "harbours"]
    harbours = card["configs"][1]["data_files"][0]
    assert harbours["split"] == "train"
    assert all(p.startswith("harbours/data/train-") for p in harbours["path"])
    infos = {info["config_name"]: {s["name"]: s["num_examples"] for s in info["splits"]} for info in card["dataset_info"]}
    assert infos == {"default": {"train": 8, "validation": 3}, "harbours": {"train": 5}}
    body = files["README.md"].data.decode()
    assert "<!-- mgrs:config default -->" in body
    assert "<!-- mgrs:config harbours -->" in body
    assert "| harbours | train | 5 |" in body
    assert "| default | train | 8 |" in body

    # Pushing the first subset again keeps the second in the card.
    push(dataset, REPO, message="refresh default")
    assert [c["config_name"] for c in card_of(hub)["configs"]] == ["default", "harbours"]


def test_pull_request_leaves_main_alone(hub, dataset, tmp_path):
    push(dataset, REPO)
    main_before = hub.head(REPO)
    other = write_dataset(tmp_path / "other", {"train": 4}, seed=5)

    result = push(other, REPO, subset="ports", create_pr=True, files_per_commit=1)

    assert result.pr_revision == "refs/pr/1"
    assert result.pr_url.endswith("/discussions/1")
    assert hub.head(REPO) == main_before
    pr_files = hub.files(REPO, "refs/pr/1")
    assert "ports/data/train-00000-of-00001.parquet" in pr_files
    assert [c["config_name"] for c in card_of(hub, "refs/pr/1")["configs"]] == ["default", "ports"]
    assert all(entry["revision"] == "refs/pr/1" for entry in hub.commit_log[-result.commits:])

    # The pull request's files read back like any revision.
    out = pull(REPO, tmp_path / "pr", subset="ports", revision="refs/pr/1").out
    assert shard_hashes(out) == shard_hashes(other)


def test_interrupted_push_resumes(hub, tmp_path):
    records = make_records({"train": 12}, seed=4)
    folder = write_dataset(tmp_path / "big", records=records, shards_per_split=6)
    # The network goes down during the third commit (after two commits of two shards each).
    commits = []
    original = hub._commit

    def flaky(request, repo_id, revision, query):
        commits.append(revision)
        if len(commits) == 3:
            hub.fail("POST", r"/commit/", None, times=100)
            raise __import__("httpx2").ConnectError("fake hub: connection lost", request=request)
        return original(request, repo_id, revision, query)

    hub._commit = flaky
    with pytest.raises(hub_errors.HubError, match="Could not reach the Hub"):
        push(folder, REPO, files_per_commit=2)
    files = hub.files(REPO)
    committed = sorted(p for p in files if p.endswith(".parquet"))
    assert len(committed) == 4
    assert "README.md" not in files  # no card describes shards that are not there
    uploaded_before = list(hub.lfs_uploads)

    hub.faults.clear()
    hub._commit = original
    result = push(folder, REPO, files_per_commit=2)

    assert sorted(result.unchanged) == committed
    assert len(result.uploaded) == 2
    # Objects uploaded before the interruption are not sent again.
    assert not set(hub.lfs_uploads[len(uploaded_before):]) & set(uploaded_before)
    assert sorted(p for p in hub.files(REPO) if p.endswith(".parquet")) == sorted(f"data/{n}" for n in shard_hashes(folder))
    assert "README.md" in hub.files(REPO)


def test_fewer_shards_removes_old_ones(hub, tmp_path):
    records = make_records({"train": 6}, seed=2)
    folder = write_dataset(tmp_path / "a", records=records, shards_per_split=3)
    push(folder, REPO)
    smaller = write_dataset(tmp_path / "b", records=records, shards_per_split=2)

    result = push(smaller, REPO)

    assert sorted(result.deleted) == [f"data/train-0000{i}-of-00003.parquet" for i in range(3)]
    assert sorted(p for p in hub.files(REPO) if p.endswith(".parquet")) == [f"data/train-0000{i}-of-00002.parquet" for i in range(2)]
    last = hub.commit_log[-1]
    assert "README.md" in last["added"]
    assert sorted(last["deleted"]) == sorted(result.deleted)


def test_read_back_through_datasets_pull_stats_and_trainer(hub, dataset, tmp_path):
    import datasets

    push(dataset, REPO)
    expected = rows_of(dataset)

    stream = datasets.load_dataset(REPO, split="train", streaming=True, cache_dir=str(tmp_path / "ds-cache"))
    streamed = sorted(stream.decode(False), key=lambda row: row["image_id"])
    train = [row for row in expected if row["split"] == "train"]
    assert [row["image_id"] for row in streamed] == [row["image_id"] for row in train]
    assert [row["image"]["bytes"] for row in streamed] == [row["image"]["bytes"] for row in train]
    assert [row["regions"] for row in streamed] == [
        [{**region, "bbox": list(region["bbox"])} for region in row["regions"]] for row in train
    ]

    out = tmp_path / "pulled"
    assert runner.invoke(app, ["pull", REPO, "--out", str(out)]).exit_code == 0
    assert shard_hashes(out) == shard_hashes(dataset)
    assert rows_of(out) == expected
    assert runner.invoke(app, ["validate", str(out)]).exit_code == 0

    from mgrs.stats import compute_stats

    assert compute_stats(f"hf://datasets/{REPO}") == compute_stats(dataset)
    shown = runner.invoke(app, ["stats", f"hf://datasets/{REPO}", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["records"] == len(expected)

    checked = runner.invoke(app, ["validate", f"hf://datasets/{REPO}"])
    assert checked.exit_code == 0, checked.output
    preview = runner.invoke(app, ["preview", f"hf://datasets/{REPO}", "--out", str(tmp_path / "p.png"), "--count", "3"])
    assert preview.exit_code == 0, preview.output

    from farslip.data import open_reader

    reader = open_reader(f"hf://datasets/{REPO}", "train", "auto", ["image", "long_caption", "short_caption", "regions"])
    read = []
    for number, block in enumerate(reader.blocks):
        read += reader.read_rows(number, list(range(block.rows)))
    assert sorted(row["image"] for row in read) == sorted(row["image"]["bytes"] for row in train)


def test_subset_streams_and_pulls_as_its_own_folder(hub, dataset, tmp_path):
    import datasets

    push(dataset, REPO)
    other = write_dataset(tmp_path / "other", {"train": 5, "test": 2}, seed=9, shards_per_split=2)
    push(other, REPO, subset="harbours")

    stream = datasets.load_dataset(REPO, "harbours", split="test", streaming=True, cache_dir=str(tmp_path / "c"))
    assert sorted(row["image_id"] for row in stream.decode(False)) == [r["image_id"] for r in rows_of(other) if r["split"] == "test"]

    out = pull(REPO, tmp_path / "sub", subset="harbours").out
    assert shard_hashes(out) == shard_hashes(other)
    assert (out / "README.md").read_bytes() == (other / "README.md").read_bytes()
    assert runner.invoke(app, ["validate", str(out)]).exit_code == 0
    assert runner.invoke(app, ["validate", f"hf://datasets/{REPO}/harbours"]).exit_code == 0

    from mgrs.stats import compute_stats

    assert compute_stats(f"hf://datasets/{REPO}@main/harbours") == compute_stats(other)

    from farslip.data import open_reader

    reader = open_reader(f"hf://datasets/{REPO}/harbours", "train", "auto", ["image", "long_caption", "short_caption"])
    rows = [row for n, block in enumerate(reader.blocks) for row in reader.read_rows(n, list(range(block.rows)))]
    assert sorted(row["image"] for row in rows) == sorted(r["image"]["bytes"] for r in rows_of(other) if r["split"] == "train")

    missing = runner.invoke(app, ["pull", REPO, "--subset", "nope", "--out", str(tmp_path / "x")])
    assert missing.exit_code == 2
    assert "subset 'nope' not found" in output_of(missing)
    assert "harbours" in output_of(missing)


def test_push_split_keeps_the_other_splits(hub, dataset, tmp_path):
    push(dataset, REPO)
    pq.write_table(pq.read_table(dataset / "data" / "validation-00000-of-00003.parquet").slice(0, 0),
                   dataset / "data" / "validation-00000-of-00003.parquet")
    push(dataset, REPO, split="validation")
    card = card_of(hub)
    assert {e["split"] for e in card["configs"][0]["data_files"]} == {"train", "validation"}


def test_cli_push_and_pull_identical_shard_for_shard(hub, dataset, tmp_path):
    pushed = runner.invoke(app, ["push", str(dataset), REPO, "--message", "first"])
    assert pushed.exit_code == 0, pushed.output
    assert "6 shards uploaded" in output_of(pushed)
    assert WRITE_TOKEN not in output_of(pushed)
    out = tmp_path / "copy"
    assert runner.invoke(app, ["pull", REPO, "--out", str(out)]).exit_code == 0
    assert shard_hashes(out) == shard_hashes(dataset)
    assert (out / "build-report.json").read_bytes() == (dataset / "build-report.json").read_bytes()
    # A second pull downloads nothing.
    again = runner.invoke(app, ["pull", REPO, "--out", str(out)])
    assert "0 files downloaded" in output_of(again)


def test_missing_token(hub, dataset, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    result = runner.invoke(app, ["push", str(dataset), REPO])
    assert result.exit_code == 2
    assert "No Hugging Face token found" in output_of(result)
    assert "hf auth login" in output_of(result)


def test_refused_token_is_not_printed(hub, dataset, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_token_value")
    result = runner.invoke(app, ["push", str(dataset), REPO])
    assert result.exit_code == 2
    assert "refused your token" in output_of(result)
    assert "hf_wrong_token_value" not in output_of(result)


def test_read_only_token_has_no_permission(hub, dataset, monkeypatch):
    push(dataset, REPO)
    monkeypatch.setenv("HF_TOKEN", READ_TOKEN)
    dataset.joinpath("build-report.json").write_text("{}")
    result = runner.invoke(app, ["push", str(dataset), REPO])
    assert result.exit_code == 2
    assert "no permission to write" in output_of(result)


def test_not_found(hub, tmp_path):
    result = runner.invoke(app, ["pull", f"{OWNER}/missing", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "was not found on the Hub" in output_of(result)
    checked = runner.invoke(app, ["stats", f"hf://datasets/{OWNER}/missing"])
    assert checked.exit_code != 0
    assert "was not found on the Hub" in output_of(checked)


def test_rate_limit_and_server_errors_are_retried(hub, dataset):
    hub.fail("POST", r"/commit/main", 429, times=2, headers={"Retry-After": "0"})
    hub.fail("GET", r"^/api/datasets/[^/]+/[^/]+/tree/", 503, times=1)
    result = push(dataset, REPO)
    assert result.commits >= 1
    assert "README.md" in hub.files(REPO)


def test_rate_limit_that_persists_is_reported(hub, dataset, monkeypatch):
    monkeypatch.setattr(hub_errors, "ATTEMPTS", 2)
    hub.fail("POST", r"/commit/main", 429, times=10, headers={"Retry-After": "0"})
    result = runner.invoke(app, ["push", str(dataset), REPO])
    assert result.exit_code == 2
    assert "rate-limiting" in output_of(result)


def test_network_failure(hub, dataset, monkeypatch):
    monkeypatch.setattr(hub_errors, "ATTEMPTS", 2)
    hub.fail("POST", r"/api/repos/create", None, times=10)
    result = runner.invoke(app, ["push", str(dataset), REPO])
    assert result.exit_code == 2
    assert "Could not reach the Hub" in output_of(result)
    assert ENDPOINT in output_of(result)


def test_token_never_logged(hub, dataset, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    push(dataset, REPO)
    assert WRITE_TOKEN not in caplog.text
    assert all(value in ("", f"Bearer {WRITE_TOKEN}") for value in hub.seen_authorization)


def test_private_repo_and_branch(hub, dataset, tmp_path, monkeypatch):
    push(dataset, REPO, private=True, revision="v1")
    assert hub.repos[REPO].private
    assert "README.md" in hub.files(REPO, "v1")
    assert "README.md" not in hub.files(REPO, "main")
    out = pull(REPO, tmp_path / "v1", revision="v1").out
    assert shard_hashes(out) == shard_hashes(dataset)
    assert runner.invoke(app, ["validate", f"hf://datasets/{REPO}@v1"]).exit_code == 0

    monkeypatch.delenv("HF_TOKEN")
    hidden = runner.invoke(app, ["pull", REPO, "--revision", "v1", "--out", str(tmp_path / "anon")])
    assert hidden.exit_code == 2
    assert "private" in output_of(hidden)


def test_export_farslip_reads_hub_path(hub, dataset, tmp_path):
    push(dataset, REPO)

    from_hub = runner.invoke(app, ["export-farslip", f"hf://datasets/{REPO}", "--out", str(tmp_path / "hub-json")])
    local = runner.invoke(app, ["export-farslip", str(dataset), "--out", str(tmp_path / "local-json")])

    assert from_hub.exit_code == 0, output_of(from_hub)
    assert local.exit_code == 0, output_of(local)
    for name in sorted(p.name for p in (tmp_path / "local-json").glob("*.json")):
        assert (tmp_path / "hub-json" / name).read_bytes() == (tmp_path / "local-json" / name).read_bytes()
