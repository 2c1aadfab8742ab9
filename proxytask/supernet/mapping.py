"""ArchSpec -> sample of a space -> subnet of its supernet.

:func:`sample_of` inverts ``space.decode`` exactly: it finds a sample whose decoding has the
spec's blocks (one-line :class:`SupernetError` naming the first block or field that no sample
gives). :func:`nearest_sample` maps any network of the same family to the closest sample
(stage by stage, decision by decision) and :func:`nearest_report` says how far it is in MAdds and
predicted pixel1 latency.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

from search_spaces import ArchSpec, BlockSpec, count_madds
from search_spaces._divisible import make_divisible
from search_spaces.spaces import SearchSpace

from .model import Subnet, SupernetError, max_layers


def _check_frame(space: SearchSpace, spec: ArchSpec) -> None:
    if spec.stem != space.stem:
        raise SupernetError(f"spec {spec.name}: stem {spec.stem} is not the stem of space {space.name!r} "
                            f"({space.stem}); the child is outside the space")
    if spec.head != space.head:
        raise SupernetError(f"spec {spec.name}: head {spec.head} is not the head of space {space.name!r} "
                            f"({space.head}); the child is outside the space")


def _candidates(space: SearchSpace, s: int, block: BlockSpec, cin: int, length: int) -> list[list]:
    """Per decision (in ``space.choices`` order), the option values that could give ``block``."""
    stage = space.stages[s]
    out: list[list] = []
    for name, opts in space.choices:
        if name == "operator":
            if block.operator == "conv":
                vals = [v for v in opts if v == "conv"]
            else:
                vals = [v for v in opts if (v == "dsconv" and block.expansion_channels == cin)
                        or (v.startswith("mbconv") and make_divisible(cin * float(v[6:])) == block.expansion_channels)]
        elif name == "kernel":
            vals = [v for v in opts if v == block.kernel]
        elif name == "se":
            vals = list(opts[:1]) if block.operator == "conv" else [v for v in opts if bool(v) == block.has_se]
        elif name == "skip":
            vals = [v for v in opts if (v == "identity") == block.skip]
        elif name == "width":
            vals = [v for v in opts if make_divisible(stage.out_channels * v) == block.out_channels]
        elif name == "layers":
            vals = [v for v in opts if max(1, stage.layers + v) == length]
        else:
            vals = [v for v in opts if v == block.nonlinearity]
        out.append(vals)
    return out


def sample_of(space: SearchSpace, spec: ArchSpec) -> tuple[int, ...]:
    """A sample of ``space`` that decodes to ``spec``'s network (SupernetError if none does)."""
    _check_frame(space, spec)
    blocks = spec.blocks
    names = [name for name, _ in space.choices]
    worst: list = [(-1, "")]

    def solve(s: int, i: int, cin: int):
        if s == len(space.stages):
            if i != len(blocks):
                worst[0] = max(worst[0], (i, f"blocks[{i}]: {len(blocks) - i} block(s) more than the space's stages hold"))
            return [] if i == len(blocks) else None
        stage = space.stages[s]
        for length in sorted({max(1, stage.layers + v) for v in space.options["layers"]}):
            segment = blocks[i:i + length]
            if len(segment) < length:
                continue
            for values in itertools.product(*_candidates(space, s, segment[0], cin, length)):
                choice = dict(zip(names, values))
                out = make_divisible(stage.out_channels * choice["width"])
                decoded, c = [], cin
                for j in range(length):
                    decoded.append(space._block(choice, c, out, stage.stride if j == 0 else 1))
                    c = out
                if decoded != list(segment):
                    bad = next(j for j in range(length) if decoded[j] != segment[j])
                    worst[0] = max(worst[0], (i + bad, f"blocks[{i + bad}]: {segment[bad].to_dict()} is not what "
                                                       f"stage {s} of space {space.name!r} gives"))
                    continue
                rest = solve(s + 1, i + length, out)
                if rest is not None:
                    return [choice] + rest
        worst[0] = max(worst[0], (i, f"blocks[{i}]: {blocks[i].to_dict() if i < len(blocks) else 'missing'} "
                                     f"cannot start stage {s} of space {space.name!r}"))
        return None

    choices = solve(0, 0, space.stem.out_channels)
    if choices is None:
        raise SupernetError(f"spec {spec.name}: {worst[0][1]}; the child is outside the space (score it with "
                            "nearest=True / --nearest to use the closest subnet)")
    return tuple(opts.index(choice[name]) for choice in choices for name, opts in space.choices)


def subnet_of(space: SearchSpace, spec: ArchSpec) -> Subnet:
    """The subnet running ``spec`` (exactly a sample of ``space``; SupernetError otherwise)."""
    return subnet_from_sample(space, sample_of(space, spec), spec)


def subnet_from_sample(space: SearchSpace, sample, spec: ArchSpec | None = None) -> Subnet:
    """The subnet of ``sample`` (running ``spec``, its decoding unless given): block ``j`` of
    stage ``s`` runs in the ``j``-th slot of the stage."""
    sample = space.check_sample(tuple(sample))
    spec = spec if spec is not None else space.decode(sample)
    per, counts = len(space.choices), max_layers(space)
    layer_index = [name for name, _ in space.choices].index("layers")
    slots = []
    for s, stage in enumerate(space.stages):
        offset = space.choices[layer_index][1][sample[s * per + layer_index]]
        first = sum(counts[:s])
        slots += [first + j for j in range(max(1, stage.layers + offset))]
    if len(slots) != len(spec.blocks):
        raise SupernetError(f"spec {spec.name}: {len(spec.blocks)} blocks but the sample gives {len(slots)}")
    return Subnet(spec, tuple(slots), tuple(c for c, _ in spec.block_inputs))


# --------------------------------------------------------------------------- nearest subnet
_STRIDE_PENALTY = 10.0


def _decision_costs(space: SearchSpace, s: int, blocks: list[BlockSpec], inputs: list[int]) -> tuple[float, dict]:
    """The cost of ``blocks`` as stage ``s`` and the cheapest option of each decision."""
    stage, n = space.stages[s], len(blocks)
    costs: dict[str, list[float]] = {}
    for name, opts in space.choices:
        row = []
        for v in opts:
            if name == "operator":
                c = 0.0
                for b, cin in zip(blocks, inputs):
                    if (b.operator == "conv") != (v == "conv"):
                        c += 1.0
                    elif v != "conv":
                        ratio = 1.0 if v == "dsconv" else float(v[6:])
                        c += abs(math.log(b.expansion_channels / cin) - math.log(ratio)) / math.log(6)
            elif name == "kernel":
                c = sum(abs(b.kernel - v) / 2 for b in blocks)
            elif name == "se":
                c = sum(float(b.has_se != bool(v)) for b in blocks if b.operator != "conv")
            elif name == "skip":
                c = 0.1 * sum(float(b.skip != (v == "identity")) for b in blocks)
            elif name == "width":
                mean_out = sum(b.out_channels for b in blocks) / n
                c = n * abs(math.log(mean_out / stage.out_channels) - math.log(v)) / math.log(2)
            elif name == "layers":
                c = 2.0 * abs(n - max(1, stage.layers + v))
            else:
                c = sum(float(b.nonlinearity != v) for b in blocks)
            row.append(c)
        costs[name] = row
    best = {name: opts[min(range(len(opts)), key=costs[name].__getitem__)] for name, opts in space.choices}
    total = sum(min(row) for row in costs.values())
    total += _STRIDE_PENALTY * (blocks[0].stride != stage.stride) + _STRIDE_PENALTY * sum(b.stride != 1 for b in blocks[1:])
    return total, best


def nearest_sample(space: SearchSpace, spec: ArchSpec) -> tuple[int, ...]:
    """The sample of ``space`` closest to ``spec``: blocks split into the space's stages (dynamic
    programming over the split), then per stage and decision the option nearest to the blocks
    (expansion ratio, kernel, SE, skip, width, number of layers, nonlinearity). Exact for a
    network of the space (``sample_of`` is tried first)."""
    try:
        return sample_of(space, spec)
    except SupernetError:
        pass
    blocks, inputs = list(spec.blocks), [c for c, _ in spec.block_inputs]
    stages, n = len(space.stages), len(blocks)
    if n < stages:
        raise SupernetError(f"spec {spec.name}: {n} blocks, fewer than the {stages} stages of space {space.name!r}; "
                            "no subnet is near it")

    @lru_cache(maxsize=None)
    def best(s: int, i: int) -> tuple[float, tuple]:
        if s == stages:
            return (0.0, ()) if i == n else (math.inf, ())
        result = (math.inf, ())
        for j in range(i + 1, n - (stages - s - 1) + 1):
            cost, choice = _decision_costs(space, s, blocks[i:j], inputs[i:j])
            rest_cost, rest = best(s + 1, j)
            if cost + rest_cost < result[0]:
                result = (cost + rest_cost, (choice,) + rest)
        return result

    _, choices = best(0, 0)
    return tuple(opts.index(choice[name]) for choice in choices for name, opts in space.choices)


def nearest_report(space: SearchSpace, spec: ArchSpec, target: str = "pixel1") -> dict:
    """The nearest subnet of ``spec`` and its distance: MAdds and predicted latency on ``target``."""
    from latency import predict_ms

    sample = nearest_sample(space, spec)
    near = space.decode(sample, name=f"{spec.name}_nearest").replace(resolution=spec.resolution)
    exact = near.hash == spec.replace(name=near.name).hash
    m_spec, m_near = count_madds(spec), count_madds(near)
    out = {"name": spec.name, "exact": exact, "sample": list(sample), "tokens": list(space.to_tokens(sample)),
           "madds_m": m_spec / 1e6, "nearest_madds_m": m_near / 1e6, "madds_distance_m": (m_near - m_spec) / 1e6}
    try:
        l_spec, l_near = predict_ms(spec, target), predict_ms(near, target)
        out.update(target=target, latency_ms=l_spec, nearest_latency_ms=l_near, latency_distance_ms=l_near - l_spec)
    except Exception as err:  # noqa: BLE001 -- a latency table lacking an op: the MAdds distance still stands
        out.update(target=target, latency_error=" ".join(str(err).split())[:200])
    return out
