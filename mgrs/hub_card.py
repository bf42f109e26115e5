"""The Hub dataset card of a repository that holds one or several MGRS subsets.

Each subset is one config of the repository (`configs:` with its own `data_files`, listed file by
file, so the card describes exactly the shards of the commit that carries it). `merge_card` takes the
repository's current card and the card of the folder being pushed, and returns the new card: the
YAML `configs` and `dataset_info` (a list with one entry per config) and the statistics of the other
configs are kept, those of the pushed config are replaced, and text written by hand outside the
blocks that mgrs manages is kept as it is.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

DEFAULT_CONFIG = "default"
BLOCK = re.compile(r"<!-- mgrs:config (?P<name>[\w.-]+) -->\n.*?<!-- mgrs:end (?P=name) -->\n?", re.S)
OVERVIEW = re.compile(r"<!-- mgrs:overview -->\n.*?<!-- mgrs:end overview -->\n?", re.S)


class CardError(ValueError):
    """A card's YAML front matter cannot be read."""


def split_card(text: str) -> tuple[dict[str, Any], str]:
    """Return the YAML front matter (a dict, empty when absent) and the Markdown body of a card."""
    if not text.startswith("---"):
        return {}, text
    parts = text.split("\n---", 1)
    if len(parts) != 2:
        raise CardError("the card's YAML front matter has no closing '---' line")
    try:
        front = yaml.safe_load(parts[0][3:]) or {}
    except yaml.YAMLError as error:
        raise CardError(f"the card's YAML front matter does not parse: {error}") from error
    if not isinstance(front, dict):
        raise CardError("the card's YAML front matter is not a mapping")
    return front, parts[1].lstrip("-").lstrip("\n")


def join_card(front: dict[str, Any], body: str) -> str:
    header = yaml.safe_dump(front, sort_keys=False, allow_unicode=True)
    return f"---\n{header}---\n\n{body.strip()}\n"


def _infos(front: dict[str, Any]) -> list[dict[str, Any]]:
    info = front.get("dataset_info")
    if info is None:
        return []
    if isinstance(info, dict):
        info = [info]
    return [{"config_name": DEFAULT_CONFIG, **entry} if "config_name" not in entry else dict(entry) for entry in info]


def _data_files(config: dict[str, Any]) -> dict[str, list[str]]:
    files = config.get("data_files") or []
    if isinstance(files, str):
        files = [{"split": "train", "path": files}]
    out: dict[str, list[str]] = {}
    for entry in files:
        paths = entry.get("path")
        out[entry.get("split", "train")] = [paths] if isinstance(paths, str) else list(paths or [])
    return out


def config_card(
    local_card: str, config_name: str, prefix: str, files_by_split: dict[str, list[str]]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]:
    """Read a folder's own card and return (top-level fields, config entry, dataset_info entry, body).

    `files_by_split` lists the repository paths of the shards pushed, per split; the config lists
    exactly those files. `prefix` is the subset folder (`""` for the default config).
    """
    front, body = split_card(local_card)
    infos = _infos(front)
    info = next((entry for entry in infos if entry["config_name"] == DEFAULT_CONFIG), infos[0] if infos else {})
    info = {**info, "config_name": config_name}
    keep = set(files_by_split)
    if "splits" in info:
        info["splits"] = [split for split in info["splits"] if split.get("name") in keep]
        total = sum(split.get("num_bytes", 0) for split in info["splits"])
        for key in ("download_size", "dataset_size"):
            if key in info:
                info[key] = total
    config = {
        "config_name": config_name,
        "data_files": [{"split": split, "path": sorted(paths)} for split, paths in sorted(files_by_split.items())],
    }
    if config_name == DEFAULT_CONFIG:
        config["default"] = True
    top = {key: value for key, value in front.items() if key not in ("configs", "dataset_info")}
    return top, config, info, body


def merge_card(
    remote_card: str | None,
    local_card: str,
    config_name: str,
    prefix: str,
    files_by_split: dict[str, list[str]],
    repo_id: str,
    only_splits: bool = False,
) -> str:
    """Return the repository card after pushing one config.

    `only_splits=True` (a push of some splits only) keeps the remote entries of the config's other
    splits; otherwise the config is replaced whole.
    """
    top, config, info, body = config_card(local_card, config_name, prefix, files_by_split)
    front, remote_body = split_card(remote_card) if remote_card else ({}, "")

    configs = [dict(entry) for entry in front.get("configs") or []]
    infos = _infos(front)
    old_config = next((entry for entry in configs if entry.get("config_name") == config_name), None)
    old_info = next((entry for entry in infos if entry["config_name"] == config_name), None)
    if only_splits and old_config is not None:
        merged_files = {**_data_files(old_config), **files_by_split}
        config["data_files"] = [{"split": s, "path": sorted(p)} for s, p in sorted(merged_files.items())]
        if old_info is not None and "splits" in old_info:
            pushed = {split["name"] for split in info.get("splits", [])}
            kept = [split for split in old_info["splits"] if split.get("name") not in pushed]
            info["splits"] = sorted(kept + info.get("splits", []), key=lambda split: split["name"])
            total = sum(split.get("num_bytes", 0) for split in info["splits"])
            for key in ("download_size", "dataset_size"):
                if key in info:
                    info[key] = total

    configs = [entry for entry in configs if entry.get("config_name") != config_name] + [config]
    configs.sort(key=lambda entry: (entry.get("config_name") != DEFAULT_CONFIG, entry.get("config_name")))
    infos = [entry for entry in infos if entry["config_name"] != config_name] + [info]
    infos.sort(key=lambda entry: (entry["config_name"] != DEFAULT_CONFIG, entry["config_name"]))

    merged = {key: value for key, value in front.items() if key not in ("configs", "dataset_info")}
    for key, value in top.items():
        if key not in merged:
            merged[key] = value
        elif isinstance(value, list) and isinstance(merged[key], list):
            merged[key] = merged[key] + [item for item in value if item not in merged[key]]
        elif key == "license" and merged[key] != value:
            merged[key] = "other"
        elif key == "license_details" and value not in str(merged[key]):
            merged[key] = f"{merged[key]}; {value}"
    merged["configs"] = configs
    merged["dataset_info"] = infos

    return join_card(merged, _merge_body(remote_body, body, config_name, prefix, repo_id, infos))


def _merge_body(remote_body: str, local_body: str, config_name: str, prefix: str, repo_id: str, infos: list[dict[str, Any]]) -> str:
    block = _config_block(local_body, config_name, repo_id)
    body = remote_body
    if not BLOCK.search(body) and not OVERVIEW.search(body):
        # A card that mgrs has not managed yet (or a new repository): keep its text before the blocks.
        title = repo_id.split("/")[-1]
        body = f"# {title}\n\n" + (body.strip() + "\n\n" if body.strip() else "")
    overview = _overview(infos, repo_id)
    body = OVERVIEW.sub(lambda _: overview, body) if OVERVIEW.search(body) else body.rstrip() + "\n\n" + overview
    replaced = False

    def replace(match: re.Match) -> str:
        nonlocal replaced
        if match["name"] == config_name:
            replaced = True
            return block
        return match.group(0)

    body = BLOCK.sub(replace, body)
    if not replaced:
        body = body.rstrip() + "\n\n" + block
    return body


def _config_block(local_body: str, config_name: str, repo_id: str) -> str:
    """The pushed folder's card body as one section: headings two levels down, usage with this repo."""
    text = re.sub(r"^(#+) ", r"##\1 ", local_body.strip(), flags=re.M)
    call = f'"{repo_id}"' if config_name == DEFAULT_CONFIG else f'"{repo_id}", "{config_name}"'
    text = re.sub(r'load_dataset\("[^"]*"', f"load_dataset({call}", text)
    title = "Default config" if config_name == DEFAULT_CONFIG else f"Subset `{config_name}`"
    usage = (
        "```python\nfrom datasets import load_dataset\n\n"
        f'dataset = load_dataset({call}, split="train", streaming=True)\n```'
    )
    return f"<!-- mgrs:config {config_name} -->\n## {title}\n\n{usage}\n\n{text}\n<!-- mgrs:end {config_name} -->\n"


def _overview(infos: list[dict[str, Any]], repo_id: str) -> str:
    lines = ["<!-- mgrs:overview -->", "## Subsets", "", "| config | split | records | bytes |", "|---|---|---|---|"]
    for info in infos:
        for split in info.get("splits") or []:
            lines.append(f"| {info['config_name']} | {split.get('name')} | {split.get('num_examples', '')} | {split.get('num_bytes', '')} |")
    lines += ["", f"Each config is one subset: `load_dataset(\"{repo_id}\", CONFIG)`.", "<!-- mgrs:end overview -->", ""]
    return "\n".join(lines)


def configs_of(card: str | None) -> list[str]:
    """Return the config names listed in a card's YAML."""
    if not card:
        return []
    front, _ = split_card(card)
    return [entry.get("config_name", DEFAULT_CONFIG) for entry in front.get("configs") or []]
