"""Saved dashboard views: a name, the dashboard's filters, a batch (or the latest one), an owner, a shared flag.

The filters are stored as the query string :meth:`voce.service.analytics.Filters.query_params` writes and read back
through :class:`~voce.service.analytics.Filters` (the one parser of the filter parameters), so a view opens exactly
what the dashboard showed and a bad one is refused when it is saved, not when a colleague opens it.

A view is the tenant's: another tenant's view is not found.  A view that is not shared is seen by its owner's key
only; a shared one by every key of the tenant, and opened by its link ``/ui/views/{id}``.  Only its owner (or an
admin key of the tenant) changes or deletes it.
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy import or_, select
from sqlalchemy.orm import sessionmaker

from voce.service.analytics import Filters, parse_period
from voce.service.db import utcnow
from voce.service.errors import Forbidden, InvalidInput, NotFound
from voce.service.insights.tables import SavedView

if TYPE_CHECKING:
    from voce.service.batches.service import BatchService

Granularity = Literal["auto", "day", "week", "month"]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
#: the query-string keys a view (or an alert rule's population) may hold: Filters' fields
FILTER_KEYS = frozenset(Filters.model_fields)
MAX_QUERY_CHARS = 4000
#: views a tenant may keep (a list, not a data store)
MAX_VIEWS = 1000


class InsightError(InvalidInput):
    """A view or alert rule that cannot be saved (422); ``details`` carry a code and parameters the page
    translates."""

    def __init__(self, message: str, code: str, **params: Any) -> None:
        super().__init__(message, details=[{"code": code, **params}])


class ViewNotFound(NotFound):
    """No such view for this caller (another tenant's, or another key's unshared view)."""


@dataclass(frozen=True)
class Owner:
    """Who is asking: the tenant, the key (id, or "open" with access control off), its name, admin or not."""

    tenant: str
    key: str
    name: str
    admin: bool = False


def parse_filters(query: str, *, allow: frozenset[str] = frozenset()) -> tuple[Filters, dict[str, str]]:
    """A filter query string (``topic=delivery&segment=region:nord``; a leading ``?`` is fine) -> the
    :class:`Filters` it selects, and the extra keys in ``allow`` (e.g. ``granularity``); anything else is refused."""
    text = query.strip().lstrip("?")
    if len(text) > MAX_QUERY_CHARS:
        raise InsightError(f"the filters are at most {MAX_QUERY_CHARS} characters", "filters.too_long",
                           max=MAX_QUERY_CHARS)
    values: dict[str, list[str]] = {}
    extra: dict[str, str] = {}
    for key, value in parse_qsl(text, keep_blank_values=False):
        if key in allow:
            extra[key] = value
        elif key in FILTER_KEYS:
            values.setdefault(key, []).append(value)
        else:
            raise InsightError(f"unknown filter {key!r}", "filters.unknown", name=key[:64])
    single = {"period", "date_from", "date_to"}
    try:
        data: dict[str, Any] = {k: (v[-1] if k in single else v) for k, v in values.items()}
        return Filters.model_validate(data), extra
    except (ValidationError, ValueError) as exc:
        first = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise InsightError(f"invalid filter: {first}", "filters.invalid", reason=str(first)[:200]) from exc


def filters_query(filters: Filters) -> str:
    """The canonical query string of ``filters`` (what is stored)."""
    return urlencode(filters.query_params())


# ------------------------------------------------------------------ shapes
def _as_utc(d: dt.datetime) -> dt.datetime:
    return d.replace(tzinfo=dt.UTC) if d.tzinfo is None else d


#: stored times are naive UTC; responses say so (RFC 3339 date-times carry an offset)
UtcDatetime = Annotated[dt.datetime, AfterValidator(_as_utc)]


class ViewIn(BaseModel):
    """A view to save: its name, the dashboard's query string (filters, and granularity), the batch."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    batch_id: str | None = Field(default=None, max_length=64,
                                 description="The batch it shows; omitted: the latest finished batch when opened.")
    query: str = Field(default="", max_length=MAX_QUERY_CHARS,
                       description="The dashboard's filters as its URL holds them: topic=..&segment=col:value&period=..")
    granularity: Granularity | None = None
    shared: bool = Field(default=False, description="Seen by every key of the tenant (else by its owner's only).")


class ViewPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    batch_id: str | None = Field(default=None, max_length=64)
    latest: bool | None = Field(default=None, description="true: show the latest finished batch (drops batch_id).")
    query: str | None = Field(default=None, max_length=MAX_QUERY_CHARS)
    granularity: Granularity | None = None
    shared: bool | None = None


class ViewOut(BaseModel):
    id: str
    name: str
    batch_id: str | None
    query: str
    filters: Filters
    granularity: Granularity | None
    owner: str
    mine: bool
    shared: bool
    created_at: UtcDatetime
    updated_at: UtcDatetime
    link: str = Field(description="The view's page link (opens the dashboard with its filters).")


class ViewList(BaseModel):
    views: list[ViewOut]


# ------------------------------------------------------------------ the service
class ViewService:
    """The saved views one caller sees and keeps."""

    def __init__(self, sessions: sessionmaker, batches: BatchService, owner: Owner) -> None:
        self.sessions = sessions
        self.batches = batches  # scoped to the caller's tenant
        self.owner = owner

    def _out(self, v: SavedView) -> ViewOut:
        filters, _ = parse_filters(v.query)
        return ViewOut(
            id=v.id, name=v.name, batch_id=v.batch_id, query=v.query, filters=filters,
            granularity=v.granularity, owner=v.owner, mine=v.owner_key == self.owner.key,  # type: ignore[arg-type]
            shared=v.shared, created_at=v.created_at, updated_at=v.updated_at, link=f"/ui/views/{v.id}",
        )

    def _visible(self) -> Any:
        return (SavedView.tenant == self.owner.tenant) & or_(SavedView.shared.is_(True),
                                                             SavedView.owner_key == self.owner.key)

    def _find(self, s: Any, view_id: str) -> SavedView:
        found = s.scalars(select(SavedView).where(SavedView.id == view_id[:64], self._visible())).first()
        if found is None:
            raise ViewNotFound(f"no view {view_id[:64]!r}")
        return found

    def _check_batch(self, batch_id: str | None) -> None:
        if batch_id is not None:
            self.batches.get(batch_id)  # another tenant's batch is not found

    def _normalised(self, query: str, granularity: str | None) -> tuple[str, str | None]:
        filters, extra = parse_filters(query, allow=frozenset({"granularity"}))
        gran = granularity or extra.get("granularity")
        if gran not in (None, "auto", "day", "week", "month"):
            raise InsightError(f"granularity must be auto, day, week or month, got {gran!r}", "filters.invalid",
                               reason="granularity")
        return filters_query(filters), None if gran == "auto" else gran

    def list(self) -> ViewList:
        with self.sessions() as s:
            found = s.scalars(select(SavedView).where(self._visible())
                              .order_by(SavedView.created_at.desc(), SavedView.id)).all()
            return ViewList(views=[self._out(v) for v in found])

    def get(self, view_id: str) -> ViewOut:
        with self.sessions() as s:
            return self._out(self._find(s, view_id))

    def create(self, body: ViewIn) -> ViewOut:
        self._check_batch(body.batch_id)
        query, gran = self._normalised(body.query, body.granularity)
        now = utcnow()
        view = SavedView(
            id=uuid.uuid4().hex, tenant=self.owner.tenant, name=body.name, batch_id=body.batch_id, query=query,
            granularity=gran, owner_key=self.owner.key, owner=self.owner.name, shared=body.shared,
            created_at=now, updated_at=now,
        )
        with self.sessions() as s, s.begin():
            count = len(s.scalars(select(SavedView.id).where(SavedView.tenant == self.owner.tenant)).all())
            if count >= MAX_VIEWS:
                raise InsightError(f"a tenant keeps at most {MAX_VIEWS} views", "views.too_many", max=MAX_VIEWS)
            s.add(view)
        return self._out(view)

    def update(self, view_id: str, patch: ViewPatch) -> ViewOut:
        with self.sessions() as s, s.begin():
            view = self._mine(s, view_id)
            if patch.name is not None:
                view.name = patch.name
            if patch.latest:
                view.batch_id = None
            elif patch.batch_id is not None:
                self._check_batch(patch.batch_id)
                view.batch_id = patch.batch_id
            if patch.query is not None or patch.granularity is not None:
                view.query, view.granularity = self._normalised(
                    view.query if patch.query is None else patch.query, patch.granularity or view.granularity)
            if patch.shared is not None:
                view.shared = patch.shared
            view.updated_at = utcnow()
            s.flush()
            return self._out(view)

    def delete(self, view_id: str) -> None:
        with self.sessions() as s, s.begin():
            s.delete(self._mine(s, view_id))

    def _mine(self, s: Any, view_id: str) -> SavedView:
        view = self._find(s, view_id)
        if view.owner_key != self.owner.key and not self.owner.admin:
            raise Forbidden("only the view's owner (or an admin key) changes or deletes it",
                            details=[{"code": "views.not_owner", "owner": view.owner}])
        return view

    def dashboard_url(self, view_id: str) -> str | None:
        """Where the view's link leads: its batch's dashboard with its filters (None: no batch to show)."""
        with self.sessions() as s:
            view = self._find(s, view_id)
        batch_id = view.batch_id or latest_batch(self.batches)
        if batch_id is None or not self.batches.exists(batch_id):
            return None
        params = dashboard_params(parse_filters(view.query)[0])
        if view.granularity:
            params.append(("granularity", view.granularity))
        params.append(("view", view.id))
        return f"/ui/batches/{batch_id}?{urlencode(params)}"


def dashboard_params(filters: Filters) -> list[tuple[str, str]]:
    """The filters as the dashboard's URL takes them: a period becomes the date range it covers (intersected with
    the view's own range), since the page filters by dates; the selection is the same rows."""
    if filters.period is None:
        return filters.query_params()
    _, start, end = parse_period(filters.period)
    lo = max(filters.date_from or start, start)
    hi = min(filters.date_to or end, end - dt.timedelta(days=1))
    if lo > hi:  # the view's own dates miss its period (an empty selection): left as saved
        return filters.query_params()
    return Filters.model_validate({**filters.model_dump(), "period": None, "date_from": lo, "date_to": hi}).query_params()


def latest_batch(batches: BatchService) -> str | None:
    """The tenant's most recently created batch that is done (None: none yet)."""
    for b in batches.store.list_batches(limit=200, tenant=batches.tenant):
        if b.status == "done":
            return b.id
    return None
