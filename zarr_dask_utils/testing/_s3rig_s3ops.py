"""S3 request routing for :mod:`zarr_dask_utils.testing.s3rig`: pure functions, no I/O.

Several moto processes behind one endpoint must look like ONE bucket namespace.  The rig's proxy
routes each object request to the process that owns its key (a hash of ``bucket/key``),
broadcasts bucket operations (create, delete, configuration) to every process, merges
``ListObjects`` (v1 and v2) pages from all processes in key order with its own continuation
tokens, and splits ``DeleteObjects`` batches by owner (``CopyObject`` across processes is
in the proxy).  Everything here works on bytes and
strings so it can be tested without a server.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, unquote_plus, urlencode, urlsplit

__all__ = [
    "ListEntry",
    "ListPage",
    "S3Target",
    "classify",
    "copy_source",
    "listing_version",
    "merge_delete_results",
    "merge_list_pages",
    "parse_list_page",
    "parse_target",
    "shard_list_target",
    "shard_of",
    "split_delete",
]

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
_XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'

# Sub-resources that make a GET on a bucket something other than a listing.
_BUCKET_SUBRESOURCES = frozenset(
    {
        *("accelerate", "acl", "analytics", "cors", "encryption", "intelligent-tiering"),
        *("inventory", "lifecycle", "location", "logging", "metrics", "notification"),
        *("object-lock", "ownershipControls", "policy", "policyStatus", "publicAccessBlock"),
        *("replication", "requestPayment", "tagging", "uploads", "versioning", "versions"),
        "website",
    }
)


@dataclass(frozen=True)
class S3Target:
    """A path-style S3 request target, split: ``/bucket/key?query``."""

    bucket: str
    key: str
    params: dict[str, str]

    @property
    def is_admin(self) -> bool:
        """True for moto's own API (``/moto-api/...``), which every process must see."""
        return self.bucket == "moto-api"


def parse_target(target: str) -> S3Target:
    """Split a request target (``/bucket/some%20key?x=1``) into bucket, decoded key, params."""
    parts = urlsplit(target)
    bucket, _, key = parts.path.lstrip("/").partition("/")
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    return S3Target(unquote(bucket), unquote(key), params)


def shard_of(bucket: str, key: str, n: int) -> int:
    """The server process (0 .. n-1) that owns ``bucket/key``: stable across processes."""
    if n <= 1:
        return 0
    return zlib.crc32(f"{bucket}/{key}".encode()) % n


def listing_version(method: str, target: S3Target) -> int | None:
    """1 or 2 for a ``ListObjects`` request on a bucket, else None."""
    if method != "GET" or not target.bucket or target.key or target.is_admin:
        return None
    if _BUCKET_SUBRESOURCES.intersection(target.params):
        return None
    return 2 if target.params.get("list-type") == "2" else 1


def classify(method: str, target: S3Target) -> str:
    """The counter a request goes to: GET, HEAD, PUT, LIST, DELETE, POST or OTHER."""
    if method == "HEAD":
        return "HEAD"
    if not target.bucket or listing_version(method, target):
        return "LIST" if method == "GET" else "OTHER"
    if method == "POST" and "delete" in target.params:
        return "DELETE"
    if not target.key:
        return "OTHER"  # bucket operations: create, delete, configuration
    return method if method in ("GET", "PUT", "DELETE", "POST") else "OTHER"


def copy_source(header: str) -> tuple[str, str]:
    """Bucket and key of an ``x-amz-copy-source`` header (``/bucket/key?versionId=..``)."""
    path = unquote(header.partition("?")[0]).lstrip("/")
    bucket, _, key = path.partition("/")
    return bucket, key


# --- listings ----------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class ListEntry:
    """One item of a listing: a key (``<Contents>``) or a common prefix, with its XML."""

    name: str
    is_prefix: bool
    xml: str


@dataclass(frozen=True)
class ListPage:
    """What one server process returned for a listing request."""

    entries: list[ListEntry]
    truncated: bool


def encode_token(after: str) -> str:
    """Our own opaque continuation token: where the next page starts."""
    return base64.urlsafe_b64encode(after.encode()).decode()


def decode_token(token: str) -> str:
    """The key a continuation token of :func:`encode_token` continues after."""
    return base64.urlsafe_b64decode(token.encode()).decode()


def list_start(version: int, params: dict[str, str]) -> str:
    """The name a listing page starts after ("" from the beginning)."""
    if version == 2:
        token = params.get("continuation-token")
        return decode_token(token) if token else params.get("start-after", "")
    return params.get("marker", "")


def max_keys(params: dict[str, str]) -> int:
    """``max-keys`` of a listing request (S3 caps it at 1000)."""
    return max(0, min(int(params.get("max-keys", "1000") or 1000), 1000))


def shard_list_target(
    version: int, bucket: str, params: dict[str, str], start: str, limit: int
) -> str:
    """The ``ListObjectsV2`` target asking one process for its first *limit* items after *start*."""
    query: dict[str, str] = {"list-type": "2", "max-keys": str(max(limit, 1))}
    for name in ("prefix", "delimiter", "encoding-type", "fetch-owner"):
        if name in params:
            query[name] = params[name]
    if version == 1:  # v1 lists carry the owner
        query["fetch-owner"] = "true"
    if start:
        query["start-after"] = start
    return f"/{quote(bucket)}?{urlencode(query)}"


_CONTENTS = re.compile(rb"<Contents>.*?</Contents>", re.S)
_PREFIXES = re.compile(rb"<CommonPrefixes>.*?</CommonPrefixes>", re.S)
_KEY = re.compile(r"<Key>(.*?)</Key>", re.S)
_PREFIX = re.compile(r"<Prefix>(.*?)</Prefix>", re.S)
_TRUNCATED = re.compile(rb"<IsTruncated>\s*true\s*</IsTruncated>")


def _xml_name(text: str, url_encoded: bool) -> str:
    name = html.unescape(text)
    return unquote_plus(name) if url_encoded else name


def parse_list_page(body: bytes, *, url_encoded: bool) -> ListPage:
    """The entries of one process's ``ListObjectsV2`` response, in key order."""
    entries = []
    for raw in _CONTENTS.findall(body):
        xml = raw.decode()
        match = _KEY.search(xml)
        if match:
            entries.append(ListEntry(_xml_name(match.group(1), url_encoded), False, xml))
    for raw in _PREFIXES.findall(body):
        xml = raw.decode()
        match = _PREFIX.search(xml)
        if match:
            entries.append(ListEntry(_xml_name(match.group(1), url_encoded), True, xml))
    entries.sort()
    return ListPage(entries, bool(_TRUNCATED.search(body)))


def _tag(name: str, value: str | int) -> str:
    return f"<{name}>{html.escape(str(value), quote=False)}</{name}>"


def merge_list_pages(
    version: int, bucket: str, params: dict[str, str], pages: Sequence[ListPage]
) -> bytes:
    """One S3 listing response (v1 or v2) from the pages of every process.

    Each page holds its process's first ``max-keys`` items after the start, so the first
    ``max-keys`` of the merged, sorted items are the right page; the listing is truncated if
    any item is left over or any process had more.
    """
    limit = max_keys(params)
    merged = sorted(e for page in pages for e in page.entries)
    truncated = len(merged) > limit or any(page.truncated for page in pages)
    shown = merged[:limit]
    url = params.get("encoding-type") == "url"
    prefix = params.get("prefix", "")
    head = [_tag("Name", bucket), _tag("Prefix", quote(prefix) if url else prefix)]
    if version == 2:
        head += [_tag("MaxKeys", limit), _tag("KeyCount", len(shown))]
        if params.get("continuation-token"):
            head.append(_tag("ContinuationToken", params["continuation-token"]))
        if params.get("start-after") and not params.get("continuation-token"):
            head.append(_tag("StartAfter", params["start-after"]))
    else:
        head += [_tag("Marker", params.get("marker", "")), _tag("MaxKeys", limit)]
    if "delimiter" in params:
        head.append(_tag("Delimiter", params["delimiter"]))
    if url:
        head.append(_tag("EncodingType", "url"))
    head.append(_tag("IsTruncated", "true" if truncated else "false"))
    if truncated and shown:
        last = shown[-1].name
        if version == 2:
            head.append(_tag("NextContinuationToken", encode_token(last)))
        else:
            head.append(_tag("NextMarker", quote(last) if url else last))
    body = [e.xml for e in shown if not e.is_prefix] + [e.xml for e in shown if e.is_prefix]
    return (
        f'{_XML_HEAD}<ListBucketResult xmlns="{S3_NS}">'
        + "".join(head)
        + "".join(body)
        + "</ListBucketResult>"
    ).encode()


# --- DeleteObjects -----------------------------------------------------------------------------

_OBJECT = re.compile(rb"<Object>.*?</Object>", re.S)
_QUIET = re.compile(rb"<Quiet>.*?</Quiet>", re.S)
_RESULT_ITEMS = re.compile(rb"<Deleted>.*?</Deleted>|<Error>.*?</Error>", re.S)


def split_delete(body: bytes, bucket: str, n: int) -> dict[int, bytes]:
    """A ``DeleteObjects`` request body split into one body per owning process."""
    quiet = _QUIET.search(body)
    groups: dict[int, list[bytes]] = {}
    for obj in _OBJECT.findall(body):
        match = _KEY.search(obj.decode())
        key = html.unescape(match.group(1)) if match else ""
        groups.setdefault(shard_of(bucket, key, n), []).append(obj)
    return {
        shard: (
            f'{_XML_HEAD}<Delete xmlns="{S3_NS}">'.encode()
            + b"".join(objs)
            + (quiet.group(0) if quiet else b"")
            + b"</Delete>"
        )
        for shard, objs in groups.items()
    }


def content_md5(body: bytes) -> str:
    """The ``Content-MD5`` header value of a body."""
    return base64.b64encode(hashlib.md5(body).digest()).decode()  # S3's own checksum


def merge_delete_results(bodies: Sequence[bytes]) -> bytes:
    """One ``DeleteResult`` document from the results of every process."""
    items = b"".join(item for body in bodies for item in _RESULT_ITEMS.findall(body))
    return f'{_XML_HEAD}<DeleteResult xmlns="{S3_NS}">'.encode() + items + b"</DeleteResult>"


def error_xml(code: str, message: str) -> bytes:
    """An S3 error document."""
    return f"{_XML_HEAD}<Error>{_tag('Code', code)}{_tag('Message', message)}</Error>".encode()
