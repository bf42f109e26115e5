"""Tokens, retries and plain-words errors for every call mgrs makes to the Hugging Face Hub.

Tokens come from `HF_TOKEN` or the login cache (`hf auth login`), through huggingface_hub's
`get_token`. They are passed to the library and never printed or logged: every message raised from
here has any token text replaced by `***`.
"""

from __future__ import annotations

import logging
import random
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

try:  # typer >= 0.20 vendors click and catches only its own ClickException
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import ClickException

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Attempts of a call that failed for a reason that may pass (rate limit, server error, network).
ATTEMPTS = 4
# Seconds before the first retry; doubled after each one, with jitter, and capped at MAX_WAIT.
FIRST_WAIT = 1.0
MAX_WAIT = 60.0
TOKEN_HELP = (
    "Create a token with write access at https://huggingface.co/settings/tokens, then run `hf auth login` "
    "or set the HF_TOKEN environment variable."
)


class HubError(ClickException):
    """A failure talking to the Hub, in plain words with the fix; the CLI prints it without a traceback."""

    exit_code = 2

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(_redact(message))
        self.retryable = retryable

    def __str__(self) -> str:
        return self.message


def get_token(required: bool = False) -> str | None:
    """Return the token of `HF_TOKEN` or the login cache; with `required`, fail with the fix when there is none."""
    from huggingface_hub import get_token as hf_get_token

    token = hf_get_token()
    if token is None and required:
        raise HubError("No Hugging Face token found, and pushing needs one. " + TOKEN_HELP)
    return token


def _redact(text: str) -> str:
    try:
        from huggingface_hub import get_token as hf_get_token

        token = hf_get_token()
    except Exception:  # noqa: BLE001 - redaction must never fail
        token = None
    if token and len(token) >= 4:
        text = text.replace(token, "***")
    return text


def translate(error: BaseException, repo_id: str | None = None, revision: str | None = None) -> HubError:
    """Return a HubError whose message states in plain words what failed and how to fix it."""
    import httpx2
    from huggingface_hub import errors

    what = f"dataset {repo_id}" if repo_id else "the dataset"
    if isinstance(error, HubError):
        return error
    if isinstance(error, errors.OfflineModeIsEnabled):
        return HubError("HF_HUB_OFFLINE is set, so the Hub cannot be reached. Unset it to publish or stream.")
    if isinstance(error, errors.GatedRepoError):
        return HubError(f"{what} is gated: accept its conditions on the Hub with the account of your token.")
    if isinstance(error, errors.RevisionNotFoundError):
        return HubError(f"Revision {revision or '?'} not found in {what}. Check --revision (a branch, tag, commit or refs/pr/N).")
    if isinstance(error, errors.RemoteEntryNotFoundError):
        return HubError(f"A file was not found in {what} at revision {revision or 'main'}: {_first_line(error)}")
    if isinstance(error, errors.HfHubHTTPError):
        status = error.response.status_code if error.response is not None else None
        server = (error.server_message or "").strip()
        if status == 401 and "Invalid credentials" in server:
            return HubError("The Hub refused your token (invalid, expired or revoked). " + TOKEN_HELP)
        if isinstance(error, errors.RepositoryNotFoundError) or status == 404:
            return HubError(
                f"{what} was not found on the Hub, or it is private and your token cannot see it. Check the "
                "name (OWNER/NAME) and, for a private dataset, log in with `hf auth login` or set HF_TOKEN."
            )
        if status == 401:
            return HubError("The Hub needs a token for this. " + TOKEN_HELP)
        if status == 403:
            return HubError(
                f"Your token has no permission to write to {what}. Use a token with write access to its owner "
                "(a fine-grained token needs write access to that namespace), or ask the owner to add you; "
                "--create-pr opens a pull request instead where the repository accepts them."
            )
        if status == 429:
            return HubError(
                "The Hub is rate-limiting requests and retries did not get through. Wait a few minutes and run the "
                "same command again: it resumes where it stopped.",
                retryable=True,
            )
        if status is not None and status >= 500:
            return HubError(
                f"The Hub had a server error ({status}) and retries did not get through. Try again later; a push "
                "resumes where it stopped.",
                retryable=True,
            )
        return HubError(f"The Hub returned {status}: {server or _first_line(error)}")
    if isinstance(error, (httpx2.TransportError, ConnectionError, TimeoutError)):
        from huggingface_hub import constants

        return HubError(
            f"Could not reach the Hub at {constants.ENDPOINT} (network failure: {_first_line(error)}). Check your "
            "connection, proxy and HF_ENDPOINT, then run the command again (a push resumes where it stopped).",
            retryable=True,
        )
    return HubError(f"Hub request failed: {_first_line(error)}")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _is_retryable(error: BaseException) -> tuple[bool, float | None]:
    import httpx2
    from huggingface_hub import errors

    if isinstance(error, (httpx2.TransportError, ConnectionError, TimeoutError)):
        return True, None
    if isinstance(error, errors.HfHubHTTPError) and error.response is not None:
        status = error.response.status_code
        if status == 429 or status in (500, 502, 503, 504):
            after = error.response.headers.get("Retry-After", "")
            return True, float(after) if after.strip().isdigit() else None
    if isinstance(error, RuntimeError) and error.__cause__ is not None:  # LFS upload wrapper
        return _is_retryable(error.__cause__)
    return False, None


def call(what: str, function: Callable[[], T], repo_id: str | None = None, revision: str | None = None) -> T:
    """Run one Hub call; retry rate limits, server errors and network failures with backoff; translate errors."""
    wait = FIRST_WAIT
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return function()
        except HubError:
            raise
        except Exception as error:  # noqa: BLE001 - every failure is translated below
            retryable, after = _is_retryable(error)
            if not retryable or attempt == ATTEMPTS:
                cause = error.__cause__ if isinstance(error, RuntimeError) and error.__cause__ is not None else error
                raise translate(cause, repo_id, revision) from error
            delay = min(MAX_WAIT, after if after is not None else wait * (1 + random.random() / 4))
            logger.warning("%s failed (%s); retry %d of %d in %.0f s", what, _redact(_first_line(error)), attempt, ATTEMPTS - 1, delay)
            time.sleep(delay)
            wait = min(MAX_WAIT, wait * 2)
    raise AssertionError("unreachable")


@contextmanager
def hub_errors(repo_id: str | None = None, revision: str | None = None) -> Iterator[None]:
    """Translate Hub failures raised inside the block (no retries)."""
    try:
        yield
    except HubError:
        raise
    except Exception as error:  # noqa: BLE001
        import httpx2
        from huggingface_hub import errors

        if isinstance(error, (errors.HfHubHTTPError, errors.OfflineModeIsEnabled, httpx2.TransportError, ConnectionError, TimeoutError)):
            raise translate(error, repo_id, revision) from error
        raise
