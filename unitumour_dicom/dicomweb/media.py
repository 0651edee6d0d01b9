"""Content negotiation for WADO-RS (PS3.18 8.7): which media type and transfer syntax a
response uses, from the client's Accept header and what is stored.

We never re-encode into a lossy syntax. A frame goes out as stored when the client accepts
that, or decoded to native Explicit VR Little Endian when the client accepts only that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import NotAcceptableError

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
NATIVE_SYNTAXES = {
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
}

#: PS3.18 Table 8.7.3-5: the media type of a compressed frame, by transfer syntax.
FRAME_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}
#: PS3.18 Table 8.7.3-5: the transfer syntax a media type means when none is named.
DEFAULT_SYNTAX_OF_MEDIA_TYPE = {
    "application/octet-stream": EXPLICIT_VR_LITTLE_ENDIAN,
    "image/jpeg": "1.2.840.10008.1.2.4.50",
    "image/jls": "1.2.840.10008.1.2.4.80",
    "image/jp2": "1.2.840.10008.1.2.4.90",
    "image/jpx": "1.2.840.10008.1.2.4.92",
    "image/jphc": "1.2.840.10008.1.2.4.201",
    "image/dicom-rle": "1.2.840.10008.1.2.5",
}
#: Stored syntaxes whose frames we decode rather than pass on when the client leaves the
#: choice to us (``transfer-syntax=*``): browser viewers cannot decode RLE.
_DECODE_WHEN_FREE = {"1.2.840.10008.1.2.5"}

DICOM_JSON = "application/dicom+json"


@dataclass(frozen=True)
class MediaRange:
    """One comma-separated element of an Accept header."""

    type: str
    subtype: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    @property
    def mime(self) -> str:
        return f"{self.type}/{self.subtype}"

    def matches(self, mime: str) -> bool:
        t, _, s = mime.partition("/")
        return self.type in ("*", t) and self.subtype in ("*", s)


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def parse_accept(header: str | None) -> list[MediaRange]:
    """Media ranges by descending q (stable for equal q); ``*/*`` when the header is empty."""
    if not header or not header.strip():
        return [MediaRange("*", "*")]
    ranges: list[MediaRange] = []
    for item in _split_outside_quotes(header, ","):
        pieces = _split_outside_quotes(item, ";")
        mime = pieces[0].strip().lower()
        if "/" not in mime:
            continue
        t, _, s = mime.partition("/")
        params: dict[str, str] = {}
        q = 1.0
        for p in pieces[1:]:
            key, _, value = p.strip().partition("=")
            key = key.strip().lower()
            value = value.strip().strip('"').strip()
            if key == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
            elif key:
                params[key] = value
        if q > 0:
            ranges.append(MediaRange(t, s, params, q))
    return sorted(ranges, key=lambda r: -r.q)


@dataclass(frozen=True)
class FrameEncoding:
    """How frames go out: their media type and syntax, whether to decode, and framing."""

    media_type: str
    transfer_syntax_uid: str
    decode: bool
    multipart: bool


def _frame_choice(
    inner: str, syntax: str | None, stored: str, encapsulated: bool
) -> tuple[str, str, bool] | None:
    """(media type, transfer syntax, decode) for one acceptable inner type, or None."""
    stored_media = FRAME_MEDIA_TYPES.get(stored, "application/octet-stream")
    native_out = ("application/octet-stream", EXPLICIT_VR_LITTLE_ENDIAN, encapsulated)
    if inner == "application/octet-stream":
        if syntax == "*":
            if stored in _DECODE_WHEN_FREE or not encapsulated:
                return native_out
            return (stored_media, stored, False)
        if syntax in (None, EXPLICIT_VR_LITTLE_ENDIAN):
            return native_out
        if syntax == stored and encapsulated:
            return (stored_media, stored, False)
        return None
    if not encapsulated:
        return None
    t, _, s = inner.partition("/")
    if not MediaRange(t, s).matches(stored_media):
        return None
    if syntax in (None, "*", stored):
        if syntax is None and inner == stored_media:
            default = DEFAULT_SYNTAX_OF_MEDIA_TYPE.get(inner)
            # image/jpeg without a syntax means baseline; serve other JPEG processes only
            # when named, as the standard says, except the lossless relatives of the default.
            if default != stored and stored not in _SAME_FAMILY.get(default or "", ()):
                return None
        return (stored_media, stored, False)
    return None


_SAME_FAMILY = {
    "1.2.840.10008.1.2.4.50": ("1.2.840.10008.1.2.4.51",),
    "1.2.840.10008.1.2.4.80": ("1.2.840.10008.1.2.4.81",),
    "1.2.840.10008.1.2.4.90": ("1.2.840.10008.1.2.4.91",),
    "1.2.840.10008.1.2.4.92": ("1.2.840.10008.1.2.4.93",),
    "1.2.840.10008.1.2.4.201": ("1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"),
}


def negotiate_frames(
    accept: str | None, *, stored_syntax: str, encapsulated: bool, n_frames: int
) -> FrameEncoding:
    """Choose how to send frames; raise NotAcceptableError when nothing offered fits."""
    for r in parse_accept(accept):
        if r.mime in ("*/*", "multipart/*", "multipart/related"):
            if r.mime == "multipart/related":
                inner = r.params.get("type", "application/octet-stream").lower()
                syntax = r.params.get("transfer-syntax")
            else:
                # */* means the standard's default: uncompressed in multipart, unless the
                # stored frames are already what a client most likely wants to decode.
                inner, syntax = "application/octet-stream", None
            choice = _frame_choice(inner, syntax, stored_syntax, encapsulated)
            if choice:
                return FrameEncoding(*choice, multipart=True)
            continue
        if n_frames == 1 and r.type in ("application", "image"):
            syntax = r.params.get("transfer-syntax")
            inner = r.mime
            if r.subtype == "*":
                inner = FRAME_MEDIA_TYPES.get(stored_syntax, "application/octet-stream")
                if not r.matches(inner):
                    continue
            choice = _frame_choice(inner, syntax, stored_syntax, encapsulated)
            if choice:
                return FrameEncoding(*choice, multipart=False)
    raise NotAcceptableError(
        f"frames are stored as {stored_syntax}; the Accept header offers none of: "
        f"multipart/related; type=application/octet-stream (native or transfer-syntax=*), "
        f"or the stored media type {FRAME_MEDIA_TYPES.get(stored_syntax, 'native')}"
    )


def negotiate_instance(accept: str | None, *, multipart_only: bool) -> bool:
    """Whether whole instances may go out (as stored); returns True for multipart framing.

    We do not transcode instances: a request that names a transfer syntax other than ``*`` is
    answered as stored only if the stored syntax is that one, which the caller checks per
    instance through :func:`accepted_instance_syntax`.
    """
    for r in parse_accept(accept):
        if r.mime in ("*/*", "multipart/*"):
            return True
        if r.mime == "multipart/related":
            if r.params.get("type", "application/dicom").lower() == "application/dicom":
                return True
            continue
        if r.mime == "application/dicom" and not multipart_only:
            return False
    raise NotAcceptableError(
        "instances are served as multipart/related; type=application/dicom "
        "(or application/dicom for one instance)"
    )


def accepted_instance_syntax(accept: str | None) -> str | None:
    """The transfer syntax the client named for application/dicom, if any other than ``*``."""
    for r in parse_accept(accept):
        inner = r.params.get("type", "").lower() if r.mime == "multipart/related" else r.mime
        if inner == "application/dicom":
            syntax = r.params.get("transfer-syntax")
            return None if syntax in (None, "*") else syntax
    return None


def negotiate_json(accept: str | None) -> str:
    for r in parse_accept(accept):
        if r.matches(DICOM_JSON) or r.matches("application/json"):
            return DICOM_JSON if r.mime != "application/json" else "application/json"
    raise NotAcceptableError("metadata and search results are served as application/dicom+json")


def negotiate_bulkdata(accept: str | None) -> bool:
    """True for multipart/related framing, False for a single application/octet-stream part."""
    for r in parse_accept(accept):
        if r.mime in ("*/*", "multipart/*"):
            return True
        if r.mime == "multipart/related":
            if r.params.get("type", "application/octet-stream").lower() in (
                "application/octet-stream",
                "*/*",
            ):
                return True
            continue
        if r.matches("application/octet-stream"):
            return False
    raise NotAcceptableError("bulk data is served as application/octet-stream")
