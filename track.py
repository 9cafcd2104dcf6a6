"""Video -> identities: `python track.py checkpoint=CKPT [videos=...] [key=value ...]` (conf/track.yaml, docs/video.md)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="track")
def main(cfg: DictConfig) -> None:
    from vidreid.runs.track import run_track

    run_track(cfg)


if __name__ == "__main__":
    main()
