"""Reaching the Hugging Face hub: without a network, one line within seconds instead of the
hub clients' half a minute of retries.

Every path to the hub (a dataset, a tokenizer, a featurizer, `download-data`) asks
`require_hub` first: one TCP connect to the endpoint ($HF_ENDPOINT, or the proxy in
$HTTPS_PROXY), bounded in time, DNS included. When the user declared the machine offline
($HF_HUB_OFFLINE), nothing is probed: the clients then read their caches and fail fast
themselves.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
from urllib.parse import urlsplit

from bdh_pl.errors import UserError

DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_SECONDS = 3.0
TRUE = ("1", "true", "yes", "on")


def declared_offline() -> bool:
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(name, "").strip().lower() in TRUE for name in names)


def _address() -> tuple[str, int]:
    """Where a request to the hub goes first: the endpoint, or the HTTPS proxy in front of it."""
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT)
    proxy = next(
        (
            os.environ[k]
            for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
            if os.environ.get(k)
        ),
        None,
    )
    bypass = [
        h.strip().lstrip(".")
        for h in os.environ.get("NO_PROXY", os.environ.get("no_proxy", "")).split(",")
    ]
    host = endpoint.hostname or ""
    if proxy and not any(b and (host == b or host.endswith("." + b)) for b in bypass):
        target = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return target.hostname or "", target.port or 80
    return host, endpoint.port or (443 if endpoint.scheme == "https" else 80)


@functools.cache
def _probe(host: str, port: int) -> str | None:
    """None when a TCP connection to (host, port) opens within PROBE_SECONDS, else why not.
    In a thread, so a slow DNS cannot stretch it either."""
    result: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
            result.append(None)
        except OSError as err:
            result.append(err.strerror or type(err).__name__)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(PROBE_SECONDS)
    return result[0] if result else f"no answer within {PROBE_SECONDS:.0f} s"


def hub_unreachable() -> str | None:
    """Why the hub cannot be reached, or None (reachable, or offline declared: caches only)."""
    if declared_offline():
        return None
    host, port = _address()
    why = _probe(host, port)
    return None if why is None else f"{host}:{port}: {why}"


def require_hub(what: str, fix: str) -> None:
    """Before asking the hub for `what`: one error line ending with `fix` when it is out of
    reach (and a word on the cache: with HF_HUB_OFFLINE=1 the clients read theirs)."""
    why = hub_unreachable()
    if why is not None:
        raise UserError(
            f"{what} needs the Hugging Face hub, which cannot be reached ({why}): {fix} (files "
            "already in the Hugging Face cache: set HF_HUB_OFFLINE=1)"
        )
