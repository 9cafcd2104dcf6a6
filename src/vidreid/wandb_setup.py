"""W&B logger setup that never hangs: offline by default; an online run is only attempted when an API key
is configured and the server answers within a few seconds, otherwise the run falls back to offline with a
warning (and ``wandb sync`` uploads it later).

Why: ``wandb.init`` in online mode without network or with no key waits for its init timeout (about 90 s)
or prompts for a key (DESIGN.md §5); a training job should neither stall nor lose its logs for that.
"""

from __future__ import annotations

import logging
import netrc
import os
import urllib.error
import urllib.request
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

__all__ = ["online_problem", "wandb_logger_config"]

DEFAULT_BASE_URL = "https://api.wandb.ai"


def _base_url() -> str:
    return os.environ.get("WANDB_BASE_URL", DEFAULT_BASE_URL).rstrip("/")


def _has_key(base_url: str) -> bool:
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(base_url).hostname or ""
    path = os.environ.get("NETRC", os.path.expanduser("~/.netrc"))
    try:
        auth = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(auth and auth[2])


def online_problem(timeout_s: float = 5.0) -> str | None:
    """Why an online W&B run cannot start now (no API key, server unreachable), or ``None`` if it can.

    The server check is one HTTP request to ``WANDB_BASE_URL`` (default ``https://api.wandb.ai``) with a
    ``timeout_s`` limit; any HTTP answer, even an error status, counts as reachable.
    """
    base = _base_url()
    if not _has_key(base):
        return f"no W&B API key for {base} (run `wandb login` or set WANDB_API_KEY)"
    try:
        urllib.request.urlopen(urllib.request.Request(base, method="GET"), timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return None  # the server answered
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        reason = getattr(e, "reason", e)
        return f"W&B server {base} not reachable within {timeout_s:g} s ({reason})"
    return None


def wandb_logger_config(c: DictConfig, timeout_s: float = 5.0) -> DictConfig:
    """The ``WandbLogger`` config to instantiate: unchanged when offline, or online and possible; otherwise a
    copy with ``offline: true`` (a warning gives the reason and the ``wandb sync`` route)."""
    if c.get("offline", False) or os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return c
    problem = online_problem(timeout_s)
    if problem is None:
        return c
    log.warning("%s: logging to W&B offline instead; upload later with `wandb sync <run dir>/wandb/offline-run-*`",
                problem)
    c = OmegaConf.create(OmegaConf.to_container(c, resolve=True))
    with open_dict(c):
        c.offline = True
    return c
