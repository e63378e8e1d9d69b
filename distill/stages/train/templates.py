"""Chat templates for training: which template, which tokens reach the loss, which token ends a turn.

The student is trained on exactly the text its chat template renders, with labels on the assistant
turns only -- their full `<think>` block, the answer and the end-of-turn token (a student that never
sees that token in the loss never learns to stop). Masks come from `{% generation %}` markers
(`return_assistant_tokens_mask`, as TRL's `assistant_only_loss`). A template without markers is swapped
for its training variant, which renders the same text with markers: ours in `distill/templates/`
(SmolLM2, plain ChatML, Llama 3.1) or TRL's (Qwen2.5, Llama 3, DeepSeek-R1-Distill, Qwen3, ...). A
template we do not know gets its masks from rendering (the text a turn adds after the generation
prompt). Every plan is checked on a probe conversation before training: a template that drops the
reasoning from assistant turns -- DeepSeek-R1-Distill's keeps only what follows `</think>` -- would
teach answers without reasoning and is refused (its TRL training variant keeps the reasoning).
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

from distill.errors import UserError
from distill.think import split_think

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
# Inference template -> training variant shipped by distill (files in distill/templates/).
OURS = {"smollm2.jinja": "smollm2_training.jinja", "chatml.jinja": "chatml_training.jinja",
        "trl:llama3_1.jinja": "llama3_1_training.jinja"}
# --chat-template NAME -> template file ("trl:" = shipped by TRL, identical to the model repos' templates).
BUILTINS = {"chatml": "chatml.jinja", "smollm2": "smollm2.jinja", "qwen2.5": "trl:qwen2_5.jinja",
            "llama3.1": "trl:llama3_1.jinja", "llama3": "trl:llama3.jinja",
            "r1-distill": "trl:deepseek_r1_distill.jinja", "qwen3": "trl:qwen3.jinja"}
_MARKERS = re.compile(r"\{%-?\s*generation\s*-?%\}")
_SPECIAL = re.compile(r"<[|｜][^<>\s'\"]{1,48}?[|｜]>")
PAD_CANDIDATES = ("<|finetune_right_pad_id|>", "<|pad|>", "<｜▁pad▁｜>", "<pad>", "<|endoftext|>", "<unk>")
DROPS_REASONING = ("{what} drops the reasoning from assistant turns (like DeepSeek-R1-Distill's, which keeps only "
                   "what follows </think>): the student would learn answers without reasoning; pass --chat-template "
                   "chatml or a template that keeps the <think> block")
_PROBE_Q, _PROBE_R, _PROBE_A = "PROBEQUESTION 7+5", "PROBEREASONING adding", "PROBEANSWER 12"


@dataclass
class TemplatePlan:
    """How one run renders and masks conversations."""

    inference: str                  # saved with the checkpoint: what the student is prompted with
    training: str | None            # same text with {% generation %} markers; None: masks by rendering
    source: str                     # traces | student | builtin:NAME | file:PATH
    family: str | None = None       # recognised template file, e.g. "trl:qwen2_5.jinja"
    end_of_turn: str | None = None  # the token that closes an assistant turn (trained, and a stop token)
    notes: list[str] = field(default_factory=list)

    @property
    def method(self) -> str:
        return "generation-markers" if self.training else "render-diff"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.inference.encode()).hexdigest()


# ---------------------------------------------------------------------------- template files


def _trl_dir() -> Path | None:
    spec = importlib.util.find_spec("trl")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "chat_templates"


def read_template(ref: str) -> str:
    """Text of `name.jinja` (ours) or `trl:name.jinja` (TRL's copy of a model's template)."""
    if ref.startswith("trl:"):
        folder = _trl_dir()
        path = folder / ref[4:] if folder else None
    else:
        path = TEMPLATES_DIR / ref
    if path is None or not path.is_file():
        raise UserError(f"chat template {ref} is not installed (is trl installed?)")
    return path.read_text(encoding="utf-8")


def _norm(text: str) -> str:
    return text.strip()


def identify(template: str) -> str | None:
    """The known template file whose text equals `template` (ours first, then TRL's), if any."""
    wanted = _norm(template)
    for ref in list(OURS) + [v for v in BUILTINS.values() if v not in OURS]:
        try:
            if _norm(read_template(ref)) == wanted:
                return ref
        except UserError:
            continue
    folder = _trl_dir()
    if folder is not None:
        for path in sorted(folder.glob("*.jinja")):
            if not path.stem.endswith("_training") and _norm(path.read_text(encoding="utf-8")) == wanted:
                return f"trl:{path.name}"
    return None


def training_variant(template: str) -> tuple[str | None, str | None]:
    """(template with generation markers or None, recognised family)."""
    if _MARKERS.search(template):
        return template, identify(template)
    family = identify(template)
    if family in OURS:
        return read_template(OURS[family]), family
    if family and family.startswith("trl:"):
        training = _trl_dir() / family[4:].replace(".jinja", "_training.jinja")
        if training.is_file():
            return training.read_text(encoding="utf-8"), family
    return None, family


def load_named(value: str) -> tuple[str, str]:
    """--chat-template NAME or FILE -> (template text, source label)."""
    if value in BUILTINS:
        return read_template(BUILTINS[value]), f"builtin:{value}"
    path = Path(value).expanduser()
    if path.is_file():
        return path.read_text(encoding="utf-8"), f"file:{path.absolute()}"
    raise UserError(f"unknown --chat-template {value!r}: use auto, traces, student, {', '.join(BUILTINS)} "
                    "or a .jinja file")


def student_template(tokenizer) -> str | None:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default")
    return template or None


def missing_tokens(tokenizer, template: str) -> list[str]:
    """Special markers the template writes for a plain conversation that are not tokens of this tokenizer."""
    try:
        text = tokenizer.apply_chat_template(probe_messages(), chat_template=template, tokenize=False,
                                             add_generation_prompt=True)
    except Exception:  # noqa: BLE001 - jinja errors vary; check_plan reports them
        text = template
    vocab = tokenizer.get_vocab()
    return sorted({tok for tok in _SPECIAL.findall(text) if tok not in vocab})


# ---------------------------------------------------------------------------- choosing a plan


def choose_plan(choice: str, tokenizer, traces_template: str | None) -> TemplatePlan:
    """The template to train with. `auto` tries the traces' template, then the student's, then ChatML."""
    if choice == "auto":
        candidates = []
        if traces_template:
            candidates.append((traces_template, "traces"))
        if student_template(tokenizer):
            candidates.append((student_template(tokenizer), "student"))
        candidates.append((read_template("chatml.jinja"), "builtin:chatml"))
        notes, last_error = [], None
        for template, source in candidates:
            missing = missing_tokens(tokenizer, template)
            if missing:
                notes.append(f"skipped the {source} chat template: the student's vocabulary lacks "
                             f"{', '.join(missing[:4])}")
                continue
            try:
                plan = build_plan(tokenizer, template, source)
            except UserError as exc:
                notes.append(f"skipped the {source} chat template: {exc}")
                last_error = exc
                continue
            plan.notes = notes + plan.notes
            return plan
        raise UserError(f"no usable chat template for this student ({'; '.join(notes)})") from last_error
    if choice == "traces":
        if not traces_template:
            raise UserError("--chat-template traces: the input's manifests record no chat template "
                            "(use auto, student or a template name)")
        template, source = traces_template, "traces"
    elif choice == "student":
        template, source = student_template(tokenizer), "student"
        if not template:
            raise UserError("the student's tokenizer has no chat template: pass --chat-template chatml (or a file)")
    else:
        template, source = load_named(choice)
    missing = missing_tokens(tokenizer, template)
    if missing:
        raise UserError(f"the {source} chat template writes {', '.join(missing[:4])}, which the student's "
                        "tokenizer does not have as tokens: use --chat-template student or chatml")
    return build_plan(tokenizer, template, source)


def build_plan(tokenizer, template: str, source: str) -> TemplatePlan:
    training, family = training_variant(template)
    plan = TemplatePlan(inference=template, training=training, source=source, family=family)
    if training is None:
        plan.notes.append(f"the {source} chat template has no {{% generation %}} markers and no known training "
                          "variant: assistant masks come from rendering each turn")
    plan.end_of_turn = check_plan(tokenizer, plan)
    return plan


def probe_messages(system: bool = True) -> list[dict]:
    messages = [{"role": "user", "content": _PROBE_Q},
                {"role": "assistant", "content": f"<think>\n{_PROBE_R}\n</think>\n\n{_PROBE_A}"}]
    return ([{"role": "system", "content": "PROBESYSTEM"}] if system else []) + messages


def check_plan(tokenizer, plan: TemplatePlan) -> str:
    """Tokenize a probe conversation; the reasoning, answer and end-of-turn token must be trained and the
    question not. Returns the end-of-turn token."""
    what = f"the {plan.source} chat template" + (f" ({plan.family})" if plan.family else "")
    try:
        ids, labels = tokenize_messages(tokenizer, probe_messages(), plan)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - jinja errors vary
        raise UserError(f"{what} cannot render a system/user/assistant conversation "
                        f"({type(exc).__name__}: {str(exc)[:120]})") from None
    trained = [t for t, lab in zip(ids, labels, strict=True) if lab != -100]
    trained_text = tokenizer.decode(trained)
    prompt_text = tokenizer.decode([t for t, lab in zip(ids, labels, strict=True) if lab == -100])
    if _PROBE_R not in trained_text or "</think>" not in trained_text:
        raise UserError(DROPS_REASONING.format(what=what))
    if _PROBE_A not in trained_text or _PROBE_Q in trained_text or _PROBE_Q not in prompt_text:
        raise UserError(f"{what} gives wrong assistant masks (the answer must be trained, the question not): "
                        "pass --chat-template chatml or a template with {% generation %} markers")
    added = set(tokenizer.get_added_vocab().values()) | set(tokenizer.all_special_ids)
    for token_id in reversed(trained):
        if tokenizer.decode([token_id]).strip() == "":
            continue
        if token_id not in added:
            raise UserError(f"{what} leaves the end-of-turn token out of the assistant turn: the student would "
                            "never learn to stop; pass --chat-template chatml or fix the template")
        end = tokenizer.convert_ids_to_tokens(token_id)
        break
    # The training text must start with what the student is prompted with at inference.
    prompt = tokenizer.apply_chat_template(probe_messages()[:-1], chat_template=plan.inference, tokenize=False,
                                           add_generation_prompt=True)
    full = tokenizer.apply_chat_template(probe_messages(), chat_template=plan.training or plan.inference,
                                         tokenize=False)
    if not full.startswith(prompt):
        plan.notes.append(f"{what}: the inference prompt is not a prefix of the training text")
    return end


# ---------------------------------------------------------------------------- tokenizing


def tokenize_messages(tokenizer, messages: list[dict], plan: TemplatePlan,
                      assistant_only: bool = True) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 outside the assistant turns) of one conversation."""
    if plan.training is not None:
        out = tokenizer.apply_chat_template(messages, chat_template=plan.training, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        ids = list(out["input_ids"])
        mask = list(out["assistant_masks"])
    else:
        ids, mask = _render_diff_masks(tokenizer, messages, plan.inference)
    labels = [t if (m or not assistant_only) else -100 for t, m in zip(ids, mask, strict=True)]
    return ids, labels


def _render_diff_masks(tokenizer, messages: list[dict], template: str) -> tuple[list[int], list[int]]:
    """Assistant masks without markers: turn i is the text render(messages[:i+1]) adds after
    render(messages[:i], add_generation_prompt=True); tokens are assigned by character offsets."""
    def render(msgs, gen=False):
        return tokenizer.apply_chat_template(msgs, chat_template=template, tokenize=False, add_generation_prompt=gen)

    full = render(messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before, upto = render(messages[:i], gen=True), render(messages[: i + 1])
        reasoning, _, closed = split_think(message["content"])
        tail = upto[len(before):] if upto.startswith(before) else upto
        if closed and reasoning and reasoning not in tail:
            raise UserError(DROPS_REASONING.format(what="the chat template"))
        if not (upto.startswith(before) and full.startswith(upto)):
            raise UserError("the chat template renders earlier turns differently when later ones follow; "
                            "pass --chat-template chatml or a template with {% generation %} markers")
        spans.append((len(before), len(upto)))
    encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    # A token that straddles a boundary (e.g. " <" of ": <think>") belongs to the turn, as with the markers.
    mask = [int(any(start < b and end > a for a, b in spans)) for start, end in encoded["offset_mapping"]]
    return list(encoded["input_ids"]), mask


# ---------------------------------------------------------------------------- special tokens


def set_stop_and_pad(tokenizer, end_of_turn: str) -> dict:
    """Make the end-of-turn token the tokenizer's eos and pick a pad token distinct from it.

    Returns what changed: {eos_changed, pad_token, pad_added}. A pad equal to the end token is the
    classic way to mask the end token out of the loss; an existing unused special token is preferred to
    adding one (which would resize the embeddings).
    """
    changes = {"eos_changed": False, "pad_added": False}
    if tokenizer.eos_token != end_of_turn:
        tokenizer.eos_token = end_of_turn
        changes["eos_changed"] = True
    end_id = tokenizer.convert_tokens_to_ids(end_of_turn)
    if tokenizer.pad_token is None or tokenizer.pad_token_id == end_id:
        vocab = tokenizer.get_vocab()
        for candidate in PAD_CANDIDATES + ((tokenizer.unk_token,) if tokenizer.unk_token else ()):
            if candidate in vocab and vocab[candidate] != end_id:
                tokenizer.pad_token = candidate
                break
        else:
            tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
            changes["pad_added"] = True
    changes["pad_token"] = tokenizer.pad_token
    return changes
