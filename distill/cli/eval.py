"""`distill eval`: the command over `distill.stages.eval` (see its docstring)."""

from distill.cli.options import click_help, make_command
from distill.stages import eval as eval_stage

command = make_command(eval_stage.EvalConfig, eval_stage.run, doc=click_help(eval_stage.__doc__),
                       positional=("evals",))
