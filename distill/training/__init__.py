"""The pieces of `distill train` (the stage itself is `distill/train.py`).

    config.py     TrainConfig: every option of `distill train`, with help text
    recipes.py    recipes/*.yaml: a base plus small overrides; `list_recipes()`, `load_recipe()`
    templates.py  chat templates for training: `{% generation %}` masks, end-of-turn / pad tokens
    data.py       rows -> conversations -> token ids + labels; mixtures, validation split, length filter
    model.py      load the student (full / LoRA / 4-bit), save it with its tokenizer and generation config
    callbacks.py  save on SIGTERM (preemption), loss-curve PNG, resolved config to the tracker
    launch.py     `--num-gpus N`: relaunch under `accelerate launch` with a shipped config
    card.py       the model card (README.md) of a checkpoint
    layout.py     where a checkpoint's weights are: full model, adapter, merged model
"""
