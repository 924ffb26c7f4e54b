"""Typed inputs and predictions of the inference core.

These models are the contract shared by the HTTP API, the CLI's JSONL output and
the evaluation code, so a document analysed through any of them looks the same.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ModelWrapValidatorHandler, PrivateAttr, model_validator

from voce.models.cleaning import clean_text
from voce.models.labels import SentimentLabel

DocumentKind = Literal["comment", "chat"]
Role = Literal["customer", "agent", "bot", "system", "unknown"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _clean_fields(data: Any, names: tuple[str, ...]) -> tuple[Any, list[str]]:
    """``data`` (a mapping about to be validated) with invalid code points replaced in the ``names`` fields, and
    the fields that had any; anything else (a model instance) is left to validation as it is."""
    if not isinstance(data, dict):
        return data, []
    cleaned: list[str] = []
    for name in names:
        value = data.get(name)
        if isinstance(value, str):
            fixed, n = clean_text(value)
            if n:
                data = {**data, name: fixed}
                cleaned.append(name)
    return data, cleaned


class Turn(_Strict):
    """One message of a chat transcript as an integrator sends it."""

    speaker: str = Field(min_length=1, max_length=100, description="Speaker name, e.g. 'Cliente', 'Agent'.")
    text: str = Field(max_length=5120, description="What the speaker wrote.")
    _cleaned: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _clean_unicode(cls, data: Any, handler: ModelWrapValidatorHandler[Turn]) -> Turn:
        """See :meth:`DocumentInput._clean_unicode`."""
        data, cleaned = _clean_fields(data, ("speaker", "text"))
        turn = handler(data)
        if cleaned:
            turn._cleaned = tuple(cleaned)
        return turn


class DocumentInput(_Strict):
    """A comment or a chat transcript to analyse."""

    id: str = Field(min_length=1, max_length=128, description="Caller's id, echoed back.")
    text: str | None = Field(
        default=None,
        description="The comment, or a transcript as 'Speaker: line' lines. Optional when `turns` is given.",
    )
    kind: DocumentKind = Field(default="comment", description="'comment' or 'chat'.")
    language: str | None = Field(
        default=None,
        min_length=2,
        max_length=8,
        description="ISO 639-1 code if known (wins over detection); null to detect.",
    )
    channel: str | None = Field(
        default=None,
        max_length=64,
        description="Where the feedback came from (e.g. 'app', 'phone', 'store'); a prior for touchpoints.",
    )
    turns: list[Turn] | None = Field(default=None, max_length=500, description="Chat turns, instead of `text`.")
    # the fields whose invalid characters (NUL, lone surrogates, non-characters) were replaced by U+FFFD
    _cleaned: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _clean_unicode(cls, data: Any, handler: ModelWrapValidatorHandler[DocumentInput]) -> DocumentInput:
        """Invalid code points become U+FFFD (one for one: offsets hold) before anything else sees them: a lone
        surrogate cannot be encoded as UTF-8 and PostgreSQL stores no NUL, so they used to fail the request (500)
        or the whole batch; the analyzer warns about the fields it cleaned instead."""
        data, cleaned = _clean_fields(data, ("id", "text", "channel", "language"))
        doc = handler(data)
        for i, turn in enumerate(doc.turns or []):
            cleaned += [f"turns[{i}].{name}" for name in turn._cleaned]
        if cleaned:
            doc._cleaned = tuple(cleaned)
        return doc

    @property
    def cleaned_fields(self) -> tuple[str, ...]:
        """Fields in which invalid characters were replaced (empty for clean input)."""
        return self._cleaned


class SentimentScores(_Strict):
    positive: float = Field(ge=0.0, le=1.0)
    neutral: float = Field(ge=0.0, le=1.0)
    negative: float = Field(ge=0.0, le=1.0)


class Sentiment(_Strict):
    label: SentimentLabel
    scores: SentimentScores = Field(description="Calibrated probabilities; they sum to 1.")


class Evidence(_Strict):
    """A character span of the document text (Python string indices)."""

    offset: int = Field(ge=0)
    length: int = Field(ge=0)


class SentenceResult(_Strict):
    offset: int = Field(ge=0)
    length: int = Field(ge=0)
    text: str
    sentiment: Sentiment


class TopicResult(_Strict):
    id: str
    score: float = Field(ge=0.0, le=1.0, description="Probability the document is about this topic.")
    sentiment: Sentiment
    evidence: list[Evidence]
    source: Literal["learned", "zero_shot"] = Field(
        description="Whether a trained head or taxonomy similarity produced the score."
    )
    uncertain: bool | None = Field(
        default=None,
        description="Exclusive (mode: single) sections only: the best entry's confidence is below the bundle's bar.",
    )


class TouchpointResult(_Strict):
    id: str
    score: float = Field(
        ge=0.0, le=1.0,
        description="Probability the text is about this touchpoint (exclusive sections: confidence of the choice).",
    )
    evidence: list[Evidence]
    primary: bool = Field(default=False, description="The touchpoint the text is mainly about (listed first).")
    source: Literal["learned", "zero_shot"] = Field(
        default="zero_shot", description="Whether a trained head or taxonomy similarity produced the score."
    )
    from_channel: bool = Field(
        description="True when the document's channel changed this result: the text supported the touchpoint, and "
        "the channel raised it into the list or made it the primary one. A channel never creates a touchpoint alone."
    )
    uncertain: bool | None = Field(
        default=None,
        description="Exclusive (mode: single) sections only: the best entry's confidence is below the bundle's bar.",
    )


class Detractor(_Strict):
    probability: float = Field(ge=0.0, le=1.0, description="P(writer would answer NPS 0–6).")


class TurnResult(_Strict):
    index: int
    speaker: str
    role: Role
    offset: int
    length: int
    sentiment: Sentiment | None = Field(description="Only for customer turns.")


class EffortSignalResult(_Strict):
    kind: str
    evidence: Evidence


class ChatResult(_Strict):
    turns: list[TurnResult]
    trajectory: dict[str, SentimentLabel | None] = Field(
        description="{'first': label of the first customer turn, 'last': label of the last one}."
    )
    escalation_requested: bool
    escalation_evidence: list[Evidence]
    effort_signals: list[EffortSignalResult]


class DocumentResult(_Strict):
    id: str
    language: str
    warnings: list[str]
    sentiment: Sentiment
    sentences: list[SentenceResult]
    topics: list[TopicResult]
    touchpoints: list[TouchpointResult]
    detractor: Detractor
    channel: str | None = Field(
        default=None,
        description="Where the feedback was collected, as the request's channel normalised to the taxonomy's "
        "touchpoint ids (null when none was given or it matches no touchpoint). A different fact from `touchpoints`, "
        "which say what the text is about.",
    )
    chat: ChatResult | None = None
    text: str | None = Field(
        default=None, description="The analysed text when it was built from `turns` (evidence offsets refer to it)."
    )


class DocumentError(_Strict):
    id: str
    error: dict[str, str] = Field(description="{'code': ..., 'message': ...}")
