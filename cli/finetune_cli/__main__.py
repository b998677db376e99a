"""`python -m finetune_cli …`: the `finetune` command without the console script."""

from finetune_cli.main import app

app(prog_name="finetune")
