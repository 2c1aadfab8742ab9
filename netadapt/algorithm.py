"""The NetAdapt loop (Yang et al. 2018, as MobileNetV3 Section 4.2 uses it).

``run_netadapt(NetAdaptConfig(...))`` is what ``python -m netadapt.run`` calls:

1. the seed: the input spec with ``weights`` (checked to fit) or, without them, pre-trained on the
   proxy task; its predicted latency L0 on ``target`` and its proxy accuracy;
2. each iteration k: the step target is delta_k (``step_ms``, or ``step_ratio`` x L0; with the
   ``decay`` schedule delta_1 x ``step_decay`` ** (k - 1)), but never more than what is left to
   the budget; every proposal (:mod:`netadapt.proposals`) inherits the current weights, is
   fine-tuned ``finetune_steps`` steps and scored, as Ray tasks; the best by ``select`` is kept:
   ``ratio`` maximises (accuracy - current accuracy) / |latency cut| (MobileNetV3), ``accuracy``
   maximises accuracy (the original NetAdapt);
3. when the predicted latency is within the budget: a long-term fine-tune of the final spec.

Bad inputs: a budget at or above L0 finishes at once with the unchanged spec; a budget no proposal
can reach stops with the best (narrowest) spec reached as ``final.yaml``; weights that do not fit
the spec raise :class:`~netadapt.weights.WeightsMismatch` naming the first mismatched tensor.

Everything a run decides is in ``journal.jsonl`` (:class:`jobs.Journal`: fsync'd JSON lines; a
damaged line is skipped with a warning, only a torn last line is cut); with ``resume`` a killed
run continues where it stopped, without redoing a finished proposal. Every record has its
wall-clock ``time`` (seconds since the epoch) and a ``type``: ``seed`` (the starting spec, its
predicted latency and proxy accuracy; weights ``seed.pt``), ``iteration`` (its step target and
every proposal, skipped ones with their reason), ``proposal`` (one finished proposal: accuracies
before and after its fine-tune, weights file), ``chosen`` (the proposal an iteration kept;
``iter_KK.yaml`` / ``.pt`` written first), ``final`` (the long-term fine-tune of the final spec;
``final.yaml`` / ``final.pt`` written first).

On a measured target (``host-ort-1t``, ...) ops missing from the table, such as the widths the
proposals try, are profiled when first needed (:func:`latency.table_for`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Callable

from jobs import Journal, atomic_write_text, run_lock
from jobs.jsonio import JSONShapeError, dumps, read_json
from latency import predict_ms, table_for
from proxytask.profiles import signal_change, signal_digest, signal_key
from search_spaces import ArchSpec

from .config import (NetAdaptConfig, NetAdaptError, NetAdaptResult, expected_iterations, netadapt_signal, step_ms_at,
                     within_budget)
from .executor import ProposalExecutor
from .proposals import make_proposals, narrowest
from .records import record_problem
from .report import trajectory_plot, write_history
from .selection import (lead_and_noise, metric_per_accuracy, noise_groups, pooled_noise_accuracy, select_proposal,
                        selection_metric)

RESUME_KEYS = ("spec_hash", "target", "budget_ms", "budget_ratio", "step_ratio", "step_ms", "schedule", "step_decay",
               "select", "kinds", "finetune_steps", "finetune_lr", "pretrain_epochs", "data", "val_size", "proxy_resolution",
               "proxy_overrides", "seed", "weights", "profile", "chosen_finetune_steps", "signal_kind",
               "supernet_epochs", "space")
# What a config.json written before a key existed meant by it
RESUME_DEFAULTS = {"signal_kind": "scratch", "supernet_epochs": None, "space": "mobilenetv3"}


# --------------------------------------------------------------------------- the run
class _Run:
    """One run's state, files and Ray plumbing (private: :func:`run_netadapt` is the API)."""

    def __init__(self, config: NetAdaptConfig, spec: ArchSpec, log: Callable[[str], None]):
        self.config, self.spec, self.log = config, spec, log
        self.out = Path(config.out).resolve()
        self.journal = Journal(self.out / "journal.jsonl", check=record_problem)
        self.table = table_for(config.target, log=log)  # measured targets: missing ops profiled on demand
        self.initial_ms = predict_ms(spec, self.table)
        self.budget_ms = config.budget_ms if config.budget_ms is not None else config.budget_ratio * self.initial_ms
        self.records: list[dict] = []
        self.supernet = None  # with signal_kind supernet: the proposals' scorer (netadapt.supernet_signal)
        self.executor = ProposalExecutor(config.concurrency, config.cpus_per_proposal, config.retries, config.address,
                                         gpus_per_proposal=config.gpus_per_proposal)

    # ----------------------------------------------------------------- files
    def prepare(self) -> None:
        saved = self.out / "config.json"
        self.journal.check_target()  # a link out of the folder, a FIFO: refused before any work
        try:
            sig = netadapt_signal(self.config)
        except ValueError as err:
            raise NetAdaptError(f"{err}") from None
        settings = dict(self.config.to_dict(), spec_hash=self.spec.hash, spec_name=self.spec.name,
                        signal=signal_key(sig), signal_digest=signal_digest(sig))
        if saved.exists() and not self.config.resume:
            raise NetAdaptError(f"out: {self.out} already holds a NetAdapt run; pass --resume to continue it "
                                "or choose another --out")
        if saved.exists():
            try:
                previous = read_json(saved, what="NetAdapt config")
            except JSONShapeError as err:
                raise NetAdaptError(f"{err}; restore it, or start a new run in another --out") from None
            for key in RESUME_KEYS:
                if previous.get(key, RESUME_DEFAULTS.get(key)) != settings.get(key):
                    raise NetAdaptError(f"resume: {key} was {previous.get(key)!r} in {saved}, now "
                                        f"{settings.get(key)!r}; resume with the same settings")
            digest = previous.get("signal_digest")
            if digest is not None and digest != settings["signal_digest"]:
                raise NetAdaptError(f"resume: the accuracy signal changed: "
                                    f"{signal_change(previous.get('signal'), settings['signal'])} (in {saved}); "
                                    "start a new --out, or resume with the flags the run started with")
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(saved, dumps(settings, indent=2) + "\n")
        self.records = self.journal.repair() if self.config.resume else []

    def record(self, record: dict) -> None:
        record = {**record, "time": round(time.time(), 3)}
        self.journal.append(record)
        self.records.append(record)

    def write_outputs(self) -> None:
        write_history(self.records, self.out / "history.csv")
        if any(r["type"] == "seed" for r in self.records):
            trajectory_plot(self.records, self.out / "trajectory.png", target=self.config.target,
                            budget_ms=self.budget_ms, select=self.config.select)

    def spec_file(self, spec: ArchSpec, filename: str, name: str, header: str) -> ArchSpec:
        spec = spec.replace(name=name)
        atomic_write_text(self.out / filename, spec.to_yaml(header=header))
        return spec

    # ----------------------------------------------------------------- data and training
    def setup_training(self) -> None:
        from proxytask.data import ProxyData

        c = self.config
        try:
            sig = netadapt_signal(c)
        except ValueError as err:
            raise NetAdaptError(f"{err}") from None
        if isinstance(c.data, ProxyData):
            self.data = c.data
        else:
            self.data = sig.load(seed=c.seed, val_size=c.val_size)
        self.proxy = sig.proxy.replace(seed=c.seed, threads=max(1, int(c.cpus_per_proposal)))
        if isinstance(c.data, ProxyData) and self.proxy.resolution not in (None, c.data.resolution) \
                and c.proxy_resolution is None and "resolution" not in c.proxy_overrides:
            self.proxy = self.proxy.replace(resolution=None)  # data given in memory: train at their resolution
        if self.proxy.device.startswith("cuda") and c.gpus_per_proposal <= 0:
            raise NetAdaptError(f"proxy.device: {self.proxy.device!r} needs GPUs for the proposals; pass "
                                "--gpus-per-proposal 1 (or a fraction), or leave the device at cpu")
        # The seed's pre-training and the long-term fine-tune run in this process with as many
        # threads as one proposal gets: more threads than free cores only spin on a busy machine.
        self.driver_threads = self.proxy.threads
        if c.signal_kind == "supernet":
            from .supernet_signal import prepare_scores

            self.supernet = prepare_scores(c, self.spec, sig, self.data, self.log)

    def evaluate(self, jobs: list[dict], parent_state: dict):
        """``(job, result)`` of each proposal job as it finishes: fine-tuned as Ray tasks, or scored
        with the supernet in this process (``signal_kind`` supernet)."""
        if self.supernet is not None:
            return self.supernet.run(jobs)
        return self.executor.run(jobs, parent_state, self.data)

    def finetune_proxy(self, steps: int, seed: int):
        from .finetune import finetune_config

        return finetune_config(self.proxy, self.data, steps, self.config.finetune_lr, seed)

    def score_proxy(self, seed: int | None = None):
        """The settings of a supernet score: BN statistics on the batches of ``seed`` (default: the
        run's seed, the same batches for every proposal of the run; other seeds measure the noise)."""
        return self.proxy.replace(seed=self.config.seed if seed is None else seed)

    def seed_step(self) -> dict:
        """The seed record: journaled already, or made now (weights checked, or pre-training)."""
        seed = next((r for r in self.records if r["type"] == "seed"), None)
        if seed is not None and (self.out / "seed.pt").exists():
            return seed
        from proxytask.train import torch_threads

        from .finetune import load_model, score, trained_spec
        from .weights import check_fits, load_weights, save_weights

        c, start = self.config, time.perf_counter()
        with torch_threads(self.driver_threads):
            if self.supernet is not None:
                scored = self.supernet.score(self.spec, self.score_proxy())
                if scored["status"] != "ok":
                    raise NetAdaptError(f"scoring the seed with the supernet failed: {scored['reason']}")
                state, accuracy = scored["state"], scored["accuracy_after"]
                source = f"inherited from the supernet in {self.supernet.folder}"
            elif c.weights is not None:
                state = load_weights(c.weights)
                check_fits(state, trained_spec(self.spec, self.data, self.proxy))
                model = load_model(self.spec, state, self.data, self.proxy)
                accuracy, _ = score(model, self.data, self.proxy)
                source = f"weights {c.weights}"
            else:
                from proxytask.train import TrainingDiverged, train

                self.log(f"pre-training the seed {self.spec.name} on {self.data.name} "
                         f"({self.proxy.total_steps(self.data)} steps; pass --weights to skip)")
                model = load_model(self.spec, None, self.data, self.proxy)
                try:
                    train(model, self.data, self.proxy)
                except TrainingDiverged as err:
                    raise NetAdaptError(f"pre-training the seed diverged: {err} (e.g. --proxy lr=0.05)") from None
                accuracy, _ = score(model, self.data, self.proxy)
                source = "pre-trained on the proxy task"
            if self.supernet is None:
                state = model.state_dict()
        save_weights(state, self.out / "seed.pt")
        self.spec_file(self.spec, "iter_00.yaml", f"{self.spec.name}-netadapt-iter00",
                       f"NetAdapt seed ({source}): predicted {self.initial_ms:.3f} ms on {c.target}, "
                       f"proxy accuracy {100 * accuracy:.2f} %")
        seed = {"type": "seed", "spec": self.spec.to_dict(), "hash": self.spec.hash, "latency_ms": self.initial_ms,
                "budget_ms": self.budget_ms, "accuracy": accuracy, "source": source,
                "seconds": time.perf_counter() - start}
        self.record(seed)
        return seed

    def run_proposals(self, iteration: int, parent: ArchSpec, parent_state: dict, parent_accuracy: float,
                      pending: list, bar) -> None:
        """Evaluate ``pending`` proposals (Ray tasks); journal each as it finishes."""
        from .weights import save_weights

        steps = self.config.finetune_steps
        proxy = dataclasses.asdict(self.finetune_proxy(max(1, steps), self.config.seed + iteration)
                                   if self.supernet is None else self.score_proxy())
        by_index = {p.index: p for p in pending}
        jobs = [{"index": p.index, "spec": p.spec.to_dict(), "parent_spec": parent.to_dict(), "proxy": proxy,
                 "steps": steps} for p in pending]
        for job, result in self.evaluate(jobs, parent_state):
            p = by_index[job["index"]]
            state, weights, metric = result.pop("state", None), None, None
            if state is not None:
                weights = f"proposals/iter_{iteration:02d}/p{p.index:02d}.pt"
                save_weights(state, self.out / weights)
            if result["status"] == "ok":
                metric = selection_metric(result["accuracy_after"], parent_accuracy, p.cut_ms, self.config.select)
            self.record({"type": "proposal", "iteration": iteration, "index": p.index, "name": p.name,
                         "hash": p.spec.hash, "channels": p.channels, "latency_ms": p.latency_ms, "cut_ms": p.cut_ms,
                         "status": result["status"], "reason": result.get("reason", ""),
                         "accuracy_before": result.get("accuracy_before"),
                         "accuracy_after": result.get("accuracy_after"), "metric": metric,
                         "train_loss": result.get("train_loss"), "seconds": result.get("seconds"),
                         "cpu_seconds": result.get("cpu_seconds"), "weights": weights,
                         "signal": self.config.signal_kind})
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{p.name} {p.channels}: {result['status']}")

    # ----------------------------------------------------------------- the loop
    def current(self, seed: dict) -> tuple[ArchSpec, float, float, int]:
        """(spec, latency, accuracy, iterations done) after the last chosen proposal."""
        chosen = [r for r in self.records if r["type"] == "chosen"]
        if not chosen:
            return self.spec, seed["latency_ms"], seed["accuracy"], 0
        last = chosen[-1]
        return ArchSpec.from_dict(last["spec"]), last["latency_ms"], last["accuracy"], last["iteration"]

    def drop_proposal_weights(self, below: int) -> None:
        """Delete the proposals' weights of the iterations before ``below``. They are kept until the
        next iteration is journaled: a choice whose record is lost is made again from them."""
        folder = self.out / "proposals"
        if folder.is_dir():
            for old in folder.glob("iter_*"):
                suffix = old.name[len("iter_"):]
                if suffix.isdigit() and int(suffix) < below:
                    shutil.rmtree(old, ignore_errors=True)

    def weights_of(self, iteration: int):
        from .weights import load_weights

        return load_weights(self.out / ("seed.pt" if iteration == 0 else f"iter_{iteration:02d}.pt"))

    def iterate(self, seed: dict) -> tuple[str, str]:
        """Shrink until the budget is met; returns (status, message)."""
        c = self.config
        spec, latency_ms, accuracy, done_iterations = self.current(seed)
        outer = inner = None
        if c.progress:
            from tqdm import tqdm

            total = done_iterations + expected_iterations(latency_ms, self.budget_ms, c) if not within_budget(
                latency_ms, self.budget_ms) else done_iterations
            outer = tqdm(total=max(total, done_iterations), initial=done_iterations, unit="iter", desc="netadapt",
                         position=0, smoothing=0)
            inner = tqdm(total=0, unit="proposal", desc="proposals", position=1, leave=False, smoothing=0)
        try:
            while not within_budget(latency_ms, self.budget_ms):
                iteration = done_iterations + 1
                if c.max_iterations is not None and iteration > c.max_iterations:
                    return "stopped", (f"stopped after --max-iterations {c.max_iterations}: {latency_ms:.3f} ms "
                                       f"predicted, budget {self.budget_ms:.3f} ms not reached yet")
                proposals, target_ms = self.list_proposals(iteration, spec, latency_ms)
                feasible = [p for p in proposals if p.feasible]
                skipped = [p for p in proposals if not p.feasible]
                if not feasible:
                    return "unreachable", self.unreachable_message(spec, target_ms, latency_ms, iteration, skipped)
                parent_state = self.weights_of(done_iterations)
                results = self.train_iteration(iteration, spec, parent_state, accuracy, feasible, inner)
                best = select_proposal(results, accuracy, c.select)
                if best is None:
                    first = next(r for r in results if r["status"] != "ok")
                    raise NetAdaptError(f"every proposal of iteration {iteration} failed; the first: {first['name']}: "
                                        f"{first['reason']}")
                proposal = next(p for p in feasible if p.index == best["index"])
                selection = self.measure_noise(iteration, spec, parent_state, accuracy, proposal, results)
                self.choose(iteration, proposal, best, skipped, selection)
                spec, latency_ms, accuracy, done_iterations = self.current(seed)
                if outer is not None:
                    outer.total = max(outer.total, iteration)
                    outer.update(1)
                    outer.set_postfix_str(f"{latency_ms:.3f} ms, acc {100 * accuracy:.1f} %")
            return "done", ""
        finally:
            for bar in (inner, outer):
                if bar is not None:
                    bar.close()

    def list_proposals(self, iteration: int, spec: ArchSpec, latency_ms: float) -> tuple[list, float]:
        """The proposals of ``iteration`` and its step target: journaled the first time, checked
        against the journal's on a resume. The earlier iterations' proposal weights go now."""
        c = self.config
        delta = step_ms_at(iteration, self.initial_ms, c)
        target_ms = min(delta, latency_ms - self.budget_ms)
        proposals = make_proposals(spec, target_ms, self.table, c.kinds)
        listed = next((r for r in self.records if r["type"] == "iteration" and r["iteration"] == iteration), None)
        if listed is None:
            self.record({"type": "iteration", "iteration": iteration, "step_ms": delta,
                         "step_target_ms": target_ms, "parent_hash": spec.hash, "parent_latency_ms": latency_ms,
                         "proposals": [p.to_dict() for p in proposals]})
        elif [p["hash"] for p in listed["proposals"]] != [p.to_dict()["hash"] for p in proposals]:
            raise NetAdaptError(f"resume: the proposals of iteration {iteration} differ from the journal's; "
                                "the latency table or the code changed since the run started")
        self.drop_proposal_weights(below=iteration)
        return proposals, target_ms

    def unreachable_message(self, spec: ArchSpec, target_ms: float, latency_ms: float, iteration: int,
                            skipped: list) -> str:
        floor_ms = predict_ms(narrowest(spec), self.table)
        return (f"budget {self.budget_ms:.3f} ms unreachable: no proposal cuts the step target "
                f"{target_ms:.4f} ms from {latency_ms:.3f} ms (e.g. {skipped[0].name}: {skipped[0].reason}); "
                f"the narrowest network of this topology predicts {floor_ms:.3f} ms. Kept the best spec "
                f"reached ({latency_ms:.3f} ms, iteration {iteration - 1}) as final.yaml"
                + ("" if floor_ms > self.budget_ms else "; a smaller step (--step-ratio) may get closer"))

    def train_iteration(self, iteration: int, spec: ArchSpec, parent_state: dict, accuracy: float, feasible: list,
                        bar) -> list[dict]:
        """Fine-tune and score the ``feasible`` proposals of ``iteration`` not finished yet (a
        journaled one whose weights are kept); returns every proposal record of the iteration."""
        finished = {r["index"]: r for r in self.records
                    if r["type"] == "proposal" and r["iteration"] == iteration
                    and (r["weights"] is None or (self.out / r["weights"]).exists())}
        pending = [p for p in feasible if p.index not in finished]
        if finished:
            self.log(f"resuming iteration {iteration}: {len(feasible) - len(pending)} of {len(feasible)} "
                     "proposals already done")
        if bar is not None:
            bar.reset(total=len(feasible))
            bar.update(len(feasible) - len(pending))
            bar.set_description(f"iter {iteration} proposals")
        self.run_proposals(iteration, spec, parent_state, accuracy, pending, bar)
        return [dict(r) for r in self.records if r["type"] == "proposal" and r["iteration"] == iteration]

    def measure_noise(self, iteration: int, parent: ArchSpec, parent_state: dict, parent_accuracy: float, proposal,
                      results: list[dict]) -> dict:
        """Fine-tune the chosen proposal ``noise_seeds`` more times with other seeds (same steps,
        same inherited weights); journal each score and return :func:`lead_and_noise` of the
        iteration, its noise pooled over this and the earlier iterations
        (:func:`pooled_noise_accuracy`). A resumed run reuses the scores already journaled."""
        c = self.config
        done = [r for r in self.records if r["type"] == "noise" and r["iteration"] == iteration
                and r["index"] == proposal.index]
        for k in range(len(done), c.noise_seeds):
            seed = c.seed + iteration + 1_000_003 * (k + 1)
            proxy = dataclasses.asdict(self.finetune_proxy(max(1, c.finetune_steps), seed) if self.supernet is None
                                       else self.score_proxy(seed))
            job = {"index": proposal.index, "spec": proposal.spec.to_dict(), "parent_spec": parent.to_dict(),
                   "proxy": proxy, "steps": c.finetune_steps}
            for _, result in self.evaluate([job], parent_state):
                result.pop("state", None)
                metric = (selection_metric(result["accuracy_after"], parent_accuracy, proposal.cut_ms, c.select)
                          if result["status"] == "ok" else None)
                record = {"type": "noise", "iteration": iteration, "index": proposal.index, "repeat": k + 1,
                          "seed": seed, "status": result["status"], "accuracy_after": result.get("accuracy_after"),
                          "metric": metric, "seconds": result.get("seconds")}
                self.record(record)
                done.append(record)
        chosen = next(r for r in results if r["index"] == proposal.index)
        ok = [r for r in results if r["status"] == "ok"]
        noise_accuracy, dof = pooled_noise_accuracy(noise_groups(self.records, (iteration, chosen["accuracy_after"])))
        return lead_and_noise([r["metric"] for r in ok], noise_accuracy,
                              metric_per_accuracy(proposal.cut_ms, c.select), dof)

    def recover(self, iteration: int, proposal, best: dict) -> tuple[float, dict]:
        """Fine-tune the chosen proposal alone ``chosen_finetune_steps`` steps (in this process),
        save its weights as ``iter_KK.pt``; returns (validation accuracy after, record fields)."""
        from proxytask.train import TrainingDiverged, torch_threads

        from .finetune import load_model, train_and_score
        from .weights import load_weights, save_weights

        c = self.config
        config = self.finetune_proxy(c.chosen_finetune_steps, c.seed + iteration + 500_009).replace(
            threads=self.driver_threads)
        start = time.perf_counter()
        try:
            with torch_threads(self.driver_threads):
                model = load_model(proposal.spec, load_weights(self.out / best["weights"]), self.data, config)
                scores = train_and_score(model, self.data, config)
        except TrainingDiverged as err:
            self.log(f"iteration {iteration}: the chosen proposal's fine-tune diverged ({err}); kept its weights")
            shutil.copyfile(self.out / best["weights"], self.out / f".iter_{iteration:02d}.pt.tmp")
            os.replace(self.out / f".iter_{iteration:02d}.pt.tmp", self.out / f"iter_{iteration:02d}.pt")
            return best["accuracy_after"], {"recovery_steps": 0}
        save_weights(model.state_dict(), self.out / f"iter_{iteration:02d}.pt")
        return scores["accuracy_after"], {"recovery_steps": c.chosen_finetune_steps,
                                          "recovery_seconds": round(time.perf_counter() - start, 2)}

    def choose(self, iteration: int, proposal, best: dict, skipped: list, selection: dict | None = None) -> None:
        name = f"{self.spec.name}-netadapt-iter{iteration:02d}"
        spec = self.spec_file(proposal.spec, f"iter_{iteration:02d}.yaml", name,
                              f"NetAdapt iteration {iteration} of {self.out.name}: {proposal.name} "
                              f"{proposal.channels}, predicted {proposal.latency_ms:.3f} ms on {self.config.target} "
                              f"(budget {self.budget_ms:.3f} ms), proxy accuracy {100 * best['accuracy_after']:.2f} % "
                              + (f"after {self.config.finetune_steps} fine-tune steps" if self.supernet is None
                                 else "with the supernet's weights (BN recalibrated)")
                              + (f" (+ {self.config.chosen_finetune_steps} for the chosen one)"
                                 if self.config.chosen_finetune_steps else ""))
        accuracy, recovery = best["accuracy_after"], {}
        if self.config.chosen_finetune_steps:
            accuracy, recovery = self.recover(iteration, proposal, best)
        else:
            shutil.copyfile(self.out / best["weights"], self.out / f".iter_{iteration:02d}.pt.tmp")
            os.replace(self.out / f".iter_{iteration:02d}.pt.tmp", self.out / f"iter_{iteration:02d}.pt")
        self.record({"type": "chosen", "iteration": iteration, "index": proposal.index, "name": proposal.name,
                     "channels": proposal.channels, "spec": spec.to_dict(), "hash": spec.hash,
                     "latency_ms": proposal.latency_ms, "cut_ms": proposal.cut_ms, "score": best["accuracy_after"],
                     "accuracy": accuracy, "metric": best["metric"], **recovery, **(selection or {}),
                     "noise_scale": metric_per_accuracy(proposal.cut_ms, self.config.select)})
        self.write_outputs()
        noise = ""
        if selection and selection.get("noise") is not None and selection.get("lead") is not None:
            noise = (f"; lead {selection['lead']:.4g} vs noise {selection['noise']:.4g} per ms "
                     f"({'signal' if selection['lead_exceeds_noise'] else 'within the noise'})")
        self.log(f"iteration {iteration}: {proposal.name} {proposal.channels} -> {proposal.latency_ms:.3f} ms "
                 f"(cut {proposal.cut_ms:.3f} ms), proxy accuracy {100 * best['accuracy_after']:.2f} %"
                 + (f" -> {100 * accuracy:.2f} % after its {self.config.chosen_finetune_steps}-step fine-tune"
                    if recovery.get("recovery_steps") else "")
                 + (f"; {len(skipped)} proposal(s) skipped" if skipped else "") + noise)

    def finish(self, seed: dict, status: str) -> tuple[ArchSpec, float | None]:
        """final.yaml and final.pt: after a long-term fine-tune when the budget was met."""
        from .weights import save_weights

        spec, latency_ms, accuracy, iterations = self.current(seed)
        final = next((r for r in self.records if r["type"] == "final"), None)
        name = f"{self.spec.name}-netadapt"
        if final is not None and (self.out / "final.pt").exists():
            return ArchSpec.from_dict(final["spec"]), final.get("accuracy")
        state = self.weights_of(iterations)
        accuracy_before, test_accuracy = accuracy, None
        steps = self.config.long_finetune_steps if status == "done" else 0
        if steps:
            from proxytask.train import torch_threads

            from .finetune import load_model, train_and_score
            from .finetune import test_accuracy as _test_accuracy

            self.log(f"long-term fine-tune of the final spec: {steps} steps")
            config = self.finetune_proxy(steps, self.config.seed + 100_003).replace(threads=self.driver_threads)
            from proxytask.train import TrainingDiverged

            try:
                with torch_threads(self.driver_threads):
                    model = load_model(spec, state, self.data, config)
                    scores = train_and_score(model, self.data, config)
                accuracy_before, accuracy = scores["accuracy_before"], scores["accuracy_after"]
                with torch_threads(self.driver_threads):
                    test_accuracy = _test_accuracy(model, self.data, config)
                state = model.state_dict()
            except TrainingDiverged as err:
                self.log(f"the long-term fine-tune diverged ({err}); final.pt keeps the weights of iteration "
                         f"{iterations}")
                steps = 0
        save_weights(state, self.out / "final.pt")
        shutil.rmtree(self.out / "proposals", ignore_errors=True)  # left over when a kill came mid-cleanup
        what = {"done": f"after a {steps}-step long-term fine-tune",
                "unreachable": "budget NOT met (best spec reached; no long-term fine-tune)",
                "stopped": "budget not reached yet (stopped; no long-term fine-tune)"}[status]
        final_spec = self.spec_file(spec, "final.yaml", name,
                                    f"NetAdapt result of {self.out.name}: predicted {latency_ms:.3f} ms on "
                                    f"{self.config.target} (from {self.initial_ms:.3f} ms, budget "
                                    f"{self.budget_ms:.3f} ms), proxy accuracy {100 * accuracy:.2f} % {what}")
        self.record({"type": "final", "status": status, "spec": final_spec.to_dict(), "hash": final_spec.hash,
                     "iterations": iterations, "latency_ms": latency_ms, "accuracy_before": accuracy_before,
                     "accuracy": accuracy, "test_accuracy": test_accuracy, "long_finetune_steps": steps})
        return final_spec, accuracy


def _resolve(spec: str | ArchSpec) -> ArchSpec:
    if isinstance(spec, ArchSpec):
        return spec
    from search_spaces.spec import resolve_spec

    return resolve_spec(spec)


def netadapt_plan(config: NetAdaptConfig) -> dict:
    """What :func:`run_netadapt` will run, resolved (``--dry-run``): the settings, the spec, the
    latency budget and where it comes from, the accuracy signal. Nothing is trained or written."""
    from latency import MissingOpsError
    from latency.predictor import resolve_table

    config.check()
    spec = _resolve(config.spec)
    if config.signal_kind == "supernet":
        from .supernet_signal import seed_slots

        seed_slots(config, spec)
    try:  # the table as it is: a dry run profiles nothing
        initial_ms = predict_ms(spec, resolve_table(config.target))
    except (MissingOpsError, FileNotFoundError) as err:
        lacks = f"lacks {len(err.missing)} op(s) of {spec.name}" if isinstance(err, MissingOpsError) else "is not built"
        initial_ms, unknown = None, f"not known yet: the {config.target} table {lacks}; ops are profiled when the run starts"
    if config.budget_ms is not None:
        budget_ms, source = config.budget_ms, "given (--budget-ms)"
    elif initial_ms is None:
        budget_ms, source = None, f"{config.budget_ratio:g} x the initial latency, {unknown}"
    else:
        budget_ms = config.budget_ratio * initial_ms
        source = f"{config.budget_ratio:g} x {spec.name}'s {initial_ms:.2f} ms (--budget-ratio)"
    try:
        sig = netadapt_signal(config)
    except ValueError as err:
        raise NetAdaptError(f"{err}") from None
    return {"config": config.to_dict(), "spec": spec.name, "spec_hash": spec.hash, "target": config.target,
            "initial_latency_ms": initial_ms, "budget_ms": budget_ms, "budget_ms_source": source,
            "signal": sig.describe(), "signal_digest": signal_digest(sig)}


def plan_words(plan: dict) -> str:
    """:func:`netadapt_plan` in words a person reads."""
    from proxytask.profiles import signal_words

    c = plan["config"]
    step = f"{c['step_ms']:g} ms" if c.get("step_ms") is not None else f"{c['step_ratio']:g} x the initial latency"
    def ms(value) -> str:
        return "? ms" if value is None else f"{value:.2f} ms"

    return "\n".join([
        f"latency budget: {ms(plan['budget_ms'])} on {plan['target']}, {plan['budget_ms_source']}",
        f"spec: {plan['spec']}, {ms(plan['initial_latency_ms'])} now; step {step} ({c['schedule']}), "
        f"select by {c['select']}, " + (f"{c['finetune_steps']} fine-tune steps per proposal"
                                        if c.get("signal_kind", "scratch") == "scratch" else
                                        f"proposals scored with the supernet of space {c.get('space')!r} (trained "
                                        "first, or reused from runs/supernet/; inherited channel slices, BN "
                                        "recalibrated)"),
        f"accuracy signal: {signal_words(plan['signal'])}",
        f"output: {c['out']}{' (resumed)' if c['resume'] else ''}",
        "dry run: nothing was trained or written (--json prints this as JSON)"])


def run_netadapt(config: NetAdaptConfig, log: Callable[[str], None] | None = None) -> NetAdaptResult:
    """Run NetAdapt as ``config`` says (see the module docstring); returns the outcome.

    Raises :class:`NetAdaptError` for bad settings, :class:`~netadapt.weights.WeightsMismatch` for
    weights that do not fit, :class:`search_spaces.SpecError`, :class:`latency.MissingOpsError`,
    :class:`jobs.RunLocked` when a live run holds the folder (:func:`jobs.run_lock`).
    """
    config.check()
    with run_lock(config.out, what="NetAdapt folder"):
        return _run_netadapt(config, log)


def _run_netadapt(config: NetAdaptConfig, log: Callable[[str], None] | None) -> NetAdaptResult:
    start = time.perf_counter()
    config.check()
    if log is None:
        log = _default_log(config.progress)
    spec = _resolve(config.spec)
    if config.signal_kind == "supernet":
        from .supernet_signal import seed_slots

        seed_slots(config, spec)  # a seed the supernet cannot run: one line naming the layer, before any work
    run = _Run(config, spec, log)
    run.prepare()

    def result(status, message, final_spec, latency_ms, iterations, seed_accuracy, accuracy) -> NetAdaptResult:
        out = NetAdaptResult(status, message, final_spec, run.initial_ms, latency_ms, run.budget_ms, iterations,
                             seed_accuracy, accuracy, run.out, round(time.perf_counter() - start, 1))
        atomic_write_text(run.out / "summary.json", dumps(out.to_dict(), indent=2) + "\n")
        return out

    if within_budget(run.initial_ms, run.budget_ms):
        message = (f"budget {run.budget_ms:.3f} ms is at or above the current latency {run.initial_ms:.3f} ms of "
                   f"{spec.name} on {config.target}: nothing to shrink; final.yaml is the spec unchanged")
        atomic_write_text(run.out / "final.yaml", spec.to_yaml(header=message))
        if config.weights is not None:
            from .weights import load_weights, save_weights

            save_weights(load_weights(config.weights), run.out / "final.pt")
        run.write_outputs()
        return result("within_budget", message, spec, run.initial_ms, 0, None, None)

    run.setup_training()
    try:
        seed = run.seed_step()
        run.write_outputs()
        status, message = run.iterate(seed)
        final_spec, accuracy = run.finish(seed, status)
    finally:
        run.executor.close()
    run.write_outputs()
    _, latency_ms, _, iterations = run.current(seed)
    if status == "done":
        message = (f"reached {latency_ms:.3f} ms (budget {run.budget_ms:.3f} ms, from {run.initial_ms:.3f} ms) on "
                   f"{config.target} in {iterations} iteration(s); proxy accuracy {100 * seed['accuracy']:.2f} % -> "
                   f"{100 * accuracy:.2f} % after the long-term fine-tune")
    return result(status, message, final_spec, latency_ms, iterations, seed["accuracy"], accuracy)


def _default_log(progress: bool) -> Callable[[str], None]:
    if progress:
        from tqdm import tqdm

        return tqdm.write
    return lambda line: print(line, flush=True)
