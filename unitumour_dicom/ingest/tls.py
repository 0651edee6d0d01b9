"""DICOM TLS for the listener (PS3.15 B.9, BCP 195: TLS 1.2 or newer), mutual TLS optional."""

from __future__ import annotations

import ssl
from typing import Any

from ..config.sections import TLSSettings
from ..errors import ConfigError

#: RFC 4514 short names for the attribute types Python's ssl module spells out.
_SHORT_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "emailAddress": "emailAddress",
}


def server_ssl_context(tls: TLSSettings) -> ssl.SSLContext:
    """The context that wraps each accepted connection.

    With ``require_client_cert`` a peer must present a certificate that chains to ``ca_file``;
    with only ``ca_file`` a certificate is checked when offered (and its subject recorded).
    """
    if not (tls.certfile and tls.keyfile):
        raise ConfigError("listener.tls needs certfile and keyfile")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=str(tls.certfile), keyfile=str(tls.keyfile))
        if tls.ca_file:
            context.load_verify_locations(cafile=str(tls.ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"listener.tls: cannot load certificates: {exc}") from exc
    if tls.require_client_cert:
        if not tls.ca_file:
            raise ConfigError("listener.tls.require_client_cert needs ca_file")
        context.verify_mode = ssl.CERT_REQUIRED
    elif tls.ca_file:
        context.verify_mode = ssl.CERT_OPTIONAL
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def certificate_subject(sock: Any) -> str | None:
    """The verified client certificate's subject as ``CN=...,O=...``, or None."""
    getpeercert = getattr(sock, "getpeercert", None)
    if getpeercert is None:
        return None
    try:
        cert = getpeercert()
    except (ValueError, OSError):
        return None
    if not cert:
        return None
    parts = [
        f"{_SHORT_NAMES.get(key, key)}={value}"
        for rdn in cert.get("subject", ())
        for key, value in rdn
    ]
    return ",".join(parts)[:512] or None
