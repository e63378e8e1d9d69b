"""Adaptive sampling of `distill generate`: ``--until-verified K --max-samples N`` spends samples where they pay.

    distill generate --teacher bundled --dataset data/demo/train.jsonl --few-shot data/demo/few_shot.json \\
        -n 2 --until-verified 2 --max-samples 8 --max-tokens 256 --answer-extraction standard

Samples come in rounds of ``-n``: round r asks for sample indices r*n ... r*n+n-1 (the last round stops at N)
of every prompt still open, in one engine call. Each sample is graded by the one grader
(``distill.verify.grader``, on one pool of killable workers for the whole run) as soon as it is saved; a prompt
closes at the end of a round once K of its samples verified, or when N were tried. A sample *verifies* when it is
complete (not cut off), well-formed (one ``<think>`` block, then an answer) and correct against the row's
reference answer (``--answer-extraction``, ``--domain`` math or multiple_choice, ``--grade-timeout``): the three
grader checks `distill filter` starts with. Easy prompts cost one round; hard ones get up to N tries. A prompt
whose reference cell is empty cannot verify: it gets one round, as with a fixed ``-n``.

Every sample is stored, failed ones too (`distill filter` computes each prompt's pass rate from all of its
samples): one row per sample as always, plus ``round`` (sample_index // n) and ``verified`` (its verdict here).

Resuming. Verdicts are persisted next to the samples (``verdicts-*.jsonl`` in the partial dir). A rerun takes
the stored verdicts (grading the samples a kill left without one), then applies the same rule to what is
stored: a prompt whose round was cut short gets the rest of that round, one whose last round is complete gets
the next round or is closed. So after any number of kills (between or inside rounds) the artifact holds, for
every prompt, the sample indices 0 .. t-1, t being the end of the first round at which K had verified (or N):
none lost, none twice. Seeds: each engine call (a "step") is seeded from the run's seed (``run_seed``; step 0
uses it as is, so round 0 draws exactly what a fixed ``-n`` run with that seed draws). An uninterrupted run is
reproducible; a resumed run draws new noise for what it still samples, as a resumed fixed-n run does, so where
its prompts stop can differ from an uninterrupted run's; the rule above holds for both.

Manifest key ``adaptive``: the rule, prompts by how they ended, samples tried and verified per prompt (mean and
histograms; the per-prompt detail is in the rows' ``round`` / ``verified`` columns), prompts still open per
round, tokens per verified row and, with --price-in/--price-out, cost per verified row.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from distill import log
from distill.errors import UserError

VERIFIED_MEANS = "complete, well-formed and correct"
MAX_SAMPLES_ROUNDS = 4  # default --max-samples: four rounds of -n
DOMAINS = ("math", "multiple_choice")  # code answers need test cases and the sandbox: grade them in `distill filter`
# Grading one answer takes milliseconds and a teacher hands over at most tens of samples a second, so two workers
# keep up; more would each hold math-verify + sympy in memory (and, on a CPU-only machine, take cores from vLLM).
GRADE_WORKERS = 2
GRADE_BATCH, GRADE_EVERY_S = 32, 1.0  # grade when this many samples wait, or the oldest has waited this long


@dataclass(frozen=True)
class StoppingRule:
    """Which samples a prompt still needs: rounds of ``round_size`` until ``until_verified`` verified or
    ``max_samples`` were tried."""

    round_size: int      # -n
    until_verified: int  # K
    max_samples: int     # N

    @classmethod
    def of(cls, cfg) -> StoppingRule:
        return cls(cfg.num_generations, cfg.until_verified, cfg.max_samples)

    @property
    def rounds(self) -> int:
        return math.ceil(self.max_samples / self.round_size)

    def round_indices(self, round_number: int) -> range:
        return range(round_number * self.round_size, min((round_number + 1) * self.round_size, self.max_samples))

    def next_indices(self, verdicts: Mapping[int, bool], has_reference: bool = True) -> list[int]:
        """The sample indices a prompt needs next, given its graded samples ({sample index: verified}): the rest
        of its first unfinished round, else the next round while fewer than K verified; [] when it is closed."""
        verified = 0
        for round_number in range(self.rounds):
            indices = self.round_indices(round_number)
            missing = [i for i in indices if i not in verdicts]
            if missing:
                return missing
            verified += sum(bool(verdicts[i]) for i in indices)
            if verified >= self.until_verified or not has_reference:
                return []
        return []

    def outcome(self, verdicts: Mapping[int, bool], has_reference: bool = True) -> str:
        """How a closed prompt ended: ``verified`` (K reached), ``max_samples`` or ``no_reference``."""
        if sum(map(bool, verdicts.values())) >= self.until_verified:
            return "verified"
        return "max_samples" if has_reference else "no_reference"


def step_seed(seed: int, step: int) -> int:
    """The seed of a run's engine call number ``step``: the run's seed first, then one stream per step (the
    engine reseeds every call, so one seed for all would replay round 0's noise on the prompts still open)."""
    if step == 0:
        return seed
    # its own namespace: run_seed's "{seed}/{shard}/{count}/{runs}" would give step 1 of a first run the seed of
    # the run resuming it, which may redraw the same noise for the same requests
    digest = hashlib.sha256(f"{seed}/step/{step}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (2 ** 31)


# ---------------------------------------------------------------------------- config and input checks


def validate(cfg) -> None:
    """The adaptive options' checks (GenerateConfig.validate); fills in --max-samples' default."""
    from distill.config import MAX_SAMPLES, MAX_SECONDS
    from distill.verify.extraction import MODES
    from distill.verify.grader import normalize_domain

    if cfg.until_verified is None:
        if cfg.max_samples is not None:
            raise UserError("--max-samples is the cap of --until-verified: pass --until-verified K too (or use -n "
                            "for a fixed number of samples)")
        return
    if cfg.until_verified < 1:
        raise UserError(f"--until-verified must be at least 1, got {cfg.until_verified}")
    if cfg.max_samples is None:
        cfg.max_samples = MAX_SAMPLES_ROUNDS * cfg.num_generations
    n, k, cap = cfg.num_generations, cfg.until_verified, cfg.max_samples
    if cap < n:
        raise UserError(f"--max-samples {cap} is below -n {n}: a round is -n samples, so --max-samples must be at "
                        f"least {n}")
    if cap > MAX_SAMPLES:
        raise UserError(f"--max-samples must be at most {MAX_SAMPLES:,}, got {cap:,}")
    if k > cap:
        raise UserError(f"--until-verified {k} is more than --max-samples {cap}: a prompt could never reach it")
    if cfg.answer_extraction not in MODES:
        raise UserError(f"--answer-extraction must be one of {', '.join(MODES)}, got {cfg.answer_extraction!r}")
    cfg.domain = normalize_domain(cfg.domain)
    if cfg.domain not in DOMAINS:
        raise UserError(f"--domain {cfg.domain!r}: --until-verified grades {' or '.join(DOMAINS)} answers (code "
                        "needs test cases and the sandbox: generate with a fixed -n, then `distill filter`)")
    if not 0 < cfg.grade_timeout <= MAX_SECONDS:
        raise UserError(f"--grade-timeout must be > 0 and <= {MAX_SECONDS:g} seconds, got {cfg.grade_timeout}")


def hash_payload(cfg) -> dict[str, Any]:
    """What the adaptive options add to the config hash (they decide which samples exist; the timeout does not)."""
    return {"until_verified": cfg.until_verified, "max_samples": cfg.max_samples,
            "answer_extraction": cfg.answer_extraction, "domain": cfg.domain}


def check_references(cfg, data, prompts) -> dict[str, str | None]:
    """Each prompt's reference cell, as the rows will store it ({id: answer}); UserError without any."""
    from distill.stages.generate.loop import _answer
    from distill.verify.extraction import reference_answer

    if prompts.answer_column is None:
        from distill.stages.generate.prompts import ANSWER_COLUMNS

        raise UserError(f"--until-verified grades every sample against the problem's reference answer, and dataset "
                        f"{cfg.dataset} has no answer column (looked for {', '.join(ANSWER_COLUMNS)}; its columns: "
                        f"{', '.join(data.column_names)}): pass --answer-column, or sample a fixed -n")
    cells = data[prompts.answer_column]
    references = {key: _answer(cells[row]) for key, row in zip(prompts.ids, prompts.rows, strict=True)}
    empty = sum(reference_answer(cell) is None for cell in references.values())
    if empty == len(references):
        raise UserError(f"column {prompts.answer_column!r} of dataset {cfg.dataset} holds no reference answer "
                        "(all empty): --until-verified has nothing to grade against; pass --answer-column")
    if empty:
        log.warn(f"{empty} of {len(references)} prompts have no reference answer in column "
                 f"{prompts.answer_column!r}: they cannot verify and get one round of -n samples")
    return references


# ---------------------------------------------------------------------------- grading


def grade_config(cfg):
    from distill.verify.grader import GradeConfig

    return GradeConfig(timeout_s=cfg.grade_timeout, answer_extraction=cfg.answer_extraction)


def is_verified(result) -> bool:
    """The grader's result of one sample counts as verified (see VERIFIED_MEANS)."""
    from distill.verify.grader import CORRECT

    return result.complete and result.well_formed and result.verdict.status == CORRECT


class SampleGrader:
    """Grades saved samples in small batches on one worker pool; each verdict is persisted before it counts."""

    def __init__(self, job, pool, shard_label: str, run_id: str):
        self.cfg, self.store, self.references = job.cfg, job.store, job.references
        self.config = grade_config(job.cfg)
        self.pool, self.label, self.run_id = pool, shard_label, run_id
        self.pending: list[dict[str, Any]] = []
        self.waiting_since = 0.0
        self._writer = None

    def add(self, record: dict[str, Any]) -> list[tuple[tuple[str, int], bool]]:
        """Queue a saved sample; returns the verdicts graded now (a batch is due), else []."""
        if not self.pending:
            self.waiting_since = time.monotonic()
        self.pending.append(record)
        if len(self.pending) >= GRADE_BATCH or time.monotonic() - self.waiting_since >= GRADE_EVERY_S:
            return self.flush()
        return []

    def flush(self) -> list[tuple[tuple[str, int], bool]]:
        return self.grade(self.pending) if self.pending else []

    def grade(self, records: list[dict[str, Any]]) -> list[tuple[tuple[str, int], bool]]:
        from distill.verify.grader import GradeItem, grade_batch

        items = [GradeItem(completion=r["completion"] or "", domain=self.cfg.domain,
                           reference=self.references.get(r["id"]), finish_reason=r["finish_reason"]) for r in records]
        results = grade_batch(items, self.config, pool=self.pool)
        if self._writer is None:
            self._writer = self.store.verdict_writer(self.label, self.run_id)
        out = []
        for record, result in zip(records, results, strict=True):
            verified = is_verified(result)
            self._writer.write({"id": record["id"], "sample_index": int(record["sample_index"]),
                                "verified": verified, "verdict": result.verdict.status})
            out.append(((record["id"], int(record["sample_index"])), verified))
        if records is self.pending:
            self.pending = []
        return out

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def stored_verdicts(job, grader: SampleGrader, ids: set[str]) -> dict[tuple[str, int], bool]:
    """The verdict of every stored sample of ``ids`` (below --max-samples): persisted ones, and the samples
    a killed run saved but did not grade, graded now."""
    found = {key: value for key, value in job.store.verdicts().items() if key[0] in ids}
    ungraded = [r for r in job.store.records() if r["id"] in ids and int(r["sample_index"]) < job.cfg.max_samples
                and (r["id"], int(r["sample_index"])) not in found]
    if ungraded:
        log.say(f"grading {len(ungraded)} stored sample(s) a stopped run left ungraded")
        found.update(grader.grade(ungraded))
    return found


def by_prompt(verdicts: Mapping[tuple[str, int], bool]) -> dict[str, dict[int, bool]]:
    out: dict[str, dict[int, bool]] = {}
    for (key, index), verified in verdicts.items():
        out.setdefault(key, {})[index] = verified
    return out


def plan(rule: StoppingRule, positions: Iterable[int], ids: list[str], verdicts: Mapping[str, Mapping[int, bool]],
         references: Mapping[str, str | None]) -> dict[int, list[int]]:
    """{prompt position: sample indices it needs next} for the prompts not yet closed."""
    from distill.verify.extraction import reference_answer

    out = {}
    for p in positions:
        key = ids[p]
        needed = rule.next_indices(verdicts.get(key, {}), reference_answer(references.get(key)) is not None)
        if needed:
            out[p] = needed
    return out


# ---------------------------------------------------------------------------- the run


def generate(job, shard: int, count: int) -> None:
    """Sample this shard's prompts round after round until each is closed (see the module docstring)."""
    from distill.stages.generate.loop import sampling_run
    from distill.stages.generate.store import new_run_id
    from distill.verify.grader import make_pool

    cfg, store, prompts = job.cfg, job.store, job.prompts
    rule = StoppingRule.of(cfg)
    mine = list(range(shard, len(prompts), count))
    run_id, label = new_run_id(), f"{shard}of{count}"
    with make_pool(GRADE_WORKERS, grade_config(cfg)) as pool:
        grader = SampleGrader(job, pool, label, run_id)
        try:
            verdicts = by_prompt(stored_verdicts(job, grader, {prompts.ids[p] for p in mine}))
            open_prompts = plan(rule, mine, prompts.ids, verdicts, job.references)
            if not open_prompts:
                if not store.exists():  # an empty shard (N > prompts): nothing to write but its done mark
                    store.create({"config_hash": job.config_hash})
                return
            verified = sum(sum(v.values()) for v in verdicts.values())
            with sampling_run(job, shard, count, prompts=len(mine), prompts_done=len(mine) - len(open_prompts),
                              fields={"verified": "{} verified"}, run_id=run_id) as sampler:
                seeds = sampler.stats["step_seeds"] = []
                while open_prompts:
                    seeds.append(step_seed(sampler.seed, len(seeds)))
                    graded = []
                    for record in sampler.sample(open_prompts, seeds[-1]):
                        graded += grader.add(record)
                    graded += grader.flush()
                    for (key, index), ok in graded:
                        verdicts.setdefault(key, {})[index] = ok
                        verified += ok
                    still_open = plan(rule, open_prompts, prompts.ids, verdicts, job.references)
                    sampler.advance(len(open_prompts) - len(still_open), verified=verified)
                    open_prompts = still_open
                sampler.finished = True
        finally:
            grader.close()


def final_verdicts(job) -> dict[tuple[str, int], bool]:
    """Every stored sample's verdict, for the artifact; UserError while some prompt still needs samples."""
    from distill.stages.generate.store import new_run_id
    from distill.verify.grader import make_pool

    prompts = job.prompts
    with make_pool(GRADE_WORKERS, grade_config(job.cfg)) as pool:  # workers start only if something needs grading
        grader = SampleGrader(job, pool, "merge", new_run_id())
        try:
            verdicts = stored_verdicts(job, grader, set(prompts.ids))
        finally:
            grader.close()
    missing = plan(StoppingRule.of(job.cfg), range(len(prompts)), prompts.ids, by_prompt(verdicts), job.references)
    if missing:
        samples = sum(map(len, missing.values()))
        raise UserError(f"{len(missing)} of {len(prompts)} prompts still need samples ({samples} in their next "
                        "rounds): run the unfinished shards (or this command without --merge-shards) to generate them")
    return verdicts


# ---------------------------------------------------------------------------- the manifest


def _histogram(values: Iterable[int]) -> dict[str, int]:
    return {str(k): v for k, v in sorted(Counter(values).items())}


def manifest_record(job, verdicts: Mapping[tuple[str, int], bool], totals: Mapping[str, Any],
                    cost_usd: float | None) -> dict[str, Any]:
    """The manifest's ``adaptive`` key (see the module docstring)."""
    from distill.verify.extraction import reference_answer

    cfg, prompts = job.cfg, job.prompts
    rule = StoppingRule.of(cfg)
    per_prompt = by_prompt(verdicts)
    tried = [len(per_prompt.get(key, {})) for key in prompts.ids]
    verified = [sum(per_prompt.get(key, {}).values()) for key in prompts.ids]
    endings = Counter(rule.outcome(per_prompt.get(key, {}), reference_answer(job.references.get(key)) is not None)
                      for key in prompts.ids)
    rows, samples = sum(verified), sum(tried)
    tokens = totals["prompt_tokens"] + totals["completion_tokens"]
    return {
        "until_verified": rule.until_verified, "max_samples": rule.max_samples, "round_size": rule.round_size,
        "answer_extraction": cfg.answer_extraction, "domain": cfg.domain, "verified_means": VERIFIED_MEANS,
        "prompts": len(prompts), "prompts_reached_k": endings["verified"],
        "prompts_at_max_samples": endings["max_samples"], "prompts_without_reference": endings["no_reference"],
        "prompts_with_verified": sum(v > 0 for v in verified),
        "samples": samples, "verified_rows": rows, "verified_share": round(rows / max(samples, 1), 4),
        "mean_samples_per_prompt": round(samples / max(len(prompts), 1), 3),
        "samples_per_prompt": _histogram(tried), "verified_per_prompt": _histogram(verified),
        "prompts_per_round": [sum(t > rule.round_size * r for t in tried) for r in range(rule.rounds)
                              if any(t > rule.round_size * r for t in tried)],
        "completion_tokens_per_verified_row": round(totals["completion_tokens"] / rows, 1) if rows else None,
        "tokens_per_verified_row": round(tokens / rows, 1) if rows else None,
        "cost_per_verified_row_usd": round(cost_usd / rows, 6) if rows and cost_usd is not None else None,
    }
