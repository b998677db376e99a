"""`python -m finetune_operator …`: the `finetune` command without the console script."""

from finetune_operator.cli import app

app(prog_name="finetune")
