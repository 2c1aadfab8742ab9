"""Where our network's structure differs from the paper's, block by block and stage by stage.

* :func:`structure_report`: per block and per stage, the seed, NetAdapt's result, ours and the
  paper's network; where NetAdapt cut against where the paper's network differs from its own
  seed (MnasNet-A1 -> V3-Large, expansion by expansion).
* :func:`cut_agreement`: the blocks cut by NetAdapt, by the paper, by both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from search_spaces import ArchSpec, reference

# The network the paper's search started from, where the paper says (Section 4.2: Large reused
# MnasNet-A1 as its seed; Small was searched from scratch with w = -0.15, seed unpublished).
PAPER_SEEDS = {"mobilenet_v3_large": "mnasnet_a1"}


def stages_of(spec: ArchSpec) -> list[int]:
    """The stage of each block: a new stage starts at a stride > 1 or a change of output width."""
    stages, stage = [], -1
    previous = None
    for block in spec.blocks:
        if previous is None or block.stride > 1 or block.out_channels != previous:
            stage += 1
        stages.append(stage)
        previous = block.out_channels
    return stages


def _inputs(spec: ArchSpec) -> list[int]:
    return [spec.stem.out_channels] + [b.out_channels for b in spec.blocks[:-1]]


def _expansion(spec: ArchSpec, i: int) -> int:
    block = spec.blocks[i]
    return block.expansion_channels if block.expansion_channels is not None else _inputs(spec)[i]


def _change(before: int | None, after: int | None) -> str:
    if before is None or after is None:
        return ""
    if before == after:
        return "="
    return f"{100 * (after - before) / before:+.0f} %"


def structure_report(seed: ArchSpec, pre: ArchSpec, ours: ArchSpec, paper: ArchSpec,
                     paper_seed: ArchSpec | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(blocks, stages). Blocks are paired by index (NetAdapt keeps the depth; the redesign drops
    the last block into the efficient last stage, so the paper's network may have one block
    less than its seed). ``NetAdapt cut``: seed -> NetAdapt's result; ``paper change``: the
    paper's seed -> the paper's network. Stages: the mean expansion ratio (expansion / input
    channels) of each stage for each network."""
    n = max(len(seed.blocks), len(pre.blocks), len(ours.blocks), len(paper.blocks),
            len(paper_seed.blocks) if paper_seed else 0)
    networks = {"seed": seed, "netadapt": pre, "ours": ours, "paper": paper, "paper_seed": paper_seed}
    rows = []
    for i in range(n):
        row = {"block": i}
        for key, spec in networks.items():
            if spec is not None and i < len(spec.blocks):
                row[f"{key} exp"] = _expansion(spec, i)
                row[f"{key} out"] = spec.blocks[i].out_channels
            else:
                row[f"{key} exp"] = row[f"{key} out"] = None
        row["NetAdapt cut (exp)"] = _change(row["seed exp"], row["netadapt exp"])
        row["NetAdapt cut (out)"] = _change(row["seed out"], row["netadapt out"])
        row["paper change (exp)"] = _change(row["paper_seed exp"], row["paper exp"]) if paper_seed else ""
        row["paper change (out)"] = _change(row["paper_seed out"], row["paper out"]) if paper_seed else ""
        rows.append(row)
    blocks = pd.DataFrame(rows)
    for column in blocks.columns:
        if column.endswith((" exp", " out")):
            blocks[column] = blocks[column].astype("Int64")
    stage_rows = {}
    for key, spec in networks.items():
        if spec is None:
            continue
        ins = _inputs(spec)
        for stage in sorted(set(stages_of(spec))):
            members = [i for i, s in enumerate(stages_of(spec)) if s == stage]
            ratio = float(np.mean([_expansion(spec, i) / ins[i] for i in members]))
            stage_rows.setdefault(stage, {"stage": stage})[f"{key} exp ratio"] = round(ratio, 2)
            stage_rows[stage][f"{key} out"] = spec.blocks[members[-1]].out_channels
            stage_rows[stage][f"{key} blocks"] = len(members)
    stages = pd.DataFrame(list(stage_rows.values()))
    for column in stages.columns:
        if column.endswith((" out", " blocks")):
            stages[column] = stages[column].astype("Int64")
    return blocks, stages


def cut_agreement(blocks: pd.DataFrame) -> dict:
    """Where NetAdapt cut expansions against where the paper's network has smaller expansions
    than its seed: blocks cut by both, by one only; None without a paper seed."""
    if blocks["paper_seed exp"].isna().all():
        return {}
    def cut(rows: pd.DataFrame, before: str, after: str) -> set[int]:
        return {int(r["block"]) for _, r in rows.iterrows()
                if pd.notna(r[before]) and pd.notna(r[after]) and r[after] < r[before]}

    ours_cut = cut(blocks, "seed exp", "netadapt exp")
    paper_cut = cut(blocks, "paper_seed exp", "paper exp")
    return {"netadapt_cut": sorted(ours_cut), "paper_cut": sorted(paper_cut), "both": sorted(ours_cut & paper_cut),
            "netadapt_only": sorted(ours_cut - paper_cut), "paper_only": sorted(paper_cut - ours_cut)}


def paper_seed_of(paper_name: str) -> ArchSpec | None:
    name = PAPER_SEEDS.get(paper_name)
    return reference(name) if name else None


__all__ = ["structure_report", "cut_agreement", "stages_of", "paper_seed_of", "PAPER_SEEDS"]
