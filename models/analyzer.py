"""The analysis pipeline: documents in, :class:`DocumentResult` out.

Every text unit a batch needs (document windows, sentences, chat turns) is
collected first, de-duplicated and encoded in one encoder call; all heads then
read the same embeddings.  Sentences give evidence spans and per-sentence
sentiment; topics and touchpoints are scored per sentence and per document so
each finding can point at the words that support it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from voce.models.bundle import VoceBundle
from voce.models.caches import LRUCache
from voce.models.chat import ChatTurn, classify_roles, detect_signals, parse_transcript, render_turns
from voce.models.encoders.base import Encoder, SpanEncoder, TokenCounter, approximate_token_counts
from voce.models.heads import F32, Lexical
from voce.models.labels import SENTIMENT_LABELS, MixedRule, fold_three_way
from voce.models.language import LanguageDetector
from voce.models.segment import Span, split_sentences, window_spans
from voce.models.taxonomy import Taxonomy, TaxonomySection
from voce.models.touchpoints import (
    DocUnits,
    ExclusiveChooser,
    SectionScores,
    TouchpointLinker,
    pick_evidence,
    softmax,
)
from voce.models.types import (
    ChatResult,
    Detractor,
    DocumentError,
    DocumentInput,
    DocumentResult,
    EffortSignalResult,
    Evidence,
    SentenceResult,
    Sentiment,
    SentimentScores,
    TopicResult,
    TouchpointResult,
    TurnResult,
)
from voce.models.zeroshot import ZeroShotScorer

SUPPORTED_LANGUAGES = ("it", "en")


@dataclass(frozen=True)
class AnalyzerConfig:
    """Behaviour knobs of the pipeline (not model weights)."""

    max_chars: int = 5120  # longer documents are rejected per document, never truncated silently
    # tokens of one document the encoder reads; a document with more is cut there, with a warning (emoji or
    # combining marks make ~1 token per character, ordinary text ~0.25).  None: max_chars // 2, which ordinary
    # Italian or English text never reaches (the densest real texts measured: 0.55 tokens per character, in tweets)
    max_tokens: int | None = None
    doc_window_chars: int = 1500  # document-level heads read sentence windows of at most this size
    channel_prior_logit: float = 1.5  # log-odds added to the touchpoint named by the request's channel
    # a clear positive and a clear negative sentence make a text mixed (see labels.MixedRule); None: the bundle's
    # calibrated value (``decisions.mixed``), else 0.6
    mixed_sentence_threshold: float | None = None
    max_evidence: int = 3
    default_language: str = "en"
    # how sentence (and chat turn) vectors are made: "in_context" pools each sentence's token states out of its
    # comment's own pass, one encoder pass per comment ("late chunking"; an encoder without token spans falls back
    # to "separate"); "separate" encodes each sentence again on its own.  Measured on the dev sets (voce eval,
    # same bundle): every metric equal or within its bootstrap interval except 4-way sentiment macro-F1, which
    # rose from 0.669 to 0.722 (fewer comments called mixed), at half the encoder work for multi-sentence comments
    sentence_vectors: Literal["separate", "in_context"] = "in_context"
    # repeated short texts ("ok", "nulla", "grazie", "10"): vectors of texts of at most repeat_max_chars are kept
    # for the last repeat_cache texts and not encoded again (0: off).  Vectors only: every head still runs.
    repeat_cache: int = 4096
    repeat_max_chars: int = 200

    def token_limit(self) -> int:
        """Tokens of one document the encoder reads (see ``max_tokens``)."""
        return self.max_tokens if self.max_tokens is not None else max(self.max_chars // 2, 16)


@dataclass
class _Prepared:
    """One document after parsing, before encoding."""

    doc: DocumentInput
    text: str
    language: str
    warnings: list[str]
    sentences: list[Span]  # analysed sentences (customer sentences for chats), offsets into ``text``
    windows: list[str]  # document-level text windows
    window_weights: list[float]
    turns: list[ChatTurn] = field(default_factory=list)
    rendered: bool = False  # text was built from ``turns``
    rows: dict[str, int] = field(default_factory=dict)  # window / sentence / turn text -> row of the unit matrix

    def pieces(self) -> list[str]:
        """Sentence and customer-turn texts, the units besides the windows (first occurrence order)."""
        out = [s.text for s in self.sentences]
        out += [t.text.strip() for t in self.turns if t.role == "customer" and t.text.strip()]
        return list(dict.fromkeys(out))


@dataclass
class _Scored:
    """Every head's scores for every unit of a batch (rows of ``emb``; each document's ``rows`` point into it)."""

    emb: F32
    lex: Lexical | None
    centred: F32
    sentiment: F32
    detractor: F32
    topics: tuple[list[str], F32, F32, F32, list[bool]] | None  # None: the topic section is exclusive
    touchpoints: SectionScores
    exclusive: dict[str, list[F32]]
    channel_map: dict[str, str]


class Analyzer:
    """Runs language detection, encoding and every head over a batch of documents."""

    def __init__(
        self,
        encoder: Encoder,
        bundle: VoceBundle,
        language_detector: LanguageDetector,
        *,
        taxonomy: Taxonomy | None = None,
        config: AnalyzerConfig | None = None,
        base_encoder: Callable[[], Encoder] | None = None,
    ) -> None:
        if encoder.dim != bundle.dim:
            raise ValueError(f"encoder {encoder.name} gives {encoder.dim}-d vectors, bundle expects {bundle.dim}-d")
        self.encoder = encoder
        self.bundle = bundle
        self.language_detector = language_detector
        # a bundle trained on a custom taxonomy carries it: its learned heads belong to that taxonomy
        base = bundle.taxonomy()
        self.taxonomy = taxonomy or base
        self.config = config or AnalyzerConfig()
        self.zero_shot = ZeroShotScorer(encoder, bundle.center, bundle.zero_shot)
        # the encoder without the fine-tuned adapter, loaded on first use (exclusive custom sections only)
        self.base_encoder = base_encoder or (lambda: encoder)
        self.touchpoint_linker = TouchpointLinker(
            bundle, self.zero_shot, channel_prior_logit=self.config.channel_prior_logit, max_evidence=self.config.max_evidence
        )
        self.exclusive = ExclusiveChooser(bundle, encoder, self.base_encoder)
        self._repeats: LRUCache[tuple[str, tuple[tuple[int, int], ...]], tuple[F32, F32]] | None = (
            LRUCache(self.config.repeat_cache) if self.config.repeat_cache > 0 else None
        )
        self._learned_topics = set(bundle.topics.labels)
        rule = MixedRule.from_config(bundle.decisions.get("mixed"))
        if self.config.mixed_sentence_threshold is not None:
            rule = replace(rule, sentence_threshold=self.config.mixed_sentence_threshold)
        self.mixed_rule = rule
        # topics: report thresholds fitted on annotated real texts, applied to zero-shot entries and, outside the
        # domains the learned heads were trained on (a document vector far from every domain centroid), to learned
        # ones: a weak signal on a domain a head never saw reports nothing (``decisions.topics``; {}: the heads' own)
        topic_rule = bundle.decisions.get("topics") or {}
        self._report_thresholds = {k: float(v) for k, v in (topic_rule.get("report_thresholds") or {}).items()}
        centroids = topic_rule.get("domain_centroids")
        self._domain_centroids = np.asarray(centroids, np.float32) if centroids else None
        self._domain_min_similarity = float(topic_rule.get("domain_min_similarity", 1.0))
        self._default_topics_fp = base.topics.fingerprint()
        # per-topic thresholds a user chose (`voce eval --data F --save-thresholds`): they replace every other
        # reporting threshold of that topic
        self._chosen_thresholds = {k: float(v) for k, v in (bundle.decisions.get("topic_thresholds") or {}).items()}

    # ------------------------------------------------------------------ public
    def with_config(self, config: AnalyzerConfig) -> Analyzer:
        """The same models and caches (taxonomy prototypes are encoded once) with other pipeline knobs."""
        other = Analyzer(
            self.encoder, self.bundle, self.language_detector, taxonomy=self.taxonomy, config=config,
            base_encoder=self.base_encoder,
        )
        other.zero_shot = self.zero_shot
        other.touchpoint_linker.zero_shot = self.zero_shot
        if (config.repeat_cache, config.sentence_vectors) == (self.config.repeat_cache, self.config.sentence_vectors):
            other._repeats = self._repeats
        other.exclusive = self.exclusive
        return other

    def token_counts(self, texts: list[str]) -> list[int]:
        """Tokens the encoder makes of each text: its tokenizer's count, or an estimate for an encoder without one."""
        if isinstance(self.encoder, TokenCounter):
            return self.encoder.token_counts(texts)
        return approximate_token_counts(texts)

    def document_tokens(self, docs: list[DocumentInput]) -> list[int]:
        """Tokens of each document the encoder will read (after the cut at the token limit): what a request costs,
        known before any encoding (a document refused for its length counts 0)."""
        texts = [_document_text(d) for d in docs]
        limit = self.config.token_limit()
        counts = self.token_counts([t if len(t) <= self.config.max_chars else "" for t in texts])
        return [min(n, limit) for n in counts]

    def analyze(
        self, docs: list[DocumentInput], taxonomy: Taxonomy | None = None
    ) -> tuple[list[DocumentResult], list[DocumentError]]:
        """Analyse a batch; documents that cannot be analysed become errors, the rest results."""
        results, errors, _ = self.analyze_with_embeddings(docs, taxonomy)
        return results, errors

    def analyze_with_embeddings(
        self, docs: list[DocumentInput], taxonomy: Taxonomy | None = None
    ) -> tuple[list[DocumentResult], list[DocumentError], F32]:
        """Like :meth:`analyze`, plus one L2-normalised document vector per result (row-aligned).

        The vector is the length-weighted mean of the document's window embeddings
        — the same pass that fed every head — so topic discovery on a batch needs
        no second encoder pass.
        """
        tax = taxonomy or self.taxonomy
        prepared: list[_Prepared] = []
        errors: list[DocumentError] = []
        for d in docs:
            p = self._prepare(d)
            if isinstance(p, DocumentError):
                errors.append(p)
            else:
                prepared.append(p)
        if not prepared:
            return [], errors, np.zeros((0, self.encoder.dim), np.float32)
        batch = self._score_units(prepared, tax)
        results = []
        doc_vecs = np.zeros((len(prepared), batch.emb.shape[1]), np.float32)
        for row, p in enumerate(prepared):
            result, doc_vecs[row] = self._document(row, p, batch, tax)
            results.append(result)
        return results, errors, doc_vecs

    def _score_units(self, prepared: list[_Prepared], tax: Taxonomy) -> _Scored:
        """Encode the batch's units (one call) and run every head over the matrix."""
        if self.config.sentence_vectors == "in_context" and isinstance(self.encoder, SpanEncoder):
            texts, emb = self._encode_in_context(prepared)
        else:
            texts, emb = self._encode_separately(prepared)
        lex = self.bundle.lexical_features(texts)
        centred = self.zero_shot.centre(emb)
        return _Scored(
            emb=emb, lex=lex, centred=centred,
            sentiment=self.bundle.sentiment.predict_proba(emb, lex),
            detractor=self.bundle.detractor.predict_proba(emb, lex)[:, 0],
            topics=self._topic_scores(emb, lex, centred, tax.topics) if tax.topics.mode == "multi" else None,
            touchpoints=self.touchpoint_linker.unit_scores(emb, lex, centred, tax.touchpoints),
            exclusive=self._exclusive_scores(prepared, texts, emb, lex, centred, tax),
            channel_map=tax.channel_map(),
        )  # fmt: skip

    def _encode_separately(self, prepared: list[_Prepared]) -> tuple[list[str], F32]:
        """Every distinct window, sentence and turn text encoded once on its own (shared across documents)."""
        units: dict[str, int] = {}
        for p in prepared:
            for t in [*p.windows, *p.pieces()]:
                p.rows[t] = units.setdefault(t, len(units))
        texts = list(units)
        docs, _ = self._remembered(texts, [[] for _ in texts], lambda todo, _spans: (self.encoder.encode(todo), []))
        return texts, docs

    def _encode_in_context(self, prepared: list[_Prepared]) -> tuple[list[str], F32]:
        """One encoder pass per distinct window; each sentence's and turn's vector pooled from that pass.

        A piece found in no window (cannot happen for text the pipeline cut itself; kept as a guard) is encoded
        on its own.
        """
        assert isinstance(self.encoder, SpanEncoder)
        windows: dict[str, list[tuple[str, int, int]]] = {}
        loose: list[tuple[_Prepared, str]] = []
        for p in prepared:
            for w in p.windows:
                windows.setdefault(w, [])
            for piece in p.pieces():
                found = next(((w, pos) for w in p.windows if (pos := w.find(piece)) >= 0), None)
                if found is None:
                    loose.append((p, piece))
                    continue
                spans = windows[found[0]]
                if all(t != piece for t, _, _ in spans):
                    spans.append((piece, found[1], len(piece)))
        names = list(windows)
        docs, span_vecs = self._remembered(
            names, [[(a, n) for _, a, n in windows[w]] for w in names], self.encoder.encode_spans
        )
        texts, parts = list(names), [docs]
        where: dict[tuple[str, str], int] = {}
        for w, vecs in zip(names, span_vecs, strict=True):
            for (piece, _, _), _v in zip(windows[w], vecs, strict=True):
                where[(w, piece)] = len(texts)
                texts.append(piece)
            parts.append(vecs)
        if loose:
            parts.append(self.encoder.encode([piece for _, piece in loose]))
        at = {w: k for k, w in enumerate(names)}
        for p in prepared:
            for w in p.windows:
                p.rows[w] = at[w]
        for k, (p, piece) in enumerate(loose):
            p.rows[piece] = len(texts) + k
        texts += [piece for _, piece in loose]
        for p in prepared:
            for piece in p.pieces():
                if piece not in p.rows:
                    p.rows[piece] = next(where[(w, piece)] for w in p.windows if (w, piece) in where)
        return texts, np.concatenate(parts).astype(np.float32)

    def _remembered(
        self,
        texts: list[str],
        spans: list[list[tuple[int, int]]],
        encode: Callable[[list[str], list[list[tuple[int, int]]]], tuple[F32, list[F32]]],
    ) -> tuple[F32, list[F32]]:
        """``encode(texts, spans)``, skipping the short texts whose vectors were computed lately."""
        memo = self._repeats
        keys = [(t, tuple(s)) for t, s in zip(texts, spans, strict=True)]
        found = [memo.get(k) if memo is not None and len(k[0]) <= self.config.repeat_max_chars else None for k in keys]
        todo = [i for i, f in enumerate(found) if f is None]
        if todo:
            docs, parts = encode([texts[i] for i in todo], [spans[i] for i in todo])
            for k, i in enumerate(todo):
                found[i] = (docs[k], parts[k] if parts else np.zeros((0, docs.shape[1]), np.float32))
                if memo is not None and len(texts[i]) <= self.config.repeat_max_chars:
                    memo.put(keys[i], found[i])  # type: ignore[arg-type]
        pairs = [f for f in found if f is not None]
        dim = self.encoder.dim
        return np.stack([d for d, _ in pairs]) if pairs else np.zeros((0, dim), np.float32), [s for _, s in pairs]

    def _document(self, row: int, p: _Prepared, b: _Scored, tax: Taxonomy) -> tuple[DocumentResult, F32]:
        """One document's result (and its vector) from the batch's unit scores."""
        win_idx = [p.rows[t] for t in p.windows]
        sen_idx = [p.rows[s.text] for s in p.sentences]
        weights = np.asarray(p.window_weights, np.float32)
        weights /= weights.sum()
        vec = (b.emb[win_idx] * weights[:, None]).sum(axis=0)
        vec = vec / max(float(np.linalg.norm(vec)), 1e-6)
        sent_p = b.sentiment
        sentences = [
            SentenceResult(offset=s.offset, length=s.length, text=s.text, sentiment=_sentiment(sent_p[i]))
            for s, i in zip(p.sentences, sen_idx, strict=True)
        ]
        doc_sent = self._doc_sentiment((sent_p[win_idx] * weights[:, None]).sum(axis=0), [sent_p[i] for i in sen_idx])
        units_of = DocUnits(win_idx, weights, sen_idx, p.sentences)
        channel = self._channel(p, b.channel_map)
        if b.topics is None:
            topics = self._exclusive_topic(b.exclusive["topics"][row], tax.topics, units_of, b.touchpoints, sent_p, b.centred)
        else:
            topics = self._topics(p, *b.topics, win_idx + sen_idx, sen_idx, sent_p, b.emb, b.lex, self.in_domain(vec))
        if tax.touchpoints.mode == "single":
            touchpoints = self._exclusive_touchpoint(b.exclusive["touchpoints"][row], b.touchpoints, units_of, channel)
        else:
            touchpoints = self.touchpoint_linker.link(b.touchpoints, units_of, channel)
        detractor = float((b.detractor[win_idx] * weights).sum())
        result = DocumentResult(
            id=p.doc.id, language=p.language, warnings=p.warnings, sentiment=doc_sent, sentences=sentences,
            topics=topics, touchpoints=touchpoints,
            detractor=Detractor(probability=round(min(max(detractor, 0.0), 1.0), 6)), channel=channel,
            chat=self._chat_result(p, sent_p) if p.turns else None, text=p.text if p.rendered else None,
        )  # fmt: skip
        return result, vec.astype(np.float32)

    def warm_up(self) -> None:
        """Run every stage once so the first request does not pay for lazy loading."""
        self.analyze(
            [
                DocumentInput(id="warmup-it", text="Il servizio è stato ottimo, grazie.", language="it"),
                DocumentInput(id="warmup-en", text="Delivery was late. Support never answered.", channel="web"),
            ]
        )
        self.language_detector.detect("Buongiorno, vorrei un rimborso per il mio ordine.")

    # --------------------------------------------------------------- prepare
    def _prepare(self, d: DocumentInput) -> _Prepared | DocumentError:
        warnings: list[str] = []
        turns: list[ChatTurn] = []
        rendered = False
        if d.cleaned_fields:
            warnings.append(
                "invalid characters (NUL, lone surrogates or non-characters) were replaced by U+FFFD in "
                + ", ".join(d.cleaned_fields)
            )
        if d.turns:
            text, turns = render_turns([(t.speaker, t.text) for t in d.turns])
            rendered = True
            if d.text and d.text.strip():
                warnings.append("both 'text' and 'turns' were given; 'turns' was analysed")
        else:
            text = d.text or ""
        if not text.strip():
            return _error(d.id, "EmptyText", "document text is empty")
        if len(text) > self.config.max_chars:
            return _error(
                d.id, "TextTooLong", f"document has {len(text)} characters; the limit is {self.config.max_chars}"
            )
        text, turns = self._within_token_limit(text, turns, warnings)
        kind = "chat" if d.turns else d.kind
        if kind == "chat":
            if not turns:
                turns = parse_transcript(text)
            turns = classify_roles(turns)
            customer = [t for t in turns if t.role == "customer" and t.text.strip()]
            if not turns:
                warnings.append("no 'Speaker: message' lines found; the transcript was analysed as one comment")
                kind = "comment"
            elif not customer:
                warnings.append("no customer turn recognised; all non-agent turns were analysed")
                customer = [t for t in turns if t.role not in ("agent", "bot", "system")] or turns
        sentences: list[Span] = []
        if kind == "chat":
            for t in customer:
                for s in split_sentences(t.text):
                    sentences.append(Span(offset=t.offset + s.offset, length=s.length, text=s.text))
            analysed_text = "\n".join(t.text.strip() for t in customer)
        else:
            sentences = split_sentences(text)
            analysed_text = text.strip()
        if not sentences:
            return _error(d.id, "EmptyText", "document has no analysable text")

        language = self._language(d, analysed_text, warnings)
        if len(analysed_text) <= self.config.doc_window_chars:
            windows, weights = [analysed_text], [1.0]
        else:  # long texts: sentence windows, never truncation
            spans = split_sentences(analysed_text)
            windows = [w.text for w in window_spans(spans, self.config.doc_window_chars, source=analysed_text)]
            weights = [float(len(w)) for w in windows]
        p = _Prepared(d, text, language, warnings, sentences, windows, weights, turns if kind == "chat" else [])
        p.rendered = rendered
        return p

    def _within_token_limit(
        self, text: str, turns: list[ChatTurn], warnings: list[str]
    ) -> tuple[str, list[ChatTurn]]:
        """``text`` (and its turns) cut where the encoder would pass the token limit, with a warning; unchanged
        when it fits, which ordinary text of at most ``max_chars`` characters always does."""
        limit = self.config.token_limit()
        total = self.token_counts([text])[0]
        if total <= limit:
            return text, turns
        lo, hi = 0, len(text)  # the longest prefix within the limit (counts grow with the prefix)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.token_counts([text[:mid]])[0] <= limit:
                lo = mid
            else:
                hi = mid - 1
        space = max(text.rfind(ch, max(lo - 200, 0), lo) for ch in " \n\t")
        keep = len(text[: space if space > 0 else lo].rstrip())
        warnings.append(
            f"the document was cut to its first {limit} tokens ({total} in all: emoji, symbols or combining marks "
            f"make many); characters from {keep} on were not analysed"
        )
        kept = [
            ChatTurn(t.speaker, t.text[: keep - t.offset], t.role, t.offset, min(t.length, keep - t.offset))
            for t in turns if t.offset < keep
        ]
        return text[:keep], kept

    def _language(self, d: DocumentInput, text: str, warnings: list[str]) -> str:
        if d.language:
            lang = d.language.strip().lower()
        else:
            guess = self.language_detector.detect(text)
            lang = guess.code
            if not guess.reliable:
                warnings.append(f"language could not be detected reliably; assumed '{lang}'")
        if lang not in SUPPORTED_LANGUAGES:
            warnings.append(f"language '{lang}' is not Italian or English; results are best-effort")
        return lang

    # ---------------------------------------------------------------- scoring
    def _topic_scores(
        self, emb: F32, lex: Lexical | None, centred: F32, section: TaxonomySection
    ) -> tuple[list[str], F32, F32, F32, list[bool]]:
        """Per-unit topic probabilities: learned (where a head exists) and zero-shot, plus thresholds.

        Learned heads answer for the default taxonomy's labelled topics; every other
        entry (and every entry of a custom taxonomy) is scored zero-shot.  The
        zero-shot matrix is kept for learned topics too: a head trained on one
        language only gets zero-shot help on documents in the other (see ``_topics``).
        """
        ids = section.ids
        zero_shot = self.zero_shot.probability(centred, section)
        scores = zero_shot.copy()
        thresholds = np.full(len(ids), 0.5, np.float32)
        learned = [False] * len(ids)
        if section.fingerprint() == self._default_topics_fp:
            head = self.bundle.topics
            probs = head.predict_proba(emb, lex)
            for j, tid in enumerate(ids):
                if tid in self._learned_topics:
                    k = head.labels.index(tid)
                    scores[:, j] = probs[:, k]
                    thresholds[j] = head.thresholds[k] if head.thresholds is not None else 0.5
                    learned[j] = True
        return ids, scores, zero_shot, thresholds, learned

    def _topics(
        self,
        p: _Prepared,
        ids: list[str],
        scores: F32,
        zero_shot: F32,
        thresholds: F32,
        learned: list[bool],
        all_idx: list[int],
        sen_idx: list[int],
        sent_p: F32,
        emb: F32,
        lex: Lexical | None,
        in_domain: bool = True,
    ) -> list[TopicResult]:
        out = []
        default_section = any(learned)  # learned heads answer only for the default taxonomy's topics
        for j, tid in enumerate(ids):
            col = scores[:, j]
            langs = self.bundle.topic_languages.get(tid)
            if learned[j] and langs and p.language not in langs:
                # the head never saw this language: let taxonomy similarity count too, on the head's scale
                col = np.maximum(col, _add_log_odds(zero_shot[:, j], _logit(float(thresholds[j]))))
            doc_score = float(col[all_idx].max())
            report_at = float(thresholds[j])
            if default_section and tid in self._report_thresholds and not (learned[j] and in_domain):
                report_at = max(report_at, self._report_thresholds[tid])
            report_at = self._chosen_thresholds.get(tid, report_at)
            if doc_score < report_at:
                continue
            ev = self._evidence(col[sen_idx], p.sentences, float(thresholds[j]))
            ev_idx = [sen_idx[k] for k in ev]
            polarity_head = self.bundle.topic_polarity.get(tid) if learned[j] else None
            if polarity_head is not None:
                probs = polarity_head.predict_proba(emb[ev_idx], lex[ev_idx] if lex is not None else None)
            else:
                probs = sent_p[ev_idx]
            out.append(
                TopicResult(
                    id=tid,
                    score=round(doc_score, 6),
                    sentiment=_sentiment(probs.mean(axis=0)),
                    evidence=[Evidence(offset=p.sentences[k].offset, length=p.sentences[k].length) for k in ev],
                    source="learned" if learned[j] else "zero_shot",
                )
            )
        out.sort(key=lambda t: -t.score)
        return out

    def in_domain(self, vec: F32) -> bool:
        """Whether a document vector lies in a domain the learned topic heads were trained on (True when the bundle
        has no domain centroids): its centred cosine to the nearest domain centroid reaches the calibrated minimum."""
        if self._domain_centroids is None:
            return True
        sims = self.zero_shot.centre(np.asarray(vec, np.float32)[None, :]) @ self._domain_centroids.T
        return bool(sims.max() >= self._domain_min_similarity)

    def _channel(self, p: _Prepared, channel_map: dict[str, str]) -> str | None:
        """The request's channel as a touchpoint id of the section (None, with a warning, when it matches none)."""
        if not p.doc.channel or not p.doc.channel.strip():
            return None
        found = channel_map.get(p.doc.channel.strip().lower())
        if found is None:
            p.warnings.append(f"channel '{p.doc.channel}' matches no touchpoint; recorded as unknown")
        return found

    # ------------------------------------------------------------ exclusive
    def _exclusive_scores(
        self, prepared: list[_Prepared], texts: list[str], emb: F32, lex: Lexical | None, centred: F32, tax: Taxonomy
    ) -> dict[str, list[F32]]:
        """Per document, the confidences of each exclusive (mode: single) section: window-weighted over windows."""
        out: dict[str, list[F32]] = {}
        for name, section in (("topics", tax.topics), ("touchpoints", tax.touchpoints)):
            if section.mode != "single":
                continue
            windows = sorted({p.rows[t] for p in prepared for t in p.windows})
            if self.exclusive.available:
                concepts = self.exclusive.concepts(emb[windows], lex[windows] if lex is not None else None)
                probs = self.exclusive.probabilities([texts[i] for i in windows], concepts, section)
            else:  # a bundle without the calibration: zero-shot on this encoder, normalised over the entries
                z = self.zero_shot.probability(centred[windows], section)
                probs = softmax(np.log(z / (1 - z + 1e-7) + 1e-7))
            at = {u: k for k, u in enumerate(windows)}
            docs = []
            for p in prepared:
                w = np.asarray(p.window_weights, np.float32)
                docs.append((probs[[at[p.rows[t]] for t in p.windows]] * (w / w.sum())[:, None]).sum(axis=0))
            out[name] = docs
        return out

    def _choice(self, probs: F32, section: TaxonomySection, channel: str | None) -> tuple[int, float, bool]:
        """Best entry, its confidence, and whether the channel decided it (it may only settle a close call)."""
        best = int(np.argmax(probs))
        if channel in section.ids:
            j = section.ids.index(channel)
            boosted = probs.copy()
            if probs[j] >= 0.5 * probs[best]:
                boosted[j] *= float(np.exp(self.config.channel_prior_logit))
                boosted /= boosted.sum()
                if int(np.argmax(boosted)) != best:
                    return int(np.argmax(boosted)), float(boosted.max()), True
                return best, float(boosted[best]), False
        return best, float(probs[best]), False

    def _uncertain(self, confidence: float) -> bool:
        cal = self.bundle.exclusive
        return confidence < (cal.uncertain_below if cal is not None else 0.5)

    def _exclusive_touchpoint(
        self, probs: F32, scores: SectionScores, doc: DocUnits, channel: str | None
    ) -> list[TouchpointResult]:
        section = scores.section
        j, conf, by_channel = self._choice(probs, section, channel)
        ev = pick_evidence(scores.presence[doc.sentences, j], doc.spans, 1.1, 1)  # the best-matching sentence
        return [TouchpointResult(
            id=section.ids[j], score=round(conf, 6), primary=True, source="zero_shot", from_channel=by_channel,
            uncertain=self._uncertain(conf),
            evidence=[Evidence(offset=doc.spans[k].offset, length=doc.spans[k].length) for k in ev],
        )]  # fmt: skip

    def _exclusive_topic(
        self, probs: F32, section: TaxonomySection, doc: DocUnits, tp: SectionScores, sent_p: F32, centred: F32
    ) -> list[TopicResult]:
        j, conf, _ = self._choice(probs, section, None)
        sims = self.zero_shot.probability(centred[doc.sentences], section)[:, j]
        ev = pick_evidence(sims, doc.spans, 1.1, 1)
        probs4 = sent_p[[doc.sentences[k] for k in ev]].mean(axis=0)
        return [TopicResult(
            id=section.ids[j], score=round(conf, 6), sentiment=_sentiment(probs4), source="zero_shot",
            uncertain=self._uncertain(conf),
            evidence=[Evidence(offset=doc.spans[k].offset, length=doc.spans[k].length) for k in ev],
        )]  # fmt: skip

    def _evidence(self, sentence_scores: F32, sentences: list[Span], threshold: float) -> list[int]:
        order = np.argsort(-sentence_scores, kind="stable")
        picked = [int(k) for k in order if sentence_scores[k] >= threshold][: self.config.max_evidence]
        if not picked and len(order):
            picked = [int(order[0])]
        return sorted(picked, key=lambda k: sentences[k].offset)

    def _doc_sentiment(self, doc_probs: F32, sentence_probs: list[F32]) -> Sentiment:
        s = _sentiment(doc_probs)
        label = self.mixed_rule.label(doc_probs, sentence_probs)
        return s if label == s.label else Sentiment(label=label, scores=s.scores)

    def _chat_result(self, p: _Prepared, sent_p: F32) -> ChatResult:
        turns = []
        customer_labels = []
        for i, t in enumerate(p.turns):
            sent = None
            if t.role == "customer" and t.text.strip():
                sent = _sentiment(sent_p[p.rows[t.text.strip()]])
                customer_labels.append(sent.label)
            turns.append(
                TurnResult(index=i, speaker=t.speaker, role=t.role, offset=t.offset, length=t.length, sentiment=sent)
            )
        signals = detect_signals(p.turns)
        return ChatResult(
            turns=turns,
            trajectory={
                "first": customer_labels[0] if customer_labels else None,
                "last": customer_labels[-1] if customer_labels else None,
            },
            escalation_requested=signals.escalation_requested,
            escalation_evidence=[Evidence(offset=o, length=n) for o, n in signals.escalation_evidence],
            effort_signals=[
                EffortSignalResult(kind=e.kind, evidence=Evidence(offset=e.offset, length=e.length))
                for e in signals.effort_signals
            ],
        )


# ------------------------------------------------------------------ helpers
def _document_text(d: DocumentInput) -> str:
    """The text a document is analysed as: its turns rendered as ``Speaker: message`` lines, else its text."""
    if d.turns:
        return render_turns([(t.speaker, t.text) for t in d.turns])[0]
    return d.text or ""


def _error(doc_id: str, code: str, message: str) -> DocumentError:
    return DocumentError(id=doc_id, error={"code": code, "message": message})


def _sentiment(p4: F32) -> Sentiment:
    pos, neu, neg = (float(v) for v in fold_three_way(p4))
    pos, neu = round(pos, 6), round(neu, 6)
    neg = round(max(0.0, 1.0 - pos - neu), 6)
    label = SENTIMENT_LABELS[int(np.argmax(p4))]
    return Sentiment(label=label, scores=SentimentScores(positive=pos, neutral=neu, negative=neg))  # type: ignore[arg-type]


def _logit(p: float) -> float:
    q = min(max(p, 1e-6), 1 - 1e-6)
    return float(np.log(q / (1 - q)))


def _add_log_odds(p: F32, delta: float) -> F32:
    """Bayesian prior update: add ``delta`` to the log-odds of each probability."""
    q = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    z = np.log(q / (1 - q)) + delta
    out: F32 = (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
    return out
