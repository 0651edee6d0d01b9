"""The STOW-RS response: statuses, sequences and both encodings."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from pydicom import Dataset

from unitumour_dicom.dicomweb.stow_response import (
    DICOM_XML,
    StoredPart,
    http_status,
    negotiate_response,
    render,
    response_dataset,
    warning_headers,
)

SM = "1.2.840.10008.5.1.4.1.1.77.1.6"
OK = StoredPart(
    SM, "1.2.3.1", 0x0000, retrieve_url="/dicomweb/studies/1/series/2/instances/1.2.3.1"
)
WARNED = StoredPart(SM, "1.2.3.2", 0xB000, reason="coerced")
REFUSED = StoredPart(SM, "1.2.3.3", 0xA900, reason='study UID "x" does not match\r\nthe URL')
NOT_DICOM = StoredPart(None, None, 0xC000, reason="not a DICOM file")


def test_http_status_follows_ps3_18() -> None:
    assert http_status([OK]) == 200
    assert http_status([OK, WARNED]) == 202
    assert http_status([OK, REFUSED]) == 202
    assert http_status([REFUSED, NOT_DICOM]) == 409
    assert http_status([]) == 409


def test_json_response_names_each_part() -> None:
    ds = response_dataset([OK, WARNED, REFUSED, NOT_DICOM], study_url="/dicomweb/studies/1")
    back = Dataset.from_json(json.loads(render(ds, "application/dicom+json")))
    assert back.RetrieveURL == "/dicomweb/studies/1"
    assert [i.ReferencedSOPInstanceUID for i in back.ReferencedSOPSequence] == [
        "1.2.3.1",
        "1.2.3.2",
    ]
    assert back.ReferencedSOPSequence[0].RetrieveURL.endswith("/1.2.3.1")
    assert back.ReferencedSOPSequence[1].WarningReason == 0xB000
    assert back.FailedSOPSequence[0].FailureReason == 0xA900
    assert back.OtherFailuresSequence[0].FailureReason == 0xC000
    # nothing stored: no retrieve URL for a study that got nothing
    assert "RetrieveURL" not in response_dataset([REFUSED], study_url="/dicomweb/studies/1")


def test_xml_response_is_the_native_model() -> None:
    ds = response_dataset([OK, REFUSED], study_url="/dicomweb/studies/1?a=1&b=2")
    root = ET.fromstring(render(ds, DICOM_XML))
    ns = {"n": "http://dicom.nema.org/PS3.19/models/NativeDICOM"}
    url = root.find("n:DicomAttribute[@tag='00081190']/n:Value", ns)
    assert url is not None and url.text == "/dicomweb/studies/1?a=1&b=2"
    failed = root.find("n:DicomAttribute[@keyword='FailedSOPSequence']/n:Item", ns)
    assert failed is not None
    reason = failed.find("n:DicomAttribute[@tag='00081197']/n:Value", ns)
    assert reason is not None and reason.text == str(0xA900)


def test_negotiation_and_warnings() -> None:
    assert negotiate_response(None) == "application/dicom+json"
    assert negotiate_response("application/dicom+xml") == DICOM_XML
    assert negotiate_response("application/dicom+xml;q=0.5, application/dicom+json") == (
        "application/dicom+json"
    )
    headers = warning_headers([OK, REFUSED, NOT_DICOM])
    assert len(headers) == 2 and all(h.startswith('299 unitumour "') for h in headers)
    assert "\r" not in headers[0] and '"x"' not in headers[0] and "0xA900" in headers[0]
