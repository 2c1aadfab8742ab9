"""Search strategies: they sample and learn, never build or train models (NNI style).

A strategy sees only the space's decisions (option counts). ``ask()`` returns a sample (a
tuple of choice indices); ``tell(sample, reward)`` reports its reward. Every strategy owns its
seeded random generators and exposes ``state_dict()`` / ``load_state_dict()`` as plain JSON
data (controller weights as nested lists), so a search can be checkpointed and resumed
exactly without pickle.

* ``random``: uniform sampling.
* ``evolution``: regularized evolution (Real et al. 2019): a population of the newest P
  children; a parent is the best of S random members (tournament); a child mutates one
  decision; the oldest member dies.
* ``rl``: MnasNet's controller: an LSTM emitting one softmax per decision, the embedding of
  each choice fed back as the next input, trained with PPO (clipped objective) or REINFORCE,
  a moving-average reward baseline and an entropy bonus. Updates happen once per batch of
  ``batch_size`` rewards, taken in the order they arrive: the search runs children
  asynchronously (Ray Tune's ConcurrencyLimiter(batch=False)), so a batch may hold children
  sampled before the previous update. Each sample keeps the log-probability the policy gave it
  when it was asked (its behaviour log-probability; PPO's ratio corrects for the policy since),
  also when the same sample is in flight twice. A child's advantage is its reward minus the
  baseline, divided by the batch's reward spread; a batch whose rewards are all equal (e.g.
  every child failed) says nothing about which choices are better: it leaves the policy as it
  is (only the baseline moves).
"""

from __future__ import annotations

import math
import random
from collections import deque
from typing import Sequence

import torch
from torch import nn

Sample = tuple[int, ...]
# A batch whose rewards spread less than this (population std) holds equal rewards: no update.
MIN_REWARD_SPREAD = 1e-6


class Strategy:
    name = ""

    def __init__(self, option_counts: Sequence[int], seed: int = 0):
        if not option_counts or any(n < 1 for n in option_counts):
            raise ValueError("option_counts: every decision needs at least one option")
        self.option_counts = tuple(int(n) for n in option_counts)
        self.seed = seed
        self.rng = random.Random(seed)
        self.asked = 0
        self.told = 0

    def ask(self) -> Sample:
        self.asked += 1
        return self._ask()

    def tell(self, sample: Sequence[int], reward: float) -> None:
        self.told += 1
        self._tell(tuple(sample), float(reward))

    def _ask(self) -> Sample:
        raise NotImplementedError

    def _tell(self, sample: Sample, reward: float) -> None:
        pass

    def random_sample(self) -> Sample:
        return tuple(self.rng.randrange(n) for n in self.option_counts)

    def state_dict(self) -> dict:
        return {"name": self.name, "seed": self.seed, "asked": self.asked, "told": self.told,
                "rng": _rng_state(self.rng), "option_counts": list(self.option_counts)}

    def load_state_dict(self, state: dict) -> None:
        if state.get("name") != self.name or tuple(state.get("option_counts", ())) != self.option_counts:
            raise ValueError(f"checkpoint is for strategy {state.get('name')!r} over "
                             f"{state.get('option_counts')} options, not {self.name!r} over {list(self.option_counts)}")
        self.asked, self.told = state["asked"], state["told"]
        self.rng.setstate(_rng_from_state(state["rng"]))


def _rng_state(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _rng_from_state(state: list) -> tuple:
    return (state[0], tuple(state[1]), state[2])


class RandomStrategy(Strategy):
    name = "random"

    def _ask(self) -> Sample:
        return self.random_sample()


class EvolutionStrategy(Strategy):
    name = "evolution"

    def __init__(self, option_counts: Sequence[int], seed: int = 0, population: int = 16, tournament: int = 4):
        super().__init__(option_counts, seed)
        if tournament < 1 or population < tournament:
            raise ValueError("evolution: need population >= tournament >= 1")
        self.population_size, self.tournament = population, tournament
        self.population: deque[tuple[Sample, float]] = deque()

    def _ask(self) -> Sample:
        if len(self.population) < self.population_size:
            return self.random_sample()
        contenders = self.rng.sample(list(self.population), self.tournament)
        parent = max(contenders, key=lambda item: item[1])[0]
        return self.mutate(parent)

    def mutate(self, parent: Sample) -> Sample:
        mutable = [i for i, n in enumerate(self.option_counts) if n > 1]
        if not mutable:
            return parent
        i = self.rng.choice(mutable)
        child = list(parent)
        child[i] = self.rng.choice([c for c in range(self.option_counts[i]) if c != parent[i]])
        return tuple(child)

    def _tell(self, sample: Sample, reward: float) -> None:
        self.population.append((sample, reward))
        while len(self.population) > self.population_size:
            self.population.popleft()  # the oldest dies (regularized evolution)

    def state_dict(self) -> dict:
        return super().state_dict() | {"population": [[list(s), r] for s, r in self.population],
                                       "population_size": self.population_size, "tournament": self.tournament}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.population = deque((tuple(s), float(r)) for s, r in state["population"])


class Controller(nn.Module):
    """LSTM controller: one softmax per decision; the chosen option's embedding is the next input."""

    def __init__(self, option_counts: Sequence[int], hidden: int = 64, embedding: int = 32,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.option_counts = tuple(option_counts)
        with torch.device("meta"):  # no draw from torch's global generator: reset_parameters fills them
            self.start = nn.Parameter(torch.zeros(1, embedding))
            self.lstm = nn.LSTMCell(embedding, hidden)
            self.embeddings = nn.ModuleList(nn.Embedding(n, embedding) for n in self.option_counts)
            self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in self.option_counts)
        self.to_empty(device="cpu")
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """PyTorch's default initialisation, drawn from ``generator``; zero heads: a uniform policy."""
        bound = 1 / math.sqrt(self.lstm.hidden_size)
        self.start.zero_()
        for p in self.lstm.parameters():
            p.uniform_(-bound, bound, generator=generator)
        for embedding in self.embeddings:
            embedding.weight.normal_(0.0, 1.0, generator=generator)
        for head in self.heads:
            head.weight.zero_()
            head.bias.zero_()

    def forward(self, batch: int = 1, actions: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample ``batch`` architectures (or score ``actions``): (actions, log-prob, entropy)."""
        if actions is not None:
            batch = actions.shape[0]
        x = self.start.expand(batch, -1)
        state = None
        chosen, logp, entropy = [], torch.zeros(batch), torch.zeros(batch)
        for i, head in enumerate(self.heads):
            h, c = self.lstm(x, state)
            state = (h, c)
            logits = head(h)
            log_probs = torch.log_softmax(logits, dim=-1)
            if actions is None:
                a = torch.multinomial(log_probs.exp(), 1, generator=generator).squeeze(1)
            else:
                a = actions[:, i]
            chosen.append(a)
            logp = logp + log_probs.gather(1, a[:, None]).squeeze(1)
            entropy = entropy - (log_probs.exp() * log_probs).sum(-1)
            x = self.embeddings[i](a)
        return torch.stack(chosen, 1), logp, entropy


def advantages(rewards: torch.Tensor, baseline: float) -> torch.Tensor:
    """Each reward's advantage: (reward - ``baseline``) / the batch's reward spread (population std);
    all zero when the rewards are equal (spread below :data:`MIN_REWARD_SPREAD`): such a batch says
    nothing about which choices are better, and dividing by its spread would blow noise up to +-1e8."""
    spread = float(rewards.std(unbiased=False))
    if not spread >= MIN_REWARD_SPREAD:
        return torch.zeros_like(rewards)
    return (rewards - baseline) / spread


def surrogate(algorithm: str, logp: torch.Tensor, old_logp: torch.Tensor, advantage: torch.Tensor,
              clip: float) -> torch.Tensor:
    """Each sample's objective (to maximise): PPO's min(ratio x A, clip(ratio, 1 +- clip) x A) with
    ratio = exp(logp - old_logp), or REINFORCE's logp x A."""
    if algorithm == "reinforce":
        return logp * advantage
    ratio = torch.exp(logp - old_logp)
    return torch.min(ratio * advantage, torch.clamp(ratio, 1 - clip, 1 + clip) * advantage)


class RLStrategy(Strategy):
    name = "rl"

    def __init__(self, option_counts: Sequence[int], seed: int = 0, algorithm: str = "ppo", batch_size: int = 8,
                 lr: float = 0.01, entropy_weight: float = 1e-2, clip: float = 0.2, ppo_epochs: int = 4,
                 baseline_decay: float = 0.9, hidden: int = 64):
        super().__init__(option_counts, seed)
        if algorithm not in ("ppo", "reinforce"):
            raise ValueError(f"algorithm: {algorithm!r} is not one of ppo, reinforce")
        if batch_size < 2:
            raise ValueError(f"batch_size: {batch_size!r} must be at least 2 (advantages are relative to a batch)")
        self.algorithm, self.batch_size, self.lr = algorithm, batch_size, lr
        self.entropy_weight, self.clip, self.ppo_epochs, self.baseline_decay = entropy_weight, clip, ppo_epochs, baseline_decay
        self.generator = torch.Generator().manual_seed(seed)  # the controller's weights, then its samples
        self.controller = Controller(self.option_counts, hidden=hidden, generator=self.generator)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=lr)
        self.baseline: float | None = None
        self.buffer: list[tuple[Sample, float, float]] = []  # (sample, behaviour log-prob, reward)
        self.old_logp: dict[Sample, list[float]] = {}  # behaviour log-probs of samples in flight, oldest first
        self.queue: list[tuple[Sample, float]] = []  # sampled from the current policy, not yet asked
        self.updates = 0

    def _ask(self) -> Sample:
        if not self.queue:  # sample a whole batch from the current policy at once (one pass of the LSTM)
            with torch.no_grad():
                actions, logp, _ = self.controller(self.batch_size, generator=self.generator)
            self.queue = [(tuple(int(a) for a in row), float(lp)) for row, lp in zip(actions, logp)]
        sample, logp = self.queue.pop(0)
        self.old_logp.setdefault(sample, []).append(logp)
        return sample

    def _log_prob_now(self, sample: Sample) -> float:
        with torch.no_grad():
            return float(self.controller(actions=torch.tensor([sample]))[1][0])

    def _tell(self, sample: Sample, reward: float) -> None:
        in_flight = self.old_logp.get(sample)
        if in_flight:  # the same sample may be in flight twice: the first asked is the first told
            old = in_flight.pop(0)
            if not in_flight:
                del self.old_logp[sample]
        else:  # a sample this controller did not propose (e.g. replayed): score it now
            old = self._log_prob_now(sample)
        self.buffer.append((sample, old, reward))
        if len(self.buffer) >= self.batch_size:
            self.update()

    def loss(self, samples: torch.Tensor, old_logp: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
        """What an update minimises: -(mean surrogate + entropy_weight x mean entropy)."""
        _, logp, entropy = self.controller(actions=samples)
        objective = surrogate(self.algorithm, logp, old_logp, advantage, self.clip)
        return -(objective.mean() + self.entropy_weight * entropy.mean())

    def update(self) -> None:
        """One update from the buffered batch (PPO: ``ppo_epochs`` Adam steps; REINFORCE: one);
        a batch of equal rewards leaves the policy unchanged. The baseline then moves."""
        samples = torch.tensor([s for s, _, _ in self.buffer])
        old_logp = torch.tensor([lp for _, lp, _ in self.buffer])
        rewards = torch.tensor([r for _, _, r in self.buffer])
        batch_mean = float(rewards.mean())
        advantage = advantages(rewards, batch_mean if self.baseline is None else self.baseline)
        if advantage.any():
            for _ in range(self.ppo_epochs if self.algorithm == "ppo" else 1):
                loss = self.loss(samples, old_logp, advantage)
                self.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.controller.parameters(), 5.0)
                self.optimizer.step()
            self.queue.clear()  # samples of the old policy are not proposed any more
            self.updates += 1
        self.baseline = batch_mean if self.baseline is None else (
            self.baseline_decay * self.baseline + (1 - self.baseline_decay) * batch_mean)
        self.buffer.clear()

    def probabilities(self) -> list[list[float]]:
        """Per-decision probabilities along the greedy path (for reports)."""
        with torch.no_grad():
            x, state, out = self.controller.start, None, []
            for i, head in enumerate(self.controller.heads):
                state = self.controller.lstm(x, state)
                p = torch.softmax(head(state[0]), -1)[0]
                out.append(p.tolist())
                x = self.controller.embeddings[i](p.argmax()[None])
        return out

    def state_dict(self) -> dict:
        return super().state_dict() | {
            "algorithm": self.algorithm, "baseline": self.baseline, "updates": self.updates,
            "buffer": [[list(s), lp, r] for s, lp, r in self.buffer],
            "old_logp": [[list(s), lp] for s, lps in self.old_logp.items() for lp in lps],
            "queue": [[list(s), lp] for s, lp in self.queue],
            "generator": self.generator.get_state().tolist(),
            "controller": {k: v.tolist() for k, v in self.controller.state_dict().items()},
            "optimizer": _optimizer_to_json(self.optimizer.state_dict()),
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.baseline, self.updates = state["baseline"], state["updates"]
        self.buffer = [(tuple(s), float(lp), float(r)) for s, lp, r in state["buffer"]]
        self.old_logp = {}
        for s, lp in state["old_logp"]:
            self.old_logp.setdefault(tuple(s), []).append(float(lp))
        self.queue = [(tuple(s), float(lp)) for s, lp in state.get("queue", [])]
        self.generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))
        current = self.controller.state_dict()
        self.controller.load_state_dict({k: torch.tensor(v, dtype=current[k].dtype) for k, v in state["controller"].items()})
        self.optimizer.load_state_dict(_optimizer_from_json(state["optimizer"]))


def _optimizer_to_json(state: dict) -> dict:
    return {"param_groups": state["param_groups"],
            "state": {str(k): {n: (v.tolist() if torch.is_tensor(v) else v) for n, v in s.items()}
                      for k, s in state["state"].items()}}


def _optimizer_from_json(state: dict) -> dict:
    return {"param_groups": state["param_groups"],
            "state": {int(k): {n: (torch.tensor(v, dtype=torch.float32) if isinstance(v, list) or n == "step"
                                   else v) for n, v in s.items()} for k, s in state["state"].items()}}


STRATEGIES = {"rl": RLStrategy, "random": RandomStrategy, "evolution": EvolutionStrategy}


def make_strategy(name: str, option_counts: Sequence[int], seed: int = 0, **options) -> Strategy:
    if name not in STRATEGIES:
        raise ValueError(f"strategy: {name!r} is not one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name](option_counts, seed=seed, **options)
