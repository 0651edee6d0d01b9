"""The presentation contexts the listener supports: which SOP classes, in which encodings.

A pynetdicom acceptor takes, for each proposed context, the first transfer syntax of *its own*
list that the peer also proposed. The order below is therefore a policy: the encodings a
scanner already holds its frames in come first (lossless before lossy, so that a peer offering
both is never asked to degrade a lossless slide), then deflated, then the uncompressed ones. An
uncompressed syntax first would make a peer that offers "JPEG or uncompressed" decompress every
frame before sending it.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    VLWholeSlideMicroscopyImageStorage,
)
from pynetdicom.presentation import PresentationContext, build_context

from ..store import validate_uid

#: Verification (C-ECHO).
VERIFICATION_SOP_CLASS = UID("1.2.840.10008.1.1")

#: The SOP class the pipeline processes.
WSI_SOP_CLASS = VLWholeSlideMicroscopyImageStorage

#: Accepted transfer syntaxes, in the order the listener prefers them (see the module note).
TRANSFER_SYNTAXES: tuple[UID, ...] = (
    # lossless encodings
    JPEG2000Lossless,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    JPEGLSLossless,
    JPEGLosslessSV1,
    JPEGLossless,
    RLELossless,
    # lossy encodings as scanners write them
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEG2000,
    HTJ2K,
    JPEGLSNearLossless,
    # uncompressed pixels
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

#: Deflated data sets must be inflated before their header can be read.
DEFLATED = DeflatedExplicitVRLittleEndian


def storage_sop_classes(extra_sop_classes: Iterable[str] = ()) -> tuple[UID, ...]:
    """VL Whole Slide Microscopy Image Storage plus the classes the settings allow."""
    classes = [WSI_SOP_CLASS]
    for text in extra_sop_classes:
        uid = UID(validate_uid(text.strip(), "listener.extra_sop_classes entry"))
        if uid not in classes:
            classes.append(uid)
    return tuple(classes)


def supported_contexts(extra_sop_classes: Iterable[str] = ()) -> list[PresentationContext]:
    """Verification plus one context per storage SOP class, each with every syntax above."""
    contexts = [
        build_context(VERIFICATION_SOP_CLASS, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    ]
    for sop_class in storage_sop_classes(extra_sop_classes):
        contexts.append(build_context(sop_class, list(TRANSFER_SYNTAXES)))
    return contexts
