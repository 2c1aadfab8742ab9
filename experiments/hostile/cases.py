"""Hostile inputs and what each must do: the generators behind ``tests/test_hostile.py`` and
``python -m experiments.hostile_inputs``.

Every generator takes ``rnd`` (a :class:`random.Random`, or Hypothesis's ``st.randoms()``, whose
draws it then controls and shrinks) and returns a :class:`Case`: the command line (or spec
data) and the expected outcome, ``valid`` True (must be accepted), False (must be one clean
error line) or None (either, but never a traceback or a hang). The expectation comes from the
documented rules, written here independently of the code under test: the spec's fields and
bounds (README, ``search_spaces/spec.py``), the arch-string grammar (``search_spaces/codecs.py``),
each flag's range (``--help``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import yaml

# The documented bounds (README "The architecture spec"); copied, not imported, so that a
# changed bound in the code is a failing test rather than a silently moved goal.
MAX_BLOCKS, MAX_CHANNELS, MAX_CLASSES, MIN_RES, MAX_RES, MAX_NAME = 64, 8192, 100_000, 8, 4096, 200
NONLINEARITIES = ("relu", "relu6", "hswish", "swish")
NL_TOKENS = {"relu": "re", "relu6": "r6", "hswish": "hs", "swish": "sw"}
REFERENCES = ("mobilenet_v3_large", "mobilenet_v3_small", "mobilenet_v2", "mnasnet_a1", "mnasnet_small")
CLIS = {"describe": "search_spaces.describe", "export": "search_spaces.export", "predict": "latency.predict",
        "profile": "latency.profile", "search": "nas.search", "netadapt": "netadapt.run"}


@dataclass(frozen=True)
class Case:
    kind: str  # "spec" (data for ArchSpec.from_dict), "arch" (an arch string) or a CLI name
    value: object  # the spec data, the string, or the argv list
    valid: bool | None
    why: str  # what makes it invalid ("valid" when it is not)


# --------------------------------------------------------------------------- values
HOSTILE_VALUES = [
    3.0, 5.0, 1.0, 2.0, 0.5, -0.0, 1e308, float("nan"), float("inf"), True, False, None, "3", "", "relu",
    "x" * 10_000, 0, -1, 1, 2, 3, 5, 7, 8, 16, 4096, 4097, 8192, 8193, 100_000, 100_001, 10**6, 10**30, 2**63,
    -(10**30), [], [3], {}, {"a": 1}, [[[[]]]], "hswish", "sigmoid", "hsigmoid", "bneck", "conv", "dsconv", "auto",
    224, 0.2, 0.99, "a|b", "a:b", "a\nb", " a", "ok_name", "ñame", "x" * 201, "y" * 200, "tab\there", "a b",
]


def _int_in(value, lo: int, hi: int) -> bool:
    return type(value) is int and lo <= value <= hi


def _name_ok(value) -> bool:
    return (isinstance(value, str) and len(value) <= MAX_NAME and value == value.strip()
            and all(c.isprintable() and c not in "|:" for c in value))


def field_ok(path: str, value, block: dict | None = None) -> bool:
    """Whether ``value`` is allowed at ``path`` (``stem.kernel``, ``blocks.kernel``, ``name``, ...)."""
    if path in ("stem.out_channels", "blocks.out_channels", "in_channels"):
        return _int_in(value, 1, MAX_CHANNELS)
    if path in ("head.conv_channels", "head.hidden_channels"):
        return value is None or _int_in(value, 1, MAX_CHANNELS)
    if path == "stem.kernel":
        return type(value) is int and value in (1, 3, 5, 7)
    if path == "blocks.kernel":
        return type(value) is int and value in (3, 5, 7)
    if path in ("stem.stride", "blocks.stride"):
        return type(value) is int and value in (1, 2)
    if path.endswith("nonlinearity"):
        return isinstance(value, str) and value in NONLINEARITIES
    if path == "blocks.se_gate":
        return isinstance(value, str) and value in ("hsigmoid", "sigmoid")
    if path == "blocks.skip":
        return type(value) is bool
    if path == "blocks.operator":
        return value == block["operator"] and type(value) is str
    if path == "blocks.expansion_channels":
        return _int_in(value, 1, MAX_CHANNELS) if block["operator"] == "bneck" else value is None
    if path == "blocks.se_channels":
        if block["operator"] == "conv":
            return type(value) is int and value == 0
        return _int_in(value, 0, MAX_CHANNELS) or (value == "auto" and _int_in(block.get("expansion_channels"), 1,
                                                                                 MAX_CHANNELS))
    if path == "name":
        return _name_ok(value)
    if path == "resolution":
        return _int_in(value, MIN_RES, MAX_RES)
    if path == "num_classes":
        return _int_in(value, 1, MAX_CLASSES)
    if path == "dropout":
        return type(value) in (int, float) and math.isfinite(value) and 0 <= value < 1
    raise KeyError(path)


# --------------------------------------------------------------------------- valid specs
def random_spec_dict(rnd: random.Random, max_blocks: int = 6) -> dict:
    """A valid spec as plain data (what a YAML file holds)."""
    stem = {"out_channels": rnd.randint(1, 96), "kernel": rnd.choice([1, 3, 5, 7]), "stride": rnd.choice([1, 2]),
            "nonlinearity": rnd.choice(NONLINEARITIES)}
    blocks, channels = [], stem["out_channels"]
    for _ in range(rnd.randint(1, max_blocks)):
        operator = rnd.choice(["bneck", "bneck", "conv"])
        out = rnd.choice([channels, rnd.randint(1, 96)])
        block = {"operator": operator, "kernel": rnd.choice([3, 5, 7]), "stride": rnd.choice([1, 2])}
        if operator == "bneck":
            block["expansion_channels"] = rnd.choice([channels, rnd.randint(1, 192)])
        block.update(out_channels=out, se_channels=rnd.choice([0, 0, rnd.randint(1, 48)]),
                     nonlinearity=rnd.choice(NONLINEARITIES))
        if operator == "conv":
            block["se_channels"] = 0
        if block["se_channels"] and rnd.random() < 0.3:
            block["se_gate"] = "sigmoid"
        if rnd.random() < 0.2:
            block["skip"] = False
        blocks.append(block)
        channels = out
    return {"name": rnd.choice(["net", "a", "my net", "ñet-1.0", "x" * MAX_NAME]),
            "resolution": rnd.choice([8, 16, 33, 224, 4096]), "num_classes": rnd.choice([1, 10, 1000, MAX_CLASSES]),
            "dropout": rnd.choice([0.0, 0.2, 0.5, 0]), "in_channels": rnd.choice([1, 3]), "stem": stem,
            "blocks": blocks, "head": {"conv_channels": rnd.choice([None, 96, 960]),
                                       "hidden_channels": rnd.choice([None, 1280]),
                                       "nonlinearity": rnd.choice(NONLINEARITIES)}}


# --------------------------------------------------------------------------- spec data
SPEC_KINDS = ("top", "stem", "head", "block", "structure")
_DRAW = object()


def spec_case(rnd: random.Random, kind: str | None = None, value=_DRAW) -> Case:
    """A spec with one field replaced by ``value`` (valid or not), or broken in its structure;
    ``kind`` (one of :data:`SPEC_KINDS`) and ``value`` are drawn when not given."""
    data = random_spec_dict(rnd)
    kind = kind or rnd.choice(["top", "stem", "head", "block", "block", "block", "structure"])
    value = rnd.choice(HOSTILE_VALUES) if value is _DRAW else value
    if kind == "top":
        key = rnd.choice(["name", "resolution", "num_classes", "dropout", "in_channels"])
        data[key] = value
        return Case("spec", data, field_ok(key, value), f"{key} = {value!r:.60}")
    if kind in ("stem", "head"):
        keys = ["out_channels", "kernel", "stride", "nonlinearity"] if kind == "stem" else [
            "conv_channels", "hidden_channels", "nonlinearity"]
        key = rnd.choice(keys)
        data[kind][key] = value
        return Case("spec", data, field_ok(f"{kind}.{key}", value), f"{kind}.{key} = {value!r:.60}")
    if kind == "block":
        i = rnd.randrange(len(data["blocks"]))
        block = data["blocks"][i]
        key = rnd.choice(["operator", "kernel", "stride", "expansion_channels", "out_channels", "se_channels",
                          "nonlinearity", "se_gate", "skip"])
        ok = field_ok(f"blocks.{key}", value, block)
        if key == "expansion_channels" and block["operator"] == "bneck" and ok and block["se_channels"] == "auto":
            ok = True
        if key == "se_gate" and ok and not block["se_channels"]:
            ok = True  # the gate of an absent SE is normalised: one network, one spec
        block[key] = value
        return Case("spec", data, ok, f"blocks[{i}].{key} = {value!r:.60}")
    how = rnd.choice(["unknown", "missing", "no_blocks", "too_many", "not_mapping", "block_not_mapping",
                      "top_not_mapping", "max_blocks"])
    if how == "unknown":
        where = rnd.choice(["top", "stem", "head", "block"])
        target = data if where == "top" else data[where] if where != "block" else rnd.choice(data["blocks"])
        target[rnd.choice(["colour", "kernal", "1", "exp"])] = 1
        return Case("spec", data, False, f"an unknown field in {where}")
    if how == "missing":
        where = rnd.choice(["top", "block"])
        if where == "top":
            del data[rnd.choice(["name", "stem", "blocks"])]
        else:
            block = rnd.choice(data["blocks"])
            del block[rnd.choice(["operator", "kernel", "stride", "out_channels"])]
        return Case("spec", data, False, f"a required field missing from {where}")
    if how == "no_blocks":
        data["blocks"] = rnd.choice([[], None, "blocks", {}])
        return Case("spec", data, False, "no blocks")
    if how in ("too_many", "max_blocks"):
        count = MAX_BLOCKS + 1 if how == "too_many" else MAX_BLOCKS
        data["blocks"] = [dict(data["blocks"][0], stride=1)] + [dict(data["blocks"][0], stride=1) for _ in
                                                                range(count - 1)]
        first = data["blocks"][0]
        for block in data["blocks"][1:]:  # repeats of the first block read its output as input
            if first["operator"] == "bneck" and first["expansion_channels"] == data["stem"]["out_channels"]:
                block["expansion_channels"] = first["out_channels"]
        return Case("spec", data, how == "max_blocks", f"{count} blocks")
    if how == "not_mapping":
        data[rnd.choice(["stem", "head"])] = rnd.choice([[1, 2], "x", 3, None])
        return Case("spec", data, False, "stem or head not a mapping")
    if how == "block_not_mapping":
        data["blocks"][rnd.randrange(len(data["blocks"]))] = rnd.choice([[1, 2], "bneck", 3, None])
        return Case("spec", data, False, "a block not a mapping")
    return Case("spec", rnd.choice([[data], "spec", 42, None]), False, "a spec that is not a mapping")


# --------------------------------------------------------------------------- YAML text
def yaml_bomb(levels: int, width: int = 9, field: str = "name") -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    lines.append(f"{field}: *a{levels - 1}")
    return "\n".join(lines) + "\n"


YAML_ATTACKS = ("bomb", "bomb_blocks", "deep", "deep_map", "big_int", "not_utf8", "tag", "syntax", "tabs",
                "bad_alias", "empty", "scalar", "big_float_digits")


def hostile_yaml(rnd: random.Random, how: str | None = None) -> tuple[bytes, str]:
    """Bytes of a spec file that must be refused (bombs, nesting, huge numbers, not UTF-8, tags);
    ``how`` is one of :data:`YAML_ATTACKS` (drawn when not given)."""
    base = yaml.safe_dump(random_spec_dict(rnd), sort_keys=False)
    how = how or rnd.choice(YAML_ATTACKS)
    if how == "bomb":
        return yaml_bomb(rnd.randint(6, 12), field=rnd.choice(["name", "resolution", "dropout"])).encode(), how
    if how == "bomb_blocks":
        return (yaml_bomb(rnd.randint(6, 10), field="blocks") + "name: x\nstem: {out_channels: 16}\n").encode(), how
    if how == "deep":
        depth = rnd.randint(40, 3000)
        return ("name: " + "[" * depth + "]" * depth + "\n").encode(), f"{how} {depth}"
    if how == "deep_map":
        depth = rnd.randint(40, 1500)
        return ("name: " + "{a: " * depth + "1" + "}" * depth + "\n").encode(), f"{how} {depth}"
    if how == "big_int":
        digits = rnd.choice([50, 400, 5000, 100_000])
        field = rnd.choice(["resolution", "num_classes", "in_channels"])
        return base.replace(f"{field}:", f"{field}: {'9' * digits} #", 1).encode(), f"{how} {digits}"
    if how == "not_utf8":
        at = rnd.randrange(len(base))
        return base[:at].encode() + rnd.choice([b"\xff", b"\xc3\x28", b"\x80\x80", b"\xfe\xfe"]) + \
            base[at:].encode(), how
    if how == "tag":
        return rnd.choice([b"!!python/object/apply:os.system ['true']\n", b"name: !!python/name:os.system\n",
                           b"name: !custom x\n"]), how
    if how == "syntax":
        return rnd.choice([b"blocks: [\n", b"name: x\n  bad indent: 1\n", b"{{{", b"name: 'unterminated\n"]), how
    if how == "tabs":
        return b"name: x\n\tstem: 1\n", how
    if how == "bad_alias":
        return b"name: *nowhere\n", how
    if how == "empty":
        return rnd.choice([b"", b"---\n", b"# nothing\n"]), how
    if how == "scalar":
        return rnd.choice([b"42\n", b"just a string\n", b"- 1\n- 2\n"]), how
    return base.replace("dropout:", "dropout: 1.0e+400 #", 1).encode(), how


# --------------------------------------------------------------------------- arch strings
def _tokens(text: str) -> tuple[str, list[list[str]]]:
    prefix, _, body = text.partition(":")
    return prefix, [stage.split(",") for stage in body.split("|")]


def _join(prefix: str, stages: list[list[str]]) -> str:
    return f"{prefix}:" + "|".join(",".join(stage) for stage in stages)


def _block_positions(stages: list[list[str]], kinds=("ir", "ds", "cn")) -> list[tuple[int, int]]:
    out = []
    for s, stage in enumerate(stages[1:-1], start=1):
        for t, token in enumerate(stage):
            if token.split("_")[0] in kinds and not (s == len(stages) - 2 and "_k1_" in token):
                out.append((s, t))
    return out


def _options(token: str) -> list[str]:
    return token.split("_")[1:]


ARCH_MUTATIONS = ("duplicate", "unknown", "r0", "r_big", "cn_option", "ds_ratio", "head_c0", "head_conv_rs",
                  "bad_name", "long_number", "non_ascii_digit", "gs_without_se", "se_ratio", "sc0", "stem_flag",
                  "head_flag", "head_nl_twice", "empty_token", "resolution", "kernel", "channels", "stem_kind")


def arch_case(rnd: random.Random, text: str, mutation: str | None = None) -> Case:
    """``text`` (a valid arch string) unchanged (``mutation`` "valid"), renamed validly
    ("renamed"), or broken by one of :data:`ARCH_MUTATIONS` (drawn when not given)."""
    prefix, stages = _tokens(text)
    if mutation is None:
        roll = rnd.random()
        mutation = "valid" if roll < 0.1 else "renamed" if roll < 0.15 else rnd.choice(ARCH_MUTATIONS)
    if mutation == "valid":
        return Case("arch", text, True, "valid")
    if mutation == "renamed":
        name = rnd.choice(["ñame", "with space", "a.b-c", "x" * MAX_NAME, "", "stem_k3"])
        return Case("arch", _join(name, stages), True, "valid (renamed)")
    blocks = _block_positions(stages)
    s, t = rnd.choice(blocks)
    token = stages[s][t]
    kind = token.split("_")[0]
    if mutation == "duplicate":
        option = rnd.choice(_options(token))
        stages[s][t] = token + "_" + option
    elif mutation == "unknown":
        stages[s][t] = token + "_" + rnd.choice(["zz9", "x", "k", "e", "se", "noskipp", "nxx", "gate", "", "q7", "K3"])
    elif mutation in ("r0", "r_big"):
        repeats = 0 if mutation == "r0" else rnd.choice([MAX_BLOCKS + 1, 20_000, 10**9])
        stages[s][t] = "_".join([kind, f"r{repeats}"] + [o for o in _options(token) if not o.startswith("r")])
    elif mutation == "cn_option":
        extra = rnd.choice(["se0.25", "e6", "sc8", "gs"])
        stages[s].append(f"cn_r1_k3_s1_c16_{extra}")
    elif mutation == "ds_ratio":
        stages[s].append(f"ds_r1_k3_s1_e{rnd.choice(['6', '2', '0.5', '1.5'])}_c16")
    elif mutation == "head_c0":
        stages[-1] = ["head_c0"]
    elif mutation == "head_conv_rs":
        conv = f"cn_r{rnd.choice([1, 3])}_k1_s{rnd.choice([2, 1])}_c96"
        conv = conv if conv != "cn_r1_k1_s1_c96" else "cn_r2_k1_s1_c96"
        if "_k1_" in stages[-2][-1]:
            stages[-2][-1] = conv
        else:
            stages.insert(-1, [conv])
    elif mutation == "bad_name":
        prefix = rnd.choice(["a|b", "a\nb", "trail ", "x" * (MAX_NAME + 1), "bell\x07", "nul\x00x", "tab\t"])
    elif mutation == "long_number":
        stages[s][t] = token.replace("_k", "_k" + "3" * rnd.choice([13, 400, 5000]), 1)
    elif mutation == "non_ascii_digit":
        digit = rnd.choice(["٣", "３", "³"])
        stages[s][t] = "_".join([kind] + [f"k{digit}" if o.startswith("k") else o for o in _options(token)])
    elif mutation == "gs_without_se":
        stages[s].append("ir_r1_k3_s1_e2_c16_gs")
    elif mutation == "se_ratio":
        stages[s].append(f"ir_r1_k3_s1_e2_c16_se{rnd.choice(['0', '0.5', '1', '0.125'])}")
    elif mutation == "sc0":
        stages[s].append(rnd.choice(["ir_r1_k3_s1_e2_c16_sc0", "ir_r1_k3_s1_e2_c16_se0.25_sc8"]))
    elif mutation == "stem_flag":
        stages[0] = [stages[0][0] + "_" + rnd.choice(["gs", "noskip", "e6", "se0.25", "r2"])]
    elif mutation == "head_flag":
        stages[-1] = [stages[-1][0] + "_" + rnd.choice(["noskip", "gs", "k3", "s2"])]
    elif mutation == "head_nl_twice":
        if "_k1_" not in stages[-2][-1]:
            stages.insert(-1, ["cn_r1_k1_s1_c96"])
        stages[-1] = [stages[-1][0] + "_nre"]
    elif mutation == "empty_token":
        if rnd.random() < 0.5:
            stages.insert(1, [""])
        else:
            stages[s].insert(t, "")
    elif mutation == "resolution":
        stages[0] = [stages[0][0].split("_res")[0] + f"_res{rnd.choice([0, 4, 7, MAX_RES + 1, 10**30])}"]
    elif mutation == "kernel":
        stages[s][t] = "_".join([kind] + [f"k{rnd.choice([0, 2, 4, 9])}" if o.startswith("k") else o
                                          for o in _options(token)])
    elif mutation == "channels":
        stages[s][t] = "_".join([kind] + [f"c{rnd.choice([0, MAX_CHANNELS + 1, 10**9])}" if o.startswith("c") and
                                          o[1:].isdigit() else o for o in _options(token)])
    elif mutation == "stem_kind":
        stages[0] = ["stemx" + stages[0][0][4:]]
    return Case("arch", _join(prefix, stages), False, mutation)


def random_arch_string(rnd: random.Random) -> str:
    """A valid arch string: a random valid spec through the codec (the round trip is checked)."""
    from search_spaces import ArchSpec, to_arch_string

    data = random_spec_dict(rnd)
    data["name"] = "net"
    return to_arch_string(ArchSpec.from_dict(data))
