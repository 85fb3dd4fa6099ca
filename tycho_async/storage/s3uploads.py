"""The lean path's multipart uploads: CreateMultipartUpload, UploadPart (its CRC32 computed
off the event loop), CompleteMultipartUpload (with a read timeout long enough for a store
that assembles a large object before it answers), AbortMultipartUpload, and the listing of
uploads in progress. ``S3Store`` routes each call here or to botocore; requests and their
translation are ``s3calls.LeanCalls``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from ..errors import NotFound
from . import Part, PartReceipt, S3Options, UploadInfo
from .s3calls import LeanCalls, checksum, iso_date
from .s3errors import not_s3
from .s3lean import LeanS3, encoded_query

COMPLETE_TIMEOUT = 60.0  # seconds a CompleteMultipartUpload may take to answer


def _escaped(text: str) -> str:
    """Text for an XML element (xml.sax.saxutils would import urllib.request for this)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _upload_id(upload_id: str) -> str:
    return f"uploadId={quote(upload_id, safe='-_.~')}"


class LeanUploads:
    """The lean client's side of each multipart call, on the translation of ``calls``."""

    def __init__(self, calls: LeanCalls, options: S3Options) -> None:
        self._calls = calls
        self._options = options

    async def list(self, client: LeanS3, prefix: str) -> list[UploadInfo]:
        calls = self._calls
        full = calls.key(prefix)
        what = "list uploads in progress"
        found: list[UploadInfo] = []
        markers: dict[str, str] = {}
        for _ in range(1_000_000):
            params = {"uploads": None, "prefix": full, **markers}
            with calls.translated(what):
                page = await client.xml("GET", "", query=encoded_query(dict(sorted(
                    params.items()))), operation="ListMultipartUploads", bucket=True)
            calls.check_listing(page, what)
            for item in page.children("Upload"):
                name = item.text_of("Key") or ""
                if name.startswith(full):
                    found.append(UploadInfo(name[len(calls.prefix):],
                                            item.text_of("UploadId") or "",
                                            iso_date(item.text_of("Initiated")) or 0.0))
            key_marker = page.text_of("NextKeyMarker")
            if page.text_of("IsTruncated") != "true" or not key_marker:
                break
            markers = {"key-marker": key_marker,
                       "upload-id-marker": page.text_of("NextUploadIdMarker") or ""}
        return found

    async def create(self, client: LeanS3, key: str) -> str:
        headers = {"x-amz-checksum-algorithm": "CRC32"} if self._options.checksums else {}
        with self._calls.translated(f"start upload of {key}"):
            root = await client.xml("POST", self._calls.key(key), query="uploads",
                                    headers=headers, operation="CreateMultipartUpload")
        upload_id = root.text_of("UploadId")
        if not upload_id:
            raise not_s3(self._calls.endpoint, f"start upload of {key}", "no UploadId")
        return upload_id

    async def upload_part(self, client: LeanS3, key: str, upload_id: str, part: Part,
                          data: bytes) -> PartReceipt:
        import anyio.to_thread

        what = f"upload part {part.number} of {key}"
        headers = await anyio.to_thread.run_sync(checksum, data, self._options.checksums)
        query = f"partNumber={part.number}&{_upload_id(upload_id)}"
        with self._calls.translated(what):
            resp = await client.send("PUT", self._calls.key(key), headers=headers, body=data,
                                     query=query, operation="UploadPart")
            await resp.read()
        receipt = {"ETag": self._calls.etag(resp.headers, what, resp.status)}
        if "x-amz-checksum-crc32" in headers:
            receipt["ChecksumCRC32"] = headers["x-amz-checksum-crc32"]
        return receipt

    async def complete(self, client: LeanS3, key: str, upload_id: str,
                       receipts: Sequence[PartReceipt], *, if_none_match: bool) -> str:
        parts = "".join(
            f"<Part><PartNumber>{n}</PartNumber>" + "".join(
                f"<{name}>{_escaped(value)}</{name}>" for name, value in receipt.items())
            + "</Part>" for n, receipt in enumerate(receipts, start=1))
        body = (f'<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"{parts}</CompleteMultipartUpload>").encode()
        headers = {"if-none-match": "*"} if if_none_match else {}
        seconds = max(COMPLETE_TIMEOUT, self._options.read_timeout)
        what = f"finish upload of {key}"
        with self._calls.translated(what, read_timeout_=seconds):
            root = await client.xml(
                "POST", self._calls.key(key), query=_upload_id(upload_id), body=body,
                headers=headers, operation="CompleteMultipartUpload", read_timeout=seconds)
        etag = root.text_of("ETag")
        if not etag:
            raise not_s3(self._calls.endpoint, what, "no ETag in the answer")
        return etag

    async def abort(self, client: LeanS3, key: str, upload_id: str) -> None:
        try:
            with self._calls.translated(f"abort upload of {key}"):
                await (await client.send("DELETE", self._calls.key(key),
                                         query=_upload_id(upload_id),
                                         operation="AbortMultipartUpload")).read()
        except NotFound:
            return
