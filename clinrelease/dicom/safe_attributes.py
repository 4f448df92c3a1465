"""Which standard attributes that Table E.1-1 does not list may stay in a release.

Table E.1-1 lists what identifies; clinrelease also removes what it cannot vouch for. An attribute
not in the table is kept only if

* its VR cannot carry free text (numbers, coded strings, attribute tags): :data:`SAFE_VRS`;
* or it is one of the explicitly vetted text/binary attributes in :data:`SAFE_KEYWORDS` (image
  pixel, palette, LUT, ICC and coded-entry attributes, and the equipment type attributes that the
  General Equipment module requires);
* UIDs not in the table are kept if they are registered (well-known) UIDs, otherwise replaced like
  U; sequences are kept and their items de-identified recursively; dates and times follow the
  longitudinal-temporal option.

Attributes in :data:`CLEAN_KEYWORDS` (free text some IODs require) are kept after cleaning. Other
text, person names and unlisted dates are emptied (Z: present but zero length, so Type 2 attributes
stay conformant); unknown binary blobs and unknown-VR elements are removed.
"""

from __future__ import annotations

from pydicom.datadict import tag_for_keyword

#: value representations that cannot hold free text
SAFE_VRS = frozenset(
    {"US", "SS", "UL", "SL", "FL", "FD", "DS", "IS", "SV", "UV", "AT", "CS", "OF", "OD", "OL", "OV"}
)

#: value representations that hold dates and times
TEMPORAL_VRS = frozenset({"DA", "DT", "TM"})

#: vetted attributes with text or binary VRs that stay (by keyword)
SAFE_KEYWORDS = frozenset(
    {
        # Image Pixel, palette colour, ICC, pixel data of every kind
        "PixelData", "FloatPixelData", "DoubleFloatPixelData", "ICCProfile", "ColorSpace",
        "RedPaletteColorLookupTableData", "GreenPaletteColorLookupTableData",
        "BluePaletteColorLookupTableData", "AlphaPaletteColorLookupTableData",
        "SegmentedRedPaletteColorLookupTableData", "SegmentedGreenPaletteColorLookupTableData",
        "SegmentedBluePaletteColorLookupTableData", "SegmentedAlphaPaletteColorLookupTableData",
        "LargePaletteColorLookupTableUID", "PixelDataProviderURL", "ExtendedOffsetTable",
        "ExtendedOffsetTableLengths",
        # Modality/VOI LUT
        "LUTData", "LUTExplanation", "WindowCenterWidthExplanation",
        # coded entries (Code Sequence macro)
        "CodeValue", "CodingSchemeDesignator", "CodingSchemeVersion", "CodeMeaning",
        "LongCodeValue", "URNCodeValue", "ContextIdentifier", "MappingResource",
        "ContextGroupVersion", "ContextGroupExtensionFlag", "ContextGroupLocalVersion",
        "MappingResourceName", "CodingSchemeName",
        # General Equipment type attributes (identity of the make, not of the device)
        "Manufacturer", "ManufacturerModelName", "SoftwareVersions",
        # General Series / Study type attributes
        "BodyPartExamined",
        # technical labels that IODs require (Type 1/1C) and that name techniques, not people
        "RescaleType", "ModalityLUTType", "PulseSequenceName", "SequenceName", "StackID",
        "ImagedNucleus", "ReceiveCoilName", "TransmitCoilName", "ConvolutionKernel", "FilterType",
        "PositionReferenceIndicator", "TransducerData", "ProcessingFunction",
        # de-identification markers written by clinrelease itself
        "DeidentificationMethod",
    }
)

#: free-text attributes that IODs require (Type 1/1C): kept after cleaning (scrubbed of the
#: patient's identifying strings, dates, long numbers and e-mail addresses) instead of removed
CLEAN_KEYWORDS = frozenset(
    {
        "SegmentLabel", "SegmentAlgorithmName", "LUTLabel", "PatientSpeciesDescription",
        "PatientBreedDescription", "ContentDescription", "ContentLabel", "FrameLabel",
    }
)

SAFE_TAGS = frozenset(tag_for_keyword(k) for k in SAFE_KEYWORDS)
CLEAN_TAGS = frozenset(tag_for_keyword(k) for k in CLEAN_KEYWORDS)
