"""Process-level concerns below every other layer: thread policy (:mod:`.threads`), precision checks
(:mod:`.precision`) and checkpoint IO (:mod:`.checkpoint_io`)."""
