"""Secret redaction for every text that leaves the program (messages, JSON, logs, reports).

Reports and messages built by zarr-dask-utils never include credentials on purpose, but texts
from other libraries can: botocore quotes the whole bucket part of a URL (Invalid bucket
name "KEY:SECRET@bucket"), a traceback shows arguments, a debug log shows a request.  A
:class:`Redactor` knows the secrets one command was given (URL credentials, the values of
secret ``storage_options`` keys, credential variables of the environment, secret keys of the
Dask config) and replaces each occurrence with ``***``; :class:`RedactingFilter` applies it to
log records.  The command line runs every text it prints through one.
"""

from __future__ import annotations

import logging
import os
import re
import traceback
from collections.abc import Iterable, Mapping
from typing import Any

import dask.config

from zarr_dask_utils._core.storage.locations import redact, url_credentials

__all__ = ["MASK", "RedactingFilter", "Redactor", "is_secret_key"]

MASK = "***"

# Shorter values are not redacted: replacing every "ab" in a text would shred it, and such
# values are not real credentials.
_MIN_SECRET_LENGTH = 4

_SECRET_NAMES = frozenset(
    {
        "key",
        "secret",
        "token",
        "password",
        "passwd",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "session_token",
        "security_token",
        "access_key",
        "secret_key",
        "account_key",
        "sas_token",
        "connection_string",
        "client_secret",
        "credentials",
    }
)
_SECRET_WORDS = re.compile(r"secret|passw|token|credential|private_key|api_key|access_key")

# Credential variables read by botocore/s3fs, adlfs and gcsfs.
_SECRET_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_CLIENT_SECRET",
    "GOOGLE_OAUTH_ACCESS_TOKEN",
)


def is_secret_key(name: str) -> bool:
    """Whether a ``storage_options`` / config key names a secret (``secret``, ``token``, …).

    Examples
    --------
    >>> is_secret_key("secret"), is_secret_key("aws-secret-access-key"), is_secret_key("anon")
    (True, True, False)
    """
    lower = name.lower().replace("-", "_")
    return lower in _SECRET_NAMES or _SECRET_WORDS.search(lower) is not None


class Redactor:
    """Replace known secrets (and ``user:password@`` in URLs) in texts with ``***``.

    Parameters
    ----------
    secrets
        Values to hide wherever they occur.

    Examples
    --------
    >>> r = Redactor()
    >>> r.add_options({"key": "AKIAEXAMPLE", "endpoint_url": "http://127.0.0.1:9000"})
    >>> r("signed with AKIAEXAMPLE at s3://u:p@bucket")
    'signed with *** at s3://***@bucket'
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        for value in secrets:
            self.add(value)

    @classmethod
    def from_environment(cls) -> Redactor:
        """A redactor that knows the credential variables and the secret Dask config values."""
        redactor = cls()
        for name in _SECRET_ENV:
            redactor.add(os.environ.get(name))
        redactor._add_config(dask.config.config)
        return redactor

    def add(self, value: Any) -> None:
        """Hide *value* (strings and numbers; shorter than 4 characters: ignored)."""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            return
        text = str(value)
        if len(text) >= _MIN_SECRET_LENGTH:
            self._secrets.add(text)

    def add_url(self, url: Any) -> None:
        """Hide the ``user:password`` of *url*, and each of its two parts."""
        if not isinstance(url, str):
            return
        info = url_credentials(url)
        if info is None:
            return
        self.add(info)
        for part in info.split(":", 1):
            self.add(part)

    def add_options(self, options: Mapping[str, Any] | None) -> None:
        """Hide the values of secret keys in *options* (nested too) and URL credentials."""
        for name, value in (options or {}).items():
            if isinstance(value, Mapping):
                self.add_options(value)
            elif is_secret_key(str(name)):
                self.add(value)
            else:
                self.add_url(value)

    def _add_config(self, config: Mapping[str, Any]) -> None:
        for name, value in config.items():
            if isinstance(value, Mapping):
                self._add_config(value)
            elif is_secret_key(str(name)):
                self.add(value)

    def __call__(self, text: str) -> str:
        """*text* with every known secret and every URL credential replaced by ``***``."""
        text = redact(text)
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text

    def data(self, value: Any) -> Any:
        """Redact every string inside a JSON-like structure (dicts, lists, strings)."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, Mapping):
            return {self.data(k): self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the message (arguments merged) and the traceback text.

    Parameters
    ----------
    redactor
        The redactor to apply; replace :attr:`redactor` when a new command starts.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or Redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite *record* in place (it is shared by every handler); always keep it."""
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: show its raw parts, still redacted
            message = f"{record.msg} {record.args}"
        record.msg, record.args = self.redactor(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = self.redactor(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor(record.stack_info)
        return True
