"""The coded concepts of the measurement report: SNOMED CT and DCM where TID 1500 and its
context groups have them, UCUM units, and one local code where no standard concept exists.

A local code is what PS3.16 8.2 allows for concepts without a standard code: a Coding Scheme
Designator starting with "99", declared in the SR's Coding Scheme Identification Sequence.
"""

from __future__ import annotations

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

#: Procedure Reported (TID 1500 row 4; CID 8131 Pathology Imaging Procedures).
PROCEDURE_REPORTED = codes.DCM.WholeSlideImaging  # (112703, DCM, "Whole Slide Imaging")

#: Finding category and type of the tumour ROI (as the SEG's segment: CID 7150 / 7151).
TUMOUR_CATEGORY = codes.SCT.MorphologicallyAbnormalStructure  # 49755003
TUMOUR_TYPE = codes.SCT.Neoplasm  # 108369006
#: Finding category and type of the tissue measurements (CID 7150 Tissue, CID 7151).
TISSUE_CATEGORY = codes.SCT.Tissue  # 85756007
TISSUE_TYPE = codes.SCT.Tissue  # 85756007

#: Measurement names. Area: CID 7469 / 7471 (Generic Intensity and Size Measurements, Area
#: Measurements); the largest region's area is an Area with Derivation "Maximum" (CID 7464).
AREA = codes.SCT.Area  # (42798000, SCT, "Area")
MAXIMUM = codes.SCT.Maximum  # (56851009, SCT, "Maximum")
NUMBER_OF_REGIONS = Code("246206008", "SCT", "Number of lesions")

#: The local coding scheme: our own concepts, declared in the SR. Code values stay within 16
#: characters (Code Value, SH): longer ones go to Long Code Value, which highdicom 0.28 cannot
#: read back in a measurement group.
LOCAL_SCHEME = "99UNITUMOUR"
LOCAL_SCHEME_NAME = "UniTumour DICOM local concepts"
TUMOUR_FRACTION = Code("TUMOUR_FRACTION", LOCAL_SCHEME, "Tumour area fraction of tissue")

#: Units (UCUM; CID 7181 for mm2 and %; "{regions}" is a UCUM annotated unit of 1).
SQUARE_MILLIMETRE = codes.UCUM.SquareMillimeter  # mm2
PERCENT = codes.UCUM.Percent  # %
REGIONS = Code("{regions}", "UCUM", "regions")
