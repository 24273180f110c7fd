"""The table behind :func:`~zarr_dask_utils.explain_zarr_error`: known errors, causes, fixes.

One row per situation users meet with zarr-python 3, numcodecs, fsspec/s3fs, xarray and dask.
A row matches an exception when one of its ``types`` names a class in the exception's MRO
(``"module.Class"`` or a bare ``"Class"``) and its ``pattern`` (a regular expression, searched
case-insensitively) occurs in the message.  Rows are tried in order, so specific rows come
before general ones.  Every row is covered by a test that provokes the real exception through
the real library (``tests/test_debug_explain.py``); ``kind`` codes are stable and append-only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["RULES", "ErrorRule"]


@dataclass(frozen=True, slots=True)
class ErrorRule:
    """One known error: how to recognise it, and what to tell the user.

    Parameters
    ----------
    kind
        Stable code, e.g. ``"group-not-found"``.
    types
        Exception class names (``"zarr.errors.GroupNotFoundError"`` or ``"KeyError"``).
    pattern
        Regular expression searched in ``str(exc)`` (case-insensitive); ``""`` matches all.
    what
        What happened, in one sentence.
    cause
        The likely cause(s).
    fix
        The concrete next step.

    ``what`` may say ``{path}``: it is replaced by the path or URL the exception names (its
    ``filename``, else the first quoted path in its message), or by "the path".
    """

    kind: str
    types: tuple[str, ...]
    pattern: str
    what: str
    cause: str
    fix: str

    def matches(self, exc: BaseException) -> bool:
        """Whether *exc* (itself, not its chain) is an instance of this row."""
        names = set()
        for klass in type(exc).__mro__:
            names.add(klass.__name__)
            names.add(f"{klass.__module__}.{klass.__qualname__}")
        if not names.intersection(self.types):
            return False
        return re.search(self.pattern, str(exc), re.IGNORECASE | re.DOTALL) is not None


_OPEN_FIX = (
    "Check the path or URL (and for S3 the bucket, prefix and endpoint_url). Run "
    "`zdu info PATH` on the parent to see which groups and arrays exist there."
)

RULES: tuple[ErrorRule, ...] = (
    # --- credentials, endpoints, buckets (fsspec / s3fs / botocore / aiohttp) ------------------
    ErrorRule(
        "s3-no-credentials",
        ("botocore.exceptions.NoCredentialsError", "NoCredentialsError"),
        "",
        "The S3 client found no credentials.",
        "No key/secret in storage_options, no AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the "
        "environment, no profile or instance role.",
        "Pass storage_options={'key': ..., 'secret': ...} (zdu: -o key=... -o secret=...), set "
        "the AWS_* variables or a profile, or use anon=True for public buckets.",
    ),
    # before the S3 row: an operating-system error ([Errno 13] + file name) is about a local
    # file's permissions, never about AWS credentials
    ErrorRule(
        "local-permission-denied",
        ("PermissionError",),
        r"\[Errno (1|13)\]",
        "The operating system refused access to a local file or folder (permission denied).",
        "The file or folder (or a folder above it) is not readable, or not writable for an "
        "operation that writes, by the user running this process or a Dask worker.",
        "Check the owner and permissions of the path named in the error (ls -l, chmod, chown), "
        "or run as a user who may read (and write) it; every Dask worker needs the same access.",
    ),
    ErrorRule(
        "s3-access-denied",
        ("PermissionError", "botocore.exceptions.ClientError"),
        r"InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|Forbidden|\b403\b",
        "The storage service refused the request (access denied).",
        "Wrong or expired key/secret/token, a key for another endpoint or account, or a policy "
        "that does not allow listing/reading/writing this bucket and prefix.",
        "Check key/secret (and token) in storage_options or AWS_* variables, the endpoint_url, "
        "and that the policy allows s3:ListBucket, s3:GetObject (and s3:PutObject to write).",
    ),
    ErrorRule(
        "s3-no-such-bucket",
        ("FileNotFoundError", "botocore.exceptions.ClientError"),
        r"NoSuchBucket|specified bucket does not exist",
        "The bucket does not exist on this endpoint.",
        "A typo in the bucket name, the wrong endpoint_url/region, or the bucket was never "
        "created (zarr does not create buckets).",
        "Check the bucket name and endpoint_url/region; create the bucket first when writing.",
    ),
    ErrorRule(
        "endpoint-unreachable",
        (
            "botocore.exceptions.EndpointConnectionError",
            "aiohttp.client_exceptions.ClientConnectorError",
            "ConnectionRefusedError",
            "botocore.exceptions.ConnectTimeoutError",
        ),
        "",
        "The storage endpoint could not be reached.",
        "A wrong endpoint_url or port, the service is down, or a firewall/proxy blocks it.",
        "Check endpoint_url in storage_options (zdu: -o endpoint_url=...), that the service "
        "runs, and that this machine (and every Dask worker) can reach it.",
    ),
    ErrorRule(
        "protocol-not-installed",
        ("ImportError",),
        r"Please install (\w+)|Install s3fs",
        "The filesystem implementation for this URL protocol is not installed.",
        "fsspec maps each protocol to an optional package (s3:// to s3fs, gs:// to gcsfs, "
        "az:// to adlfs) and it is missing in this environment.",
        "Install the package named in the message (for S3: pip install 'zarr-dask-utils[s3]') "
        "in the client environment and on every Dask worker.",
    ),
    ErrorRule(
        "protocol-unknown",
        ("ValueError",),
        r"Protocol not known",
        "fsspec does not know this URL protocol.",
        "A typo in the URL scheme (e.g. 's3a:/', 'file:/'), or a protocol no installed package "
        "provides.",
        "Use a supported URL such as s3://bucket/path, gs://..., file:///abs/path or a plain "
        "local path.",
    ),
    ErrorRule(
        "storage-options-unused",
        ("TypeError",),
        r"storage_options.*(unused|only used)",
        "storage_options were given for a store that does not take them.",
        "storage_options only apply to fsspec URLs; a local path or a Store object ignores them.",
        "Drop storage_options for local paths, or pass a URL (s3://...) they apply to.",
    ),
    # --- finding nodes -----------------------------------------------------------------------
    ErrorRule(
        "path-not-found",
        ("FileNotFoundError",),
        r"does not exist|No such file or directory",
        "Nothing exists at {path}.",
        "A typo in the path, a relative path resolved from another working directory, or data "
        "that was never written or was moved.",
        _OPEN_FIX,
    ),
    ErrorRule(
        "wrong-node-type",
        ("zarr.errors.NodeTypeValidationError",),
        r"Expected '(array|group)'\. Got '(array|group)'",
        "The node at the path is of the other kind (a group where an array was expected, or an "
        "array where a group was expected).",
        "zarr.open_array was pointed at a group (or open_group at an array).",
        "Open it with zarr.open (any kind) or the matching function, or add the array's path "
        "inside the group (group['name']).",
    ),
    ErrorRule(
        "group-is-array",
        ("zarr.errors.ContainsArrayError",),
        r"already exists|array exists",
        "An array already exists at this path.",
        "zarr.open_group or a create call with mode 'w-'/'a' was pointed at an existing array.",
        "Open it with zarr.open_array; to replace it, pass mode='w' (this deletes the old data).",
    ),
    ErrorRule(
        "already-exists",
        ("FileExistsError", "zarr.errors.ContainsGroupError"),
        r"already contains data|group exists|already exists",
        "The path already holds Zarr data and the call was told to keep existing data.",
        "mode='w-' (the default of xarray's to_zarr and of zarr's create calls) refuses to "
        "write over existing data.",
        "Use mode='a' to add to it, mode='r+' with region= to update part of it, or mode='w' "
        "to replace it (this deletes the old data).",
    ),
    ErrorRule(
        "array-not-found",
        ("zarr.errors.ArrayNotFoundError",),
        "",
        "No array metadata document was found at the path (for the zarr format asked).",
        "A wrong path; or zarr_format=3 was asked for a format 2 array (or the reverse); or "
        "the array's zarr.json / .zarray was deleted.",
        "Drop zarr_format= so zarr detects it, check the path with `zdu info`, and run "
        "`zdu validate` to find missing documents.",
    ),
    ErrorRule(
        "group-not-found",
        ("zarr.errors.GroupNotFoundError",),
        "",
        "No group metadata document was found at the path (for the zarr format asked).",
        "A wrong path or prefix; an empty or missing bucket; zarr_format=2 asked for a format "
        "3 store (or the reverse); or the root zarr.json / .zgroup was lost.",
        "Drop zarr_format= so zarr detects it, check the path with `zdu info`, and run "
        "`zdu repair` to restore missing group documents.",
    ),
    ErrorRule(
        "stale-consolidated",
        ("KeyError",),
        r"not found in consolidated metadata",
        "The node exists in the store but not in the consolidated metadata.",
        "zarr 3 trusts consolidated metadata and never falls back to the store: the node was "
        "added after the last consolidation.",
        "Regenerate it with `zdu consolidate STORE` (or open with use_consolidated=False).",
    ),
    # --- metadata documents --------------------------------------------------------------------
    ErrorRule(
        "metadata-json-invalid",
        ("json.decoder.JSONDecodeError",),
        "",
        "A metadata document is not valid JSON.",
        "A writer died mid-write, or the document was edited by hand.",
        "Run `zdu validate STORE` to find the document and `zdu repair STORE --apply` to "
        "restore it from the consolidated metadata when possible.",
    ),
    ErrorRule(
        "metadata-json-too-deep",
        ("RecursionError",),
        r"decoding a JSON",
        "A JSON document (a metadata document or a manifest) is nested too deeply to parse: it "
        "is not valid metadata.",
        "The file holds thousands of nested brackets ([[[[…), written by a broken tool or on "
        "purpose; Python's JSON parser stops at its recursion limit.",
        "Run `zdu validate STORE` to find the document (it is reported as json-invalid) and "
        "restore it from a backup, or `zdu repair STORE --apply` when a consolidated copy exists.",
    ),
    ErrorRule(
        "unknown-codec",
        ("zarr.errors.UnknownCodecError", "numcodecs.errors.UnknownCodecError"),
        "",
        "The array uses a codec that is not available in this environment.",
        "The data was written with a codec from a package that is not installed here (or on "
        "a worker), or the metadata names a codec that does not exist.",
        "Install the codec's package (e.g. numcodecs, imagecodecs, zarr extras) everywhere the "
        "array is read; `zdu validate` lists the arrays that use it.",
    ),
    ErrorRule(
        "zarr-format-invalid",
        ("zarr.errors.MetadataValidationError",),
        r"zarr_format",
        "An invalid zarr_format was asked for or found.",
        "zarr_format must be 2 or 3 (or None to detect it).",
        "Pass zarr_format=2, 3 or None; `zdu info` shows the format of an existing store.",
    ),
    ErrorRule(
        "metadata-invalid",
        ("zarr.errors.MetadataValidationError",),
        "",
        "A metadata document has an invalid value.",
        "A document written by hand or by another tool does not follow the Zarr spec.",
        "Run `zdu validate STORE`: it names the document, the key and the fix.",
    ),
    # --- creating arrays -----------------------------------------------------------------------
    ErrorRule(
        "fill-value-invalid",
        ("OverflowError", "TypeError"),
        r"out of bounds for|scalar compatible with the data type",
        "The fill value does not fit the array's data type.",
        "E.g. fill_value=300 for int8, or a string for a float array.",
        "Pass a fill_value representable in the dtype (or a wider dtype).",
    ),
    ErrorRule(
        "chunks-shape-mismatch",
        ("ValueError",),
        r"chunk_shape.*same number of dimensions|chunks.*dimensions",
        "The chunk shape does not have one entry per array dimension.",
        "chunks=(...) was given for a different number of dimensions than shape.",
        "Give chunks with exactly len(shape) entries, e.g. chunks=(1, 512, 512) for shape "
        "(t, y, x).",
    ),
    ErrorRule(
        "missing-shape",
        ("TypeError",),
        r"missing 1 required positional argument: 'shape'",
        "zarr tried to create a new array because none exists at the path, but no shape was given.",
        "The path is wrong (so the array was not found) and the mode ('a' or 'w') allows "
        "creating one.",
        "Fix the path to open an existing array, or pass shape= (and dtype=, chunks=) to "
        "create one.",
    ),
    # --- reading and writing data --------------------------------------------------------------
    ErrorRule(
        "read-only",
        ("ValueError", "PermissionError", "zarr.errors.ReadOnlyError"),
        r"read[- ]only",
        "A write was attempted on a store or array opened read-only.",
        "zarr opens with mode='r' by default in open_array/open_group(mode='r'), and "
        "zarr-dask-utils opens read-only unless an operation writes.",
        "Open with mode='r+' (update) or mode='a' (create if missing), or write to a copy.",
    ),
    ErrorRule(
        "index-dimensions",
        ("IndexError",),
        r"too many indices",
        "An indexing step used more indices than its array has dimensions.",
        "A selection with too many axes; or, in an assignment, a value with fewer dimensions "
        "than the selection (zarr reports the value's dimensions here).",
        "Check array.ndim against the selection, and give the value the selection's shape "
        "(array[sel].shape).",
    ),
    ErrorRule(
        "out-of-bounds",
        ("zarr.errors.BoundsCheckError", "IndexError"),
        r"out of bounds",
        "The selection reaches outside the array.",
        "An index is >= the length of its dimension (or more indices than dimensions).",
        "Check array.shape and the selection; negative indices count from the end.",
    ),
    ErrorRule(
        "value-shape-mismatch",
        ("ValueError",),
        r"could not broadcast|expected .* shape|shape mismatch|shapes do not match",
        "The value's shape does not match the selection it is assigned to.",
        "The selection and the data differ in shape (an off-by-one slice, transposed axes).",
        "Make data.shape equal to the selection's shape (array[sel].shape), or use a scalar.",
    ),
    ErrorRule(
        "value-dtype-mismatch",
        ("ValueError", "TypeError"),
        r"could not convert|cannot cast|invalid literal for",
        "The data cannot be converted to the array's data type.",
        "E.g. strings written to a float array.",
        "Convert the data to array.dtype first (np.asarray(data, dtype=array.dtype)), or "
        "create the array with a dtype that fits.",
    ),
    # --- xarray ------------------------------------------------------------------------------
    ErrorRule(
        "xarray-region-unaligned",
        ("ValueError",),
        r"would overlap multiple Dask chunks|overlap.*zarr chunk|safe_chunks",
        "Parallel writes to this region would share Zarr chunks, so writers could overwrite "
        "each other's data.",
        "The Dask chunks of the data (or the region's start) do not line up with the Zarr "
        "chunks of the target.",
        "Rechunk the data to the target's chunks (ds.chunk(target_chunks)) with region bounds "
        "on chunk edges, or use zarr_dask_utils.synchronized_write for unaligned regions.",
    ),
    ErrorRule(
        "xarray-dimensions-missing",
        ("KeyError",),
        r"_ARRAY_DIMENSIONS",
        "xarray cannot tell the dimension names of an array.",
        "The store was not written by xarray: format 2 arrays need the _ARRAY_DIMENSIONS "
        "attribute, format 3 arrays dimension_names.",
        "Open it with zarr directly, or add the dimension names (zarr attribute "
        "_ARRAY_DIMENSIONS for format 2, dimension_names for format 3).",
    ),
    ErrorRule(
        "xarray-new-variables-in-region",
        ("ValueError",),
        r"non-pre-existing variables",
        "A region write contains variables the target does not have.",
        "region= writes (mode='r+') can only update existing variables.",
        "Write the new variables first with mode='a' (no region), or drop them from the "
        "dataset before the region write.",
    ),
    ErrorRule(
        "xarray-append-dim",
        ("ValueError",),
        r"append_dim=.*does not match",
        "The append dimension does not exist in the target dataset.",
        "append_dim names a dimension the stored dataset does not have (typo, or renamed).",
        "Use one of the stored dimensions (xr.open_zarr(target).dims), or write without "
        "append_dim to create the store.",
    ),
    # --- damaged compressed chunks (numcodecs' zlib, gzip, bz2, lz4 raise the stdlib's errors) ----
    ErrorRule(
        "chunk-decompress-failed",
        ("zlib.error", "EOFError", "gzip.BadGzipFile", "OSError", "ValueError", "RuntimeError"),
        r"while decompressing data|end-of-stream marker|not a gzipped file|invalid data stream"
        r"|LZ4 decompression error|incorrect (header|data) check|crc check failed",
        "A compressed chunk could not be decompressed: its stored bytes end early or are damaged.",
        "The object was truncated (an interrupted upload or writer) or altered after writing; "
        "the codec itself is installed and works.",
        "Run `zdu check STORE --deep` to name every damaged chunk, then rewrite them from the "
        "source or a good copy (`zdu compare` finds one that matches).",
    ),
    # --- the cluster ---------------------------------------------------------------------------
    ErrorRule(
        "worker-died",
        ("distributed.scheduler.KilledWorker", "KilledWorker"),
        "",
        "Dask workers died while running one of the operation's tasks, as often as the "
        "scheduler allows (distributed.scheduler.allowed-failures), so the job stopped.",
        "A worker ran out of memory and was killed (the nanny at its memory limit, or the "
        "operating system), its host went away (a batch job's walltime, preemption, a lost "
        "node), or native code in the task crashed the process.",
        "Look at the workers' logs and the dashboard's memory for the task named above; give "
        "workers more memory or make tasks smaller (`zdu rechunk --max-mem`), then run the same "
        "command again: rechunk, convert and download resume from their completion markers and "
        "do not redo finished work.",
    ),
    # --- last: broad patterns -------------------------------------------------------------
    ErrorRule(
        "chunk-decode-failed",
        ("RuntimeError", "ValueError"),
        r"decompress|could not decode|decode error|frame (size|descriptor)|checksum|crc32c",
        "A chunk could not be decoded.",
        "The stored bytes are damaged (truncated upload, bit rot, an interrupted writer) or "
        "were written with different codecs than the metadata says.",
        "Run `zdu check STORE --deep` to list every bad chunk, then rewrite them from the "
        "source; a checksum manifest (`zdu manifest create STORE OUT`) proves later copies intact.",
    ),
)
