"""Chat transcripts: turns, who is speaking, and customer-effort / escalation signals.

A chat arrives either as text (``parse_transcript``) or as a list of turns
(``render_turns``); either way every :class:`ChatTurn` and every piece of evidence
carries ``offset``/``length`` into one document text, so results can be highlighted
on exactly what the caller sent.

Role heuristics (:func:`classify_roles`), applied in order and only to turns whose
role is still ``"unknown"`` (a role the caller gave is kept):

1. the speaker's name: IT/EN words for bots, systems, agents and customers
   ("Assistente virtuale" is a bot, "Customer Service" an agent, "Cliente" a customer);
2. what the speaker writes: agent cues ("sono Marco del servizio clienti",
   "how can I help", "grazie per averci contattato") against customer cues
   ("il mio ordine", "I ordered"), counted over all of the speaker's turns;
3. a chat has one customer: once a customer is known every other unnamed human is
   an agent; otherwise the first unnamed human to speak is the customer (chats are
   customer-initiated), and the others are agents.  With exactly two people this
   means "if one is known, the other is the opposite".

Signals (:func:`detect_signals`) come from compiled Italian + English patterns.
Customer turns (and turns whose role stayed unknown, e.g. a pasted complaint)
evidence escalation requests and every effort kind; agent turns evidence transfers
("ti passo un collega", "I'll transfer you").  The patterns favour precision:
a customer who only describes their problem triggers nothing.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, NamedTuple

Role = Literal["customer", "agent", "bot", "system", "unknown"]
EffortKind = Literal["repeat_contact", "transfer", "long_wait", "repeat_information", "channel_switch", "unresolved"]
EFFORT_KINDS: tuple[EffortKind, ...] = (
    "repeat_contact", "transfer", "long_wait", "repeat_information", "channel_switch", "unresolved",
)


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """One message; ``text == document[offset:offset + length]``."""

    speaker: str
    text: str
    role: Role = "unknown"
    offset: int = 0
    length: int = 0


class EvidenceSpan(NamedTuple):
    """Where a signal was found in the document text."""

    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class EffortSignal:
    """One place where the customer had to work harder than they should have."""

    kind: EffortKind
    offset: int
    length: int
    text: str
    turn_index: int


@dataclass(frozen=True, slots=True)
class ChatSignals:
    escalation_requested: bool = False
    escalation_evidence: list[EvidenceSpan] = field(default_factory=list)
    effort_signals: list[EffortSignal] = field(default_factory=list)


# --------------------------------------------------------------------- parsing
_TIME = r"\d{1,2}[:.]\d{2}(?:[:.]\d{2})?(?:\s?[AaPp]\.?[Mm]\.?)?"
_DATE = r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}"
# The blank runs are possessive (``*+``): what follows each one cannot start with a blank, so giving blanks back
# never finds a match, and without it a line of thousands of tabs took seconds (the two runs traded blanks).
_HEADER_RE = re.compile(
    r"[ \t]*+(?:"
    rf"\[(?P<ts_bracket>[^\]\n]{{1,40}})\]"  # [10:32] / [2024-03-01 10:32:05]
    rf"|(?P<ts_plain>(?:{_DATE},?[ \t]+)?{_TIME})"  # 10:32 / 01/03/24, 10:32
    r")?[ \t]*+(?:[-–—|][ \t]*+)?"
    r"(?P<speaker>[^\W\d_][^:\n]{0,60}?)"
    rf"[ \t]*+(?:\((?P<ts_paren>{_TIME})\)|\[(?P<ts_after>{_TIME})\])?"  # Speaker (10:32):
    r"[ \t]*+:(?=[ \t]|$)"  # the colon must be followed by a space or end the line (not "https://")
)
_BAD_SPEAKER_CHARS = frozenset(",;!?\"“”«»")


def _header(text: str, start: int, end: int) -> tuple[str, int, bool] | None:
    """``(speaker, message_start, has_timestamp)`` when the line opens a turn."""
    m = _HEADER_RE.match(text, start, end)
    if not m:
        return None
    speaker = m.group("speaker").strip()
    if len(speaker.split()) > 4 or _BAD_SPEAKER_CHARS.intersection(speaker):
        return None  # "Nota bene, il pacco: ..." is a sentence, not a speaker
    stamped = any(m.group(g) for g in ("ts_bracket", "ts_plain", "ts_paren", "ts_after"))
    return speaker, m.end(), stamped


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def parse_transcript(text: str) -> list[ChatTurn]:
    """Split a pasted transcript into turns (roles left ``"unknown"``; see :func:`classify_roles`).

    Supported line shapes: ``Speaker: msg``, ``[10:32] Speaker: msg``,
    ``10:32 - Speaker: msg``, ``01/03/24, 10:32 - Speaker: msg``, ``Speaker (10:32): msg``.
    Lines without a speaker continue the previous turn; lines before the first turn
    (a header, a subject) are not part of any turn.  When at least two turns carry a
    timestamp, only timestamped lines open turns, so a continuation line such as
    "Nota: il pacco è arrivato aperto" stays with its turn.  No speaker line at all
    returns ``[]``.
    """
    lines: list[tuple[int, int, tuple[str, int, bool] | None]] = []
    pos = 0
    for raw in text.splitlines(keepends=True):
        end = pos + len(raw.rstrip("\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029"))
        lines.append((pos, end, _header(text, pos, end)))
        pos += len(raw)
    stamped_only = sum(1 for *_, h in lines if h and h[2]) >= 2

    turns: list[ChatTurn] = []
    speaker: str | None = None
    msg_start = msg_end = 0
    for start, end, head in lines + [(len(text), len(text), ("", len(text), True))]:  # sentinel closes the last
        if head and (head[2] or not stamped_only):
            if speaker is not None:
                s, e = _trim(text, msg_start, msg_end)
                turns.append(ChatTurn(speaker, text[s:e], "unknown", s, e - s))
            speaker, msg_start, msg_end = head[0], head[1], end
        elif speaker is not None and text[start:end].strip():
            msg_end = end
    return turns


def render_turns(turns: Iterable[tuple[str, str] | ChatTurn]) -> tuple[str, list[ChatTurn]]:
    """Join structured turns into one document ``"Speaker: text"`` per line, with offsets into it.

    A :class:`ChatTurn` keeps its role; ``(speaker, text)`` pairs start as ``"unknown"``.
    """
    parts: list[str] = []
    out: list[ChatTurn] = []
    pos = 0
    for turn in turns:
        speaker, body, role = (
            (turn.speaker, turn.text, turn.role) if isinstance(turn, ChatTurn) else (turn[0], turn[1], "unknown")
        )
        speaker, body = speaker.strip(), body.strip()
        prefix = f"{speaker}: "
        out.append(ChatTurn(speaker, body, role, pos + len(prefix), len(body)))
        parts.append(prefix + body)
        pos += len(prefix) + len(body) + 1  # "\n"
    return "\n".join(parts), out


# ----------------------------------------------------------------------- roles
def _words(*phrases: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(phrases) + r")\b", re.IGNORECASE)


# checked in this order: "Assistente virtuale" is a bot, "Customer Service" an agent
_NAME_RULES: tuple[tuple[Role, re.Pattern[str]], ...] = (
    ("bot", _words(r"(?:chat)?bot", r"assistente\s+(?:virtuale|digitale)", r"virtual\s+(?:assistant|agent)",
                   r"digital\s+assistant", r"automated", r"auto[- ]?reply", r"risposta\s+automatica")),
    ("system", _words(r"sistema", r"system", r"notifica", r"notification")),
    ("agent", _words(r"servizio\s+clienti", r"assistenza(?:\s+clienti)?", r"customer\s+(?:service|care|support)",
                     r"help\s*desk", r"supporto", r"support", r"operat(?:ore|rice)", r"agent[ei]?", r"assistente",
                     r"consulente", r"rep", r"representative", r"advisor", r"staff", r"specialist[ai]?", r"team")),
    ("customer", _words(r"cliente", r"customer", r"utente", r"user", r"client", r"io", r"me", r"visitatore",
                        r"visitor", r"caller", r"guest", r"ospite")),
)
_AGENT_CUES = re.compile(
    r"\bsono\s+\w+\s*,?\s+(?:del|della|dello|dell'|dal|di|per)\s*(?:l')?"
    r"(?:servizio|assistenza|supporto|customer|team|reparto|ufficio)"
    r"|\b(?:come|in\s+cosa)\s+(?:posso|possiamo)\s+(?:aiutar|esser)"
    r"|\bgrazie\s+per\s+(?:aver(?:ci|mi)?\s+(?:contattat|scritt|atteso)|la\s+(?:sua\s+)?pazienza|l'attesa)"
    r"|\b(?:la|ti)\s+(?:metto|lascio)\s+in\s+attesa"
    r"|\bc'è\s+(?:altro|qualcos'altro)\s+(?:in\s+cui|che)\s+(?:posso|possa)"
    r"|\bhow\s+(?:can|may|could)\s+I\s+(?:help|assist)"
    r"|\bthank(?:s|\s+you)\s+for\s+(?:contacting|reaching\s+out|your\s+patience|holding|waiting|choosing)"
    r"|\bmy\s+name\s+is\s+\w+\s*(?:,|and|from|with)"
    r"|\bI'm\s+\w+\s+from\s+(?:the\s+)?\w+"
    r"|\bis\s+there\s+anything\s+else\s+I\s+can",
    re.IGNORECASE,
)
_CUSTOMER_CUES = re.compile(
    r"\b(?:il\s+mio|la\s+mia|i\s+miei|le\s+mie)\s+(?:ordin|pacc|cont|abbonament|bollett|fattur|cart|rimbors"
    r"|spedizion|prenotazion|vol|line|utenz)"
    r"|\bho\s+(?:ordinato|acquistato|comprato|pagato|prenotato)\b"
    r"|\bvorrei\s+(?:sapere|un\s+rimborso|disdire|annullare|reclamare|segnalare)"
    r"|\bmy\s+(?:order|package|parcel|account|bill|invoice|card|subscription|booking|flight|refund|reservation"
    r"|delivery|contract)\b"
    r"|\bI\s+(?:ordered|bought|paid|purchased|booked)\b"
    r"|\bI\s+(?:want|would\s+like|need)\s+(?:a\s+refund|to\s+cancel|to\s+complain|my\s+money)",
    re.IGNORECASE,
)


def _role_from_name(speaker: str) -> Role:
    for role, pattern in _NAME_RULES:
        if pattern.search(speaker):
            return role
    return "unknown"


def classify_roles(turns: Sequence[ChatTurn]) -> list[ChatTurn]:
    """Fill in roles that are still ``"unknown"`` (heuristics in the module docstring)."""
    roles: dict[str, Role] = {}  # speaker key -> role, in order of first appearance
    cues: dict[str, int] = {}  # speaker key -> agent cues minus customer cues
    for t in turns:
        key = t.speaker.strip().casefold()
        if key not in roles or roles[key] == "unknown":
            roles[key] = t.role if t.role != "unknown" else _role_from_name(t.speaker)
        text = t.text.replace("’", "'")
        cues[key] = cues.get(key, 0) + len(_AGENT_CUES.findall(text)) - len(_CUSTOMER_CUES.findall(text))

    for key, role in roles.items():
        if role == "unknown" and cues[key]:
            roles[key] = "agent" if cues[key] > 0 else "customer"
    has_customer = "customer" in roles.values()
    for key, role in roles.items():
        if role == "unknown":
            roles[key] = "agent" if has_customer else "customer"
            has_customer = True

    return [t if t.role != "unknown" else replace(t, role=roles[t.speaker.strip().casefold()]) for t in turns]


def customer_turns(turns: Sequence[ChatTurn]) -> list[ChatTurn]:
    """The turns whose role is ``"customer"``."""
    return [t for t in turns if t.role == "customer"]


# --------------------------------------------------------------------- signals
def _rx(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{a})" for a in alternatives), re.IGNORECASE)


_E = r"(?:è|é|e')"  # "è" as typed on phones and keyboards without accents
_N_IT = r"(?:\d+|due|tre|quattro|cinque|sei|sette|otto|nove|dieci|venti|mille|più|diverse|varie|molte|tante|numerose)"
_N_EN = r"(?:\d+|two|three|four|five|six|seven|eight|nine|ten|twenty|multiple|several|many|numerous|countless)"
_N_IT_MANY = r"(?:[2-9]|\d{2,}|due|tre|quattro|cinque|sei|sette|otto|nove|dieci|venti|diverse|varie|numerose)"
_N_EN_MANY = r"(?:[2-9]|\d{2,}|two|three|four|five|six|seven|eight|nine|ten|twenty|multiple|several|numerous|countless)"
_ORD_IT = r"(?:seconda|terza|quarta|quinta|sesta|settima|ottava|nona|decima|ennesima|\d+[ªa°]?)"
_ORD_EN = r"(?:second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|umpteenth|nth|\d+(?:st|nd|rd|th))"
_DUR_IT = (r"(?:\d+|un[a']?|mezz'?|due|tre|quattro|cinque|sei|dieci|quindici|venti|trenta|quaranta|cinquanta"
           r"|sessanta|novanta)\s*(?:ore|ora|minuti|min|giorni|settimane|mesi)\b")
_DUR_EN = (r"(?:\d+|an?|one|two|three|four|five|six|ten|fifteen|twenty|thirty|forty(?:-five)?|fifty|sixty|ninety"
           r"|several|many|a\s+few|half\s+an?)[\s-]*(?:hours?|hrs?|minutes?|mins?|days?|weeks?|months?)\b")
_CONTACT_IT = r"(?:chiamat|scritt|contattat|telefonat|segnalat|sollecitat)\w*"
_CONTACT_EN = r"(?:called|contacted|written|wrote|emailed|e-mailed|messaged|rung|phoned|chatted|reached\s+out)"
_CHANNEL_IT = (r"(?:e-?mail|mail|posta\s+elettronica|pec|telefono|whatsapp|facebook|twitter|instagram|social"
               r"|chat|lettera|raccomandata|numero\s+verde|call\s*center)")
_CHANNEL_EN = (r"(?:e-?mail|phone|the\s+phone|twitter|facebook|whatsapp|instagram|social\s+media|chat|live\s+chat"
               r"|dm|letter|the\s+app|the\s+website)")
_MAX_WORDS = r"(?:\S+\s+){0,4}?"

_ESCALATION = _rx(
    # a manager / a human
    r"\b(?:parlare|parlarne|parlarci|passarmi|mi\s+pass(?:i|ate|a)|passatemi|chiamare|contattare|sentire|voglio"
    r"|vorrei|pretendo|esigo|chiedo)\s+(?:(?:con|di|a)\s+)?(?:(?:il|la|lo|un|una|un'|al|alla|col|del|della)\s*)?"
    r"(?:(?:su[oa]|vostr[oa])\s+)?(?:responsabile|superiore|supervisore|supervisor|direttore|direttrice|dirigente"
    r"|manager|capo)\b",
    r"\b(?:parlare|passarmi|mi\s+pass(?:i|ate|a)|passatemi|voglio|vorrei)\s+(?:(?:con|a)\s+)?"
    r"(?:(?:un|una|un'|il|la|al|alla|l')\s*)?(?:operatore|operatrice|persona|essere\s+umano|umano)\b",
    r"\b(?:operatore|operatrice|persona)\s+(?:umano|umana|vero|vera|reale|in\s+carne\s+ed?\s+ossa)\b",
    r"\b(?:speak|talk|speaking|talking)\s+(?:to|with)\s+(?:(?:a|an|the|your|some)\s+)?(?:manager|supervisor|superior"
    r"|boss|someone\s+in\s+charge|human|real\s+person|actual\s+person|live\s+(?:agent|person))\b",
    r"\b(?:want|need|demand|get\s+me|give\s+me|connect\s+me\s+(?:to|with)|transfer\s+me\s+to)\s+"
    r"(?:(?:a|an|the|your)\s+)?(?:manager|supervisor|human|real\s+person|live\s+agent)\b",
    r"\bescalat(?:e|ing)\s+(?:this|it|my\s+(?:complaint|case|issue))\b",
    # a formal complaint
    r"\breclamo\s+(?:formale|ufficiale|scritto)\b",
    r"\b(?:fare|faccio|farò|presentare|presento|presenterò|sporgere|sporgo|sporgerò)\s+(?:un\s+)?reclamo\b",
    r"\b(?:file|lodge|make|filing|lodging)\s+(?:a\s+)?(?:formal\s+)?complaint\b|\bformal\s+complaint\b",
    # cancel / leave
    r"\bdisd(?:ire|ico|irò|ici|etta|ett[oa])\b(?!\s+(?:la|le|il|una)\s+(?:camer|prenotazion|stanz|tavol|appuntament))",
    r"\b(?:recedere|recesso\s+dal|annullare|annullo|chiudere|chiudo|cancellare)\s+(?:il\s+mio\s+|la\s+mia\s+|il\s+"
    r"|la\s+|l'\s*)?(?:contratto|abbonamento|conto|account|utenza|iscrizione)\b",
    r"\b(?:passo|passerò|passare|vado|andrò|cambio|cambierò|cambiare)\s+(?:alla\s+concorrenza|a\s+(?:un\s+)?"
    r"altr[oa]\s+(?:gestore|operatore|compagnia|banca|fornitore|azienda)|(?:gestore|compagnia|banca|fornitore)\b)",
    r"\bnon\s+mi\s+(?:vedrete|rivedrete)\s+più\b",
    r"\bcancel(?:l?ing)?\s+(?:my|the|our)\s+(?:account|subscription|contract|membership|service|plan|card|policy)\b",
    r"\bclos(?:e|ing)\s+my\s+account\b|\bterminat(?:e|ing)\s+(?:my|the)\s+(?:contract|account|service)\b",
    r"\b(?:switch(?:ing)?|mov(?:e|ing)|go(?:ing)?)\s+(?:over\s+)?to\s+(?:a\s+|the\s+|your\s+|another\s+)?"
    r"(?:competitor|competition|another\s+(?:provider|company|carrier|airline|bank|operator))\b",
    r"\btak(?:e|ing)\s+my\s+business\s+elsewhere\b",
    r"\b(?:never|won't|will\s+not)\s+(?:ever\s+)?(?:use|fly|buy|shop|order|book)\s+(?:\S+\s+){0,3}?again\b",
    # legal action
    r"\bavvocat[oiae]\b|\b(?:vie|azion[ei]|provvediment[oi])\s+legal[ei]\b",
    r"\b(?:far[òe]|faccio|sporger[eò]|sporgo|presentar[eò]|presento)\s+(?:una\s+)?(?:denuncia|querela)\b",
    r"\b(?:denuncio|denuncerò|denunciarvi|querelo|querelerò|querelarvi)\b",
    r"\b(?:codacons|altroconsumo|adiconsum|federconsumatori|agcom|antitrust|giudice\s+di\s+pace)\b",
    r"\bassociazion[ei]\s+(?:dei\s+|di\s+)?consumatori\b",
    r"\b(?:lawyer|attorney|solicitor|lawsuit|legal\s+action|small\s+claims|ombudsman"
    r"|better\s+business\s+bureau|trading\s+standards)\b",
    r"\b(?:will|going\s+to|gonna|I'll)\s+sue\b|\b(?:sue|suing)\s+(?:you|u|them|your)\b",  # not Italian "le sue"
)

_CUSTOMER_EFFORT: dict[EffortKind, re.Pattern[str]] = {
    "repeat_contact": _rx(
        rf"\b(?:ho|abbiamo)\s+già\s+(?:{_CONTACT_IT}|aperto\s+(?:un\s+)?(?:ticket|segnalazion[ei]|reclam[oi]))"
        rf"(?:\s+{_MAX_WORDS}{_N_IT}\s+volte\b)?",
        rf"\bvi\s+(?:ho|abbiamo)\s+già\s+{_CONTACT_IT}",
        rf"\b{_CONTACT_IT}\s+{_MAX_WORDS}{_N_IT}\s+volte\b",
        rf"\b{_E}\s+la\s+{_ORD_IT}\s+volta\s+che\s+(?:(?:vi|ti|la|le|lo)\s+)?(?:scriv|chiam|contatt|telefon"
        r"|segnal|sollecit|chied|richied|mand|ripet|reclam)\w*",  # not "la seconda volta che lo compro"
        r"\bper\s+l'ennesima\s+volta\b",
        r"\bennesim[oa]\s+(?:volta|chiamata|telefonata|segnalazione|e-?mail|messaggio|sollecito|reclamo)\b",
        rf"\b{_N_IT_MANY}\s+(?:chiamate|telefonate|e-?mail|segnalazioni|solleciti|reclami)\b",
        r"\bho\s+ri(?:chiamato|scritto|contattato)\b|\bcontinuo\s+a\s+(?:chiamare|scrivere)\b",
        rf"\b(?:I've|I\s+have|I|we've|we\s+have|we)\s+already\s+{_CONTACT_EN}\b"
        rf"(?:\s+{_MAX_WORDS}{_N_EN}\s+times\b)?",
        rf"(?:\b(?:I've|I\s+have|I|we've|we)\s+)?\b{_CONTACT_EN}\s+{_MAX_WORDS}{_N_EN}\s+times\b",
        rf"\b(?:this\s+is|it's|that's)\s+(?:the|my|our)\s+{_ORD_EN}\s+(?:call|attempt|chat|e-?mail|message"
        r"|time\s+(?:(?:I'm|I've|I\s+have|I\s+am|I)\s+)?(?:call|contact|writ|e-?mail|reach|chatt|ask|complain"
        r"|tr[yi]|messag)\w*)\b",  # not "the second time flying with you"
        r"\bkeep\s+(?:calling|contacting|e-?mailing|writing|chatting)\b",
        rf"\b{_N_EN_MANY}\s+(?:calls|e-?mails|chats|attempts|messages)\b",
    ),
    "transfer": _rx(
        r"\bmi\s+(?:hanno|avete|ha)\s+(?:già\s+)?(?:rimbalzat|sballottat)[oaie]\b",
        r"\bmi\s+(?:hanno|avete|ha)\s+(?:già\s+)?(?:trasferit|passat|girat)[oaie]\s+(?:(?:\S+\s+){0,3}?volte\b"
        r"|(?:a|ad|al|alla|all'|da|tra|fra)\b)",  # not "mi ha trasferito di stanza"
        r"\bda\s+un\s+(?:operatore|reparto|ufficio|numero)\s+all'altro\b|\brimbalzat[oaie]\b|\bscaricabarile\b",
        r"\b(?:been|was|were|got|get|keep\s+getting|kept\s+getting)\s+(?:\w+\s+)?(?:transferred|passed\s+around"
        r"|bounced\s+around|passed\s+(?:from|between))\b",
        rf"\b(?:transferred|bounced|passed)\s+(?:around|back\s+and\s+forth|{_MAX_WORDS}{_N_EN}\s+times)\b",
    ),
    "long_wait": _rx(
        rf"\b(?:in\s+attesa|in\s+coda|attendo|aspetto|aspettando|aspettare|attendere)\s+{_MAX_WORDS}"
        rf"(?:da|per|ormai|già)\s+(?:più\s+di\s+|oltre\s+|quasi\s+|circa\s+|ben\s+)?{_DUR_IT}",
        rf"\b(?:ho|abbiamo)\s+(?:aspettato|atteso)\s+(?:più\s+di\s+|oltre\s+|quasi\s+|circa\s+|ben\s+)?{_DUR_IT}",
        r"\b(?:ancora|sempre|tuttora)\s+in\s+attesa\b|\b(?:sto|stiamo)\s+ancora\s+aspettando\b",
        r"\b(?:aspetto|attendo|aspettiamo)\s+ancora\b|\bancora\s+(?:aspetto|attendo)\b",
        r"\b(?:attes[ae]|coda)\s+(?:infinit[ae]|interminabil[ei]|lunghissim[ae]|etern[ae]|estenuant[ei]|biblic[ae])\b",
        rf"\b{_DUR_IT}\s+(?:di\s+)?(?:attesa|in\s+coda|al\s+telefono|in\s+linea)\b",
        rf"\b(?:on\s+hold|waiting|waited|in\s+(?:the\s+)?queue)\s+(?:\S+\s+){{0,3}}?(?:for\s+)?"
        rf"(?:over\s+|more\s+than\s+|almost\s+|nearly\s+|about\s+|around\s+)?{_DUR_EN}",
        r"\bstill\s+waiting\b|\bwaiting\s+(?:forever|ages|so\s+long|too\s+long)\b",
        rf"\b{_DUR_EN}\s+(?:on\s+hold|of\s+waiting|in\s+(?:the\s+)?queue|waiting)\b",
        r"\b(?:endless|ridiculous|hours-long)\s+(?:hold|wait(?:ing)?)\b",
    ),
    "repeat_information": _rx(
        r"\b(?:ve|vi|te|ti|le|gli|ce)\s*(?:l'\s*|lo\s+|la\s+|li\s+|le\s+)?(?:ho|abbiamo)\s+già\s+"
        r"(?:dat|dett|comunicat|fornit|inviat|mandat|scritt|spiegat|indicat)\w*",
        r"\bl'ho\s+già\s+(?:dett|scritt|spiegat|comunicat|dat|fornit|inviat)\w*",
        r"\b(?:ho|abbiamo)\s+già\s+(?:dato|detto|comunicato|fornito|spiegato|indicato)\b",
        r"\b(?:devo|dovrei|dobbiamo)\s+(?:ripetere|rispiegare|ridare|rimandare|reinviare|ridire)\b",
        r"\b(?:ripeto|ripetere|ripetuto)\s+(?:per\s+l'ennesima\s+volta|ancora\s+una\s+volta|di\s+nuovo)\b",
        r"\bcome\s+(?:(?:(?:vi|le|ti|gli)\s+)?(?:ho|avevo|abbiamo)\s+(?:già\s+)?|già\s+)"
        r"(?:detto|scritto|spiegato|indicato|comunicato)\b",  # a review's "come detto" is no repetition
        r"\bquante\s+volte\s+(?:devo|dovrò)\b",
        r"\bI\s+already\s+(?:told|gave|sent|provided|explained|said|mentioned)\b",
        r"\b(?:I've|I\s+have|we've)\s+already\s+(?:told|given|sent|provided|explained|said|mentioned)\b",
        r"\bas\s+I\s+(?:already\s+)?(?:said|mentioned|explained|told\s+you|wrote|stated)\b",
        r"\brepeat(?:ing)?\s+myself\b|\bhow\s+many\s+times\s+(?:do\s+I\s+have\s+to|must\s+I)\b",
        r"\b(?:have|had|need)\s+to\s+(?:explain|repeat|give|provide|tell)\s+(?:\S+\s+){0,4}?again\b",
    ),
    "channel_switch": _rx(
        rf"\b(?:anche|pure)\s+(?:via|per|tramite|su|sui|con)\s+{_CHANNEL_IT}\b",
        rf"\b(?:scritto|scrivere|scrivervi|chiamato|chiamare|chiamarvi|telefonato|contattato|contattare|contattarvi"
        rf"|mandato|inviato|segnalato)\s+(?:\S+\s+){{0,3}}?(?:via|per|tramite|su|sui|al)\s+{_CHANNEL_IT}\b",
        r"\b(?:sono\s+(?:andat|passat)[oaie]|mi\s+sono\s+recat[oa]|ho\s+dovuto\s+andare)\s+(?:anche\s+)?"
        r"(?:di\s+persona\s+)?(?:in|al|alla|nel|nella|presso\s+(?:il|la))\s+"
        r"(?:negozio|filiale|punto\s+vendita|sportello|sede|ufficio|agenzia|store)\b",
        r"\b(?:al\s+telefono|via\s+e-?mail|in\s+negozio|in\s+chat|sui\s+social)\s+mi\s+(?:hanno|avevano|ha)\s+dett",
        r"\balso\s+(?:\S+\s+){0,2}?(?:called|e-?mailed|tweeted|wrote\s+(?:to|a\s+letter)|messaged|phoned"
        r"|dm'?d|visited|went\s+(?:to|into)\s+(?:the\s+)?(?:store|shop|branch))\b",
        rf"\b(?:called|e-?mailed|tweeted|wrote|messaged|contacted|reached\s+out|complained)\s+(?:\S+\s+){{0,3}}?"
        rf"(?:via|by|on|over|through)\s+{_CHANNEL_EN}\b",
        r"\bhad\s+to\s+(?:call|e-?mail|tweet|write\s+to|go\s+(?:to|into)\s+(?:the\s+)?(?:store|shop|branch))\b",
        r"\b(?:phone|e-?mail|chat|twitter|store)\s+(?:team|support|agents?|people)\s+(?:told|said)\b",
    ),
    "unresolved": _rx(
        rf"\bnon\s+{_E}\s+(?:ancora\s+)?stat[oa]\s+(?:ancora\s+)?(?:risolt|sistemat|gestit|chius)[oa]\b",
        r"\bnon\s+(?:avete|hanno|ha|ho|abbiamo)\s+(?:ancora\s+|mai\s+)?(?:risolto|sistemato|rimborsato|ricevuto"
        r"|risposto)\b",
        r"\b(?:ancora|tuttora)\s+non\s+(?:\S+\s+){0,2}?(?:funziona|va|risolt\w*|sistemat\w*|arrivat\w*|ricevut\w*"
        r"|rimborsat\w*|rispost\w*)",
        r"\bnon\s+(?:funziona|va)\s+(?:ancora|tuttora|comunque|lo\s+stesso)\b",
        rf"\bproblema\s+(?:persiste|{_E}\s+ancora\s+(?:lì|presente|aperto)|non\s+(?:{_E}\s+)?(?:stato\s+)?risolto"
        r"|irrisolto)\b",
        r"\bnessun[oa]?\s+(?:soluzione|risposta|rimborso)\b|\bnessuno\s+(?:mi\s+)?(?:ha\s+)?(?:risolto|aiutato"
        r"|risposto|richiamato)\b",
        r"\bsenza\s+(?:(?:alcuna|nessuna|una)\s+)?(?:soluzione|risposta|risoluzione)\b",
        r"\bstill\s+(?:not|isn't|hasn't(?:\s+been)?|haven't|doesn't|don't|can't|won't|no|broken|unresolved|pending"
        r"|missing)\b(?:\s+(?:been\s+)?(?:fixed|resolved|solved|sorted|working|work|received|arrived|refunded"
        r"|answered|heard))?",
        r"\b(?:not|never|wasn't|isn't|hasn't|haven't)\s+(?:been\s+)?(?:yet\s+)?(?:resolved|fixed|solved|sorted"
        r"|addressed)\b",
        r"\b(?:problem|issue)\s+(?:persists|remains|is\s+still\s+(?:there|happening|open|not))\b",
        r"\bno\s*(?:one|body)\s+(?:has\s+)?(?:fixed|resolved|solved|helped|called\s+back|got\s+back)\b",
        r"\bnothing\s+(?:has\s+been|was)\s+(?:done|fixed|resolved)\b",
    ),
}
_AGENT_EFFORT: dict[EffortKind, re.Pattern[str]] = {
    "transfer": _rx(
        r"\b(?:ti|le|la|vi)\s+(?:sto\s+)?(?:trasferisc|trasferend|metto\s+in\s+contatto|mettendo\s+in\s+contatto)\w*",
        r"\b(?:ti|le|la|vi)\s+(?:sto\s+)?(?:pass|gir|inoltr)\w+\s+(?:(?:a|al|alla|ad|con|all'|il|la|lo|un|una|un')"
        r"\s*)*(?:mi[oa]\s+)?(?:collega|colleghi|responsabile|reparto|ufficio|supervisore|operatore|operatrice"
        r"|tecnico|settore|team|specialista|assistenza)\b",
        r"\btrasferir(?:la|ti|vi|le)\b",
        r"\b(?:transfer(?:ring)?|connect(?:ing)?|redirect(?:ing)?|forward(?:ing)?)\s+you\s+(?:to|with|over)\b",
        r"\btransfer(?:ring)?\s+(?:you|your\s+(?:call|chat))\b",
        r"\bpass(?:ing)?\s+you\s+(?:on|over)\s+to\b|\bput(?:ting)?\s+you\s+through\s+to\b",
    ),
}


def detect_signals(turns: Sequence[ChatTurn]) -> ChatSignals:
    """Escalation requests and customer-effort signals, with evidence offsets into the document text."""
    escalation: list[EvidenceSpan] = []
    effort: list[EffortSignal] = []
    for i, turn in enumerate(classify_roles(turns)):
        if turn.role in ("bot", "system"):
            continue
        text = turn.text.replace("’", "'")  # same length, so offsets survive
        customer_side = turn.role != "agent"
        if customer_side:
            escalation += [EvidenceSpan(turn.offset + m.start(), len(m.group())) for m in _ESCALATION.finditer(text)]
        for kind, pattern in (_CUSTOMER_EFFORT if customer_side else _AGENT_EFFORT).items():
            effort += [
                EffortSignal(kind, turn.offset + m.start(), len(m.group()), turn.text[m.start() : m.end()], i)
                for m in pattern.finditer(text)
            ]
    effort.sort(key=lambda e: (e.offset, EFFORT_KINDS.index(e.kind)))
    return ChatSignals(bool(escalation), escalation, effort)
