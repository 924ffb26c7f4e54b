"""``python -m voce.training.finetune``: the same command as ``voce finetune``."""
from voce.training.finetune.cli import main

main()
