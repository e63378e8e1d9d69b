"""Trainer callbacks: save on SIGTERM (preemption), an exact step budget on resume, the resolved config to the
tracker; the loss curve.

On SIGTERM (SLURM preemption or time limit with `--signal=TERM@...`, Kubernetes eviction, `kill`) the
current optimizer step finishes, a resumable checkpoint is saved in the run directory and the process
exits with 143 without creating an artifact version; the same command resumes from there. All ranks
agree on stopping (a flag reduced across processes), so a signal that reaches one rank cannot hang
the others. transformers' own `enable_jit_checkpoint` saves mid-step and then reports success, which
would commit a half-trained model; this one does not.
"""

from __future__ import annotations

import json
import os
import signal

from transformers import TrainerCallback

# Send ourselves SIGTERM after this optimizer step: a real preemption, on cue (tests and drills).
SIGTERM_AT_STEP_ENV = "DISTILL_SIGTERM_AT_STEP"


class PreemptionCallback(TrainerCallback):
    def __init__(self) -> None:
        self.requested = False
        self.preempted = False
        self._previous = None

    def install(self) -> None:
        try:
            self._previous = signal.signal(signal.SIGTERM, self._on_signal)
        except ValueError:  # not the main thread (e.g. inside a notebook worker): no handler
            self._previous = None

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _on_signal(self, signum, frame) -> None:
        if self.requested:  # a second SIGTERM: stop now
            raise SystemExit(143)
        self.requested = True

    def _agreed(self) -> bool:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self.requested
        import torch

        device = "cuda" if torch.cuda.is_available() and dist.get_backend() == "nccl" else "cpu"
        flag = torch.tensor([1.0 if self.requested else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def on_step_end(self, args, state, control, **kwargs):
        at = os.environ.get(SIGTERM_AT_STEP_ENV)
        if at and state.global_step == int(at) and state.is_world_process_zero:
            os.kill(os.getpid(), signal.SIGTERM)
        if self._agreed():
            self.requested = self.preempted = True
            control.should_save = True
            control.should_training_stop = True
        return control


class WallTimeSaveCallback(TrainerCallback):
    """Also save a resumable checkpoint every `minutes` of training (not only every save_steps), so a short run
    killed mid-way (kill -9, OOM, a lost node: no SIGTERM to catch) loses at most that much work."""

    def __init__(self, minutes: float, clock=None) -> None:
        import time

        self.seconds = minutes * 60
        self.clock = clock or time.monotonic
        self.last = self.clock()

    def on_step_end(self, args, state, control, **kwargs):
        if self.seconds > 0 and self.clock() - self.last >= self.seconds:
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        self.last = self.clock()
        return control


class StepBudgetReached(Exception):
    """The run resumed from a checkpoint that already holds every step of its budget."""


class StepBudgetCallback(TrainerCallback):
    """Honour the step budget exactly on resume. transformers checks the budget only after a step, so a run
    resumed from a checkpoint taken at its last step (a kill during the final validation or the commit)
    trained one step more than an uninterrupted run. Here the step that would exceed it is never begun:
    the weights are then exactly the checkpoint's."""

    def on_step_begin(self, args, state, control, **kwargs):
        if state.max_steps > 0 and state.global_step >= state.max_steps:
            raise StepBudgetReached(state.global_step)
        return control


def train_metrics_from_log(log_history: list[dict]) -> dict:
    """The train metrics of a run finished before this process (its checkpoint's log): the mean logged
    loss stands in for transformers' train_loss (equal to it with logging_steps=1)."""
    losses = [entry["loss"] for entry in log_history if "loss" in entry]
    return {"train_loss": sum(losses) / len(losses)} if losses else {}


class TrackerConfigCallback(TrainerCallback):
    """Log distill's resolved config (not only TrainingArguments) to the trackers in use."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.handler = None  # the trainer's callback_handler, set once the trainer exists

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        text = json.dumps(self.config, indent=2, default=str)
        for callback in getattr(self.handler, "callbacks", []):
            writer = getattr(callback, "tb_writer", None)
            if writer is not None:
                writer.add_text("distill_config", f"```json\n{text}\n```")
        reports = args.report_to or []
        if "wandb" in reports:
            try:
                import wandb

                if wandb.run is not None:
                    wandb.config.update({"distill": self.config}, allow_val_change=True)
            except ImportError:
                pass
        if "mlflow" in reports:
            try:
                import mlflow

                if mlflow.active_run() is not None:
                    mlflow.log_dict(self.config, "distill_config.json")
            except ImportError:
                pass


def plot_loss_curve(log_history: list[dict], path, title: str = "") -> bool:
    """Train (and eval) loss against the optimizer step, as a PNG; False when nothing was logged."""
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    evals = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e and "step" in e]
    if not train and not evals:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        ax.plot(*zip(*train, strict=False), label="train loss", color="#1f77b4")
    if evals:
        ax.plot(*zip(*evals, strict=False), "o-", label="eval loss", color="#d62728")
    return _save_curve(fig, ax, "loss (trained tokens)", title, path)


def plot_reward_curve(log_history: list[dict], path, title: str = "") -> bool:
    """GRPO: the total reward and each named reward (TRL logs `rewards/NAME/mean`) against the step."""
    series: dict[str, list] = {}
    for entry in log_history:
        if "step" not in entry:
            continue
        for key, value in entry.items():
            if isinstance(value, (int, float)) and (key == "reward" or (key.startswith("rewards/")
                                                                        and key.endswith("/mean"))):
                series.setdefault(key.removeprefix("rewards/").removesuffix("/mean"), []).append(
                    (entry["step"], value))
    if not series:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for label, points in sorted(series.items()):
        ax.plot(*zip(*points, strict=False), label=label, linewidth=2.2 if label == "reward" else 1.2)
    return _save_curve(fig, ax, "mean reward", title, path)


def _save_curve(fig, ax, ylabel: str, title: str, path) -> bool:
    import matplotlib.pyplot as plt

    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
