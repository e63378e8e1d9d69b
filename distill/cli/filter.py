"""`distill filter`: the command over `distill.stages.filter` (see its docstring)."""

from distill.cli.options import click_help, make_command
from distill.stages import filter as filter_stage

command = make_command(filter_stage.FilterConfig, filter_stage.run, yaml_flag="config-file",
                       yaml_help="YAML file of defaults for these options (flags override it).",
                       doc=click_help(filter_stage.__doc__))
