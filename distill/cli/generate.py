"""`distill generate`: the command over `distill.stages.generate` (see its docstring)."""

from distill.cli.options import make_command
from distill.stages import generate

command = make_command(generate.GenerateConfig, generate.run, yaml_flag="config-file",
                       yaml_help="YAML file of defaults for these options (flags override it).", doc=generate.HELP)
