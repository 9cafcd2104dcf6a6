"""Run logic behind the entry points: ``train.py`` (:mod:`.train`), ``evaluate.py`` (:mod:`.evaluate`), ``track.py``
(:mod:`.track`), their shared set-up (:mod:`.common`), loggers incl. all W&B code (:mod:`.loggers`) and the DDP /
multirun launch rules (:mod:`.launch`)."""
