"""W&B logger setup that never hangs, with wandb's own settings: offline by default; an online run gets
``wandb.Settings(init_timeout=...)`` and is started right away, and when it cannot start (no API key: wandb would
prompt or fail; server unreachable: ``wandb.init`` gives up after ``init_timeout`` seconds) the job logs offline
instead, with a warning (``wandb sync`` uploads the run later).
"""

from __future__ import annotations

import logging
import netrc
import os
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

__all__ = ["INIT_TIMEOUT_S", "missing_key", "start_wandb_logger", "wandb_logger_config"]

#: seconds wandb.init waits for the server before giving up (wandb's own ``init_timeout`` setting;
#: environment variable VIDREID_WANDB_INIT_TIMEOUT)
INIT_TIMEOUT_S = float(os.environ.get("VIDREID_WANDB_INIT_TIMEOUT", 30))
_OFFLINE_HINT = "logging to W&B offline instead; upload later with `wandb sync <run dir>/wandb/offline-run-*`"


def missing_key() -> str | None:
    """Why no W&B API key is configured (``WANDB_API_KEY``, an identity token, or the ``.netrc`` entry
    ``wandb login`` writes for ``WANDB_BASE_URL``), or ``None`` when one is."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return None
    base = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").rstrip("/")
    path = os.environ.get("NETRC", os.path.expanduser("~/.netrc"))
    try:
        auth = netrc.netrc(path).authenticators(urlparse(base).hostname or "")
    except (OSError, netrc.NetrcParseError):
        auth = None
    return None if auth and auth[2] else f"no W&B API key for {base} (run `wandb login` or set WANDB_API_KEY)"


def _offline(c: DictConfig) -> DictConfig:
    c = OmegaConf.create(OmegaConf.to_container(c, resolve=True))
    with open_dict(c):
        c.offline = True
        c.pop("settings", None)
    return c


def wandb_logger_config(c: DictConfig, init_timeout: float | None = None) -> DictConfig:
    """The ``WandbLogger`` config to instantiate: unchanged when offline; an online one gets wandb's
    ``settings.init_timeout``; without an API key, an offline copy (a warning gives the reason)."""
    if c.get("offline", False) or os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return c
    problem = missing_key()
    if problem is not None:
        log.warning("%s: %s", problem, _OFFLINE_HINT)
        return _offline(c)
    c = OmegaConf.create(OmegaConf.to_container(c, resolve=True))
    with open_dict(c):
        timeout = init_timeout if init_timeout is not None else os.environ.get("VIDREID_WANDB_INIT_TIMEOUT", INIT_TIMEOUT_S)
        c.settings = {"_target_": "wandb.Settings", "init_timeout": float(timeout)}
    return c


def start_wandb_logger(c: DictConfig, **kwargs):
    """Instantiate the ``WandbLogger`` of ``c`` (from :func:`wandb_logger_config`) and, when online, start its
    run now (global rank 0), so that a server that does not answer within ``init_timeout`` turns the job offline
    here, with a warning, instead of failing it at the first logged value.

    Returns:
        The ``WandbLogger`` (online, or offline after a failed start).
    """
    from hydra.utils import instantiate

    logger = instantiate(c, **kwargs)
    if c.get("offline", False) or int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) != 0:
        return logger
    import wandb

    if wandb.run is None:  # a fresh wandb service that reads the current environment (WANDB_BASE_URL, keys)
        wandb.teardown()
    try:
        _ = logger.experiment  # wandb.init with the configured init_timeout
    except Exception as e:  # noqa: BLE001 - wandb raises CommError/UsageError/TimeoutError variants
        if wandb.run is not None:
            wandb.finish(exit_code=1, quiet=True)
        wandb.teardown()  # the wandb service started with the online settings: a fresh one for the offline run
        log.warning("W&B server did not accept the run (%s: %s): %s", type(e).__name__,
                    str(e).splitlines()[0] if str(e) else "", _OFFLINE_HINT)  # fmt: skip
        logger = instantiate(_offline(c), **kwargs)
    return logger
