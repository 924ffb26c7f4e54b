"""Typed inputs and predictions of the inference core.

These models are the contract shared by the HTTP API, the CLI's JSONL output and
the evaluation code, so a document analysed through any of them looks the same.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from voce.models.labels import SentimentLabel

DocumentKind = Literal["comment", "chat"]
Role = Literal["customer", "agent", "bot", "system", "unknown"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Turn(_Strict):
    """One message of a chat transcript as an integrator sends it."""

    speaker: str = Field(min_length=1, max_length=100, description="Speaker name, e.g. 'Cliente', 'Agent'.")
    text: str = Field(max_length=5120, description="What the speaker wrote.")


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
