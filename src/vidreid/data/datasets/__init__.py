"""One parser per dataset; each is selected by Hydra ``_target_`` (``conf/dataset/<name>.yaml``)."""
