"""Row checks of `distill filter`: pure functions, one module per check, testable one by one.

- ``format``: one ``<think>…</think>`` block at the start, a non-empty answer (other markers normalized).
- ``language``: the reasoning stays in the prompt's script (Unicode-script word counts).
- ``length``: completion tokens within bounds (reported count, tokenizer, or chars/4).
- ``dedup``: identical / near-identical completions of one prompt collapse; at most K per prompt.
- ``decontamination``: word n-gram (and optional fuzzy) overlap with benchmark problems.

Correctness lives in ``distill.grading`` (shared with ``distill eval``) and ``distill.verifiers``.
"""
