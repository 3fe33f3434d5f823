"""The one door to ``iatro.iac.adapters`` internals: the text record encoders and decoders.

The ``clinical_text`` / ``clinical_text_pair`` record payload (u32 manifest length, manifest
JSON, concatenated UTF-8 texts) is encoded here by the adapters' *own* functions, so our packs
open unchanged in :class:`~iatro.iac.adapters.text.ClinicalTextReader` /
:class:`~iatro.iac.adapters.text_pair.ClinicalTextPairReader`. The adapters expose only
whole-pack builders publicly; the per-patient encoders are private names, so every use of them
is here, checked against ``iatro-iac-adapters`` 0.1.x (pinned ``<0.2`` in pyproject) and proven
by the round-trip tests through the public readers.

Example:
    >>> raw = encode_text_patient("P1", "XJ", [text_doc("P1/e/a_20240101000000", "发热", "a")])
    >>> decode_text_patient(raw).docs[0].text
    '发热'
"""

from __future__ import annotations

from collections.abc import Sequence

from iatro.iac.adapters import text as _text
from iatro.iac.adapters import text_pair as _pair

__all__ = [
    "ClinicalDoc",
    "ClinicalTextPairDoc",
    "decode_pair_patient",
    "decode_text_patient",
    "encode_pair_patient",
    "encode_text_patient",
    "pair_doc",
    "text_doc",
]

ClinicalDoc = _text.ClinicalDoc
ClinicalTextPairDoc = _pair.ClinicalTextPairDoc


def text_doc(
    doc_id: str, text: str, doc_type: str, *, encounter: str = "", source: str = "",
    doc_timestamp: str = "",
) -> _text.ClinicalDoc:  # fmt: skip
    """One ``clinical_text`` document."""
    return _text.ClinicalDoc(
        doc_id=doc_id, text=text, doc_type=doc_type, encounter=encounter, source=source,
        doc_timestamp=doc_timestamp,
    )  # fmt: skip


def pair_doc(
    doc_id: str, source_text: str, compressed_text: str, doc_type: str, *, encounter: str = "",
    source: str = "", doc_timestamp: str = "",
) -> _pair.ClinicalTextPairDoc:  # fmt: skip
    """One ``clinical_text_pair`` document."""
    return _pair.ClinicalTextPairDoc(
        doc_id=doc_id, source_text=source_text, compressed_text=compressed_text,
        doc_type=doc_type, encounter=encounter, source=source, doc_timestamp=doc_timestamp,
    )  # fmt: skip


def encode_text_patient(
    patient_id: str, institution: str, docs: Sequence[_text.ClinicalDoc]
) -> bytes:
    """A ``clinical_text`` record payload (before the pack codec)."""
    return _text._encode_patient(_text.PatientText(patient_id, institution, list(docs)))


def decode_text_patient(payload: bytes) -> _text.PatientText:
    """The documents of a decoded ``clinical_text`` record."""
    return _text._decode_patient(payload)


def encode_pair_patient(
    patient_id: str, institution: str, docs: Sequence[_pair.ClinicalTextPairDoc]
) -> bytes:
    """A ``clinical_text_pair`` record payload (before the pack codec)."""
    return _pair._encode_patient_pairs(_pair.PatientTextPairs(patient_id, institution, list(docs)))


def decode_pair_patient(payload: bytes) -> _pair.PatientTextPairs:
    """The documents of a decoded ``clinical_text_pair`` record."""
    return _pair._decode_patient_pairs(payload)
