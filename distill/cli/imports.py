"""`distill import`: the command over `distill.stages.imports` (see its docstring)."""

from distill.cli.options import make_command
from distill.stages import imports

command = make_command(
    imports.ImportConfig, imports.run, positional=("source",), yaml_flag="config-file",
    doc="Import a published trace dataset (OpenThoughts-114k, R1-Distill-SFT, OpenR1-Math-220k, Mixture-of-Thoughts) "
        "as a versioned `imported` artifact in the schema filter/train read.")
