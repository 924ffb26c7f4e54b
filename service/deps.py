"""Every FastAPI dependency of the routers: settings, the model, admission, metrics, the batch layer, the caller.

Routers take what they need from here and nothing from ``app.state`` directly, so this is the one place where
per-request policy goes.  Access: every route declares one requirement from here (a scope, any valid key, or a
page's sign-in) and the batch service it gets is scoped to the caller's tenant (another tenant's batch is a 404);
``tests/service/auth`` walks ``app.routes`` and fails for a route that declares none.
"""
from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Depends, Query, Request

from voce.models.analyzer import Analyzer
from voce.service.analytics import Filters
from voce.service.auth.access import AccessControl, KeyRequirement, PageRequirement, Principal
from voce.service.batches.service import BatchService, Caller, make_filters
from voce.service.batches.store import BatchStore
from voce.service.errors import ErrorEnvelope, NotReady
from voce.service.insights.alerts import AlertService
from voce.service.insights.views import Owner, ViewService
from voce.service.insights.webhooks import WebhookPolicy
from voce.service.learning.corrections import CorrectionService
from voce.service.learning.taxonomies import STORED_EXAMPLES, TaxonomyLimits, TaxonomyStore, TenantTaxonomy, batch_taxonomy
from voce.service.microbatch import MicroBatcher
from voce.service.settings import Settings
from voce.service.state import Admission, Engine, Metrics, ModelFollower


def get_settings(request: Request) -> Settings:
    s: Settings = request.app.state.settings
    return s


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_analyzer(request: Request) -> Analyzer:
    """The loaded analyzer; 503 while it loads (or after it failed to)."""
    engine = get_engine(request)
    if engine.analyzer is None:
        raise NotReady("the model is still loading" if engine.error is None else "the model failed to load")
    return engine.analyzer


def get_batcher(request: Request) -> MicroBatcher:
    b: MicroBatcher = request.app.state.batcher
    return b


def get_admission(request: Request) -> Admission:
    a: Admission = request.app.state.admission
    return a


def get_metrics(request: Request) -> Metrics:
    m: Metrics = request.app.state.metrics
    return m


def get_store(request: Request) -> BatchStore:
    store: BatchStore | None = getattr(request.app.state, "store", None)
    if store is None:
        raise NotReady("the batch store is not open yet")
    return store


def find_batches(request: Request) -> BatchService | None:
    """The batch layer, or None before the lifespan opened the store (the page still renders)."""
    service: BatchService | None = getattr(request.app.state, "batches", None)
    return service


def get_batches(request: Request) -> BatchService:
    service = find_batches(request)
    if service is None:
        raise NotReady("the batch store is not open yet")
    return service


def get_access(request: Request) -> AccessControl:
    access: AccessControl = request.app.state.access
    return access


# ---- access: what each route requires (see voce.service.auth.access)
#: any valid key (or session), whatever its scopes: /info, /v1/taxonomy
require_key = KeyRequirement(None)
require_analyze = KeyRequirement("analyze")
require_read = KeyRequirement("batches:read")
require_write = KeyRequirement("batches:write")
require_admin = KeyRequirement("admin")
#: /metrics: an admin key, unless VOCE_METRICS_PUBLIC opens it to a scraper
require_metrics = KeyRequirement("admin", open_if="metrics_public")
#: the pages: None (redirect to the sign-in page) without a session or key
page_read = PageRequirement("batches:read")
#: what every keyed route may answer besides its own statuses (for the OpenAPI document)
AUTH_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorEnvelope, "description": "no key or session, or an unknown, revoked or expired one"},
    403: {"model": ErrorEnvelope, "description": "the key lacks the scope, or a cookie request lacks its CSRF token "
                                                 "or comes from another origin"},
}


def get_principal(request: Request, principal: Annotated[Principal | None, Depends(require_key)]) -> Principal:
    """The authenticated caller (401 without one)."""
    assert principal is not None  # require_key raises rather than answer None
    return principal


def get_caller(principal: Annotated[Principal, Depends(get_principal)]) -> Caller:
    """The caller's tenant and the hash of its key, recorded on the batches it creates."""
    return principal.caller()


def _read_batches(
    principal: Annotated[Principal | None, Depends(require_read)], service: Annotated[BatchService, Depends(get_batches)]
) -> BatchService:
    assert principal is not None
    return service.for_tenant(principal.tenant)


def _write_batches(
    principal: Annotated[Principal | None, Depends(require_write)], service: Annotated[BatchService, Depends(get_batches)]
) -> BatchService:
    assert principal is not None
    return service.for_tenant(principal.tenant)


def find_page_batches(
    request: Request, principal: Annotated[Principal | None, Depends(page_read)]
) -> tuple[Principal | None, BatchService | None]:
    """A page's caller (None: send it to sign in) and the batch layer scoped to its tenant (None before the store
    is open)."""
    service = find_batches(request)
    if principal is None or service is None:
        return principal, None
    return principal, service.for_tenant(principal.tenant)


def filter_params(
    touchpoint: Annotated[list[str] | None, Query(description="touchpoint ids found in the text; repeatable (any)")] = None,
    channel: Annotated[
        list[str] | None,
        Query(description="where the feedback was collected, as in by_channel; 'unknown': rows without one; "
                          "repeatable (any)"),
    ] = None,
    topic: Annotated[list[str] | None, Query(description="topic ids; repeatable (any)")] = None,
    language: Annotated[list[str] | None, Query(description="language codes; repeatable (any)")] = None,
    segment: Annotated[
        list[str] | None, Query(description="column:value; repeatable (any value of a column, every column)")
    ] = None,
    period: Annotated[str | None, Query(description="2026-03, 2026-W09 or 2026-03-05")] = None,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
) -> Filters:
    """The filters shared by the KPI report and the comments behind it (so the numbers and the list agree)."""
    return make_filters(
        touchpoint=touchpoint, channel=channel, topic=topic, language=language, segment=segment, period=period,
        date_from=date_from, date_to=date_to,
    )


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
AnalyzerDep = Annotated[Analyzer, Depends(get_analyzer)]
AdmissionDep = Annotated[Admission, Depends(get_admission)]
BatcherDep = Annotated[MicroBatcher, Depends(get_batcher)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
StoreDep = Annotated[BatchStore, Depends(get_store)]
#: the batch layer scoped to the caller's tenant, for reading (batches:read) or changing (batches:write) batches
ReadBatchesDep = Annotated[BatchService, Depends(_read_batches)]
WriteBatchesDep = Annotated[BatchService, Depends(_write_batches)]
PageDep = Annotated[tuple[Principal | None, BatchService | None], Depends(find_page_batches)]
CallerDep = Annotated[Caller, Depends(get_caller)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
AccessDep = Annotated[AccessControl, Depends(get_access)]
FiltersDep = Annotated[Filters, Depends(filter_params)]


# ---- the learning loop (service/learning): corrections and the tenant's taxonomy
def get_taxonomy_store(request: Request) -> TaxonomyStore:
    """Every tenant's taxonomy versions, on the batch store's database (one per app)."""
    sessions = get_store(request).sessions
    found: TaxonomyStore | None = getattr(request.app.state, "taxonomies", None)
    if found is None or found.sessions is not sessions:
        found = request.app.state.taxonomies = TaxonomyStore(sessions)
    return found


def get_author(principal: Annotated[Principal, Depends(get_principal)], access: AccessDep) -> str:
    """Who a correction or taxonomy version is recorded as: the key's name (else its prefix; 'anonymous' with
    access control off)."""
    from voce.service.learning.corrections import author_name

    info = access.keys.get(principal.key_id) if principal.key_id and access.enabled else None
    return author_name(info.name if info is not None else None, principal.key_prefix or "anonymous")


def _tenant_taxonomy(
    principal: Principal, request: Request, analyzer: Analyzer, store: TaxonomyStore
) -> TenantTaxonomy:
    s = get_settings(request)
    # a stored version is encoded once (its prototypes cached), not per request: more examples than inline
    limits = TaxonomyLimits(entries=s.max_taxonomy_entries, examples=max(s.max_taxonomy_examples, STORED_EXAMPLES),
                            text_chars=s.max_taxonomy_text_chars)
    return TenantTaxonomy(store, principal.tenant, analyzer.taxonomy, limits)


def _read_taxonomy(
    request: Request, principal: Annotated[Principal | None, Depends(require_key)], analyzer: AnalyzerDep,
    store: Annotated[TaxonomyStore, Depends(get_taxonomy_store)],
) -> TenantTaxonomy:
    assert principal is not None
    return _tenant_taxonomy(principal, request, analyzer, store)


def _write_taxonomy(
    request: Request, principal: Annotated[Principal | None, Depends(require_write)], analyzer: AnalyzerDep,
    store: Annotated[TaxonomyStore, Depends(get_taxonomy_store)],
) -> TenantTaxonomy:
    assert principal is not None
    return _tenant_taxonomy(principal, request, analyzer, store)


def _corrections(batches: BatchService, analyzer: Analyzer, store: TaxonomyStore) -> CorrectionService:
    return CorrectionService(batches, lambda b: batch_taxonomy(store, b, analyzer.taxonomy))


def _read_corrections(
    batches: ReadBatchesDep, analyzer: AnalyzerDep, store: Annotated[TaxonomyStore, Depends(get_taxonomy_store)]
) -> CorrectionService:
    return _corrections(batches, analyzer, store)


def _write_corrections(
    batches: WriteBatchesDep, analyzer: AnalyzerDep, store: Annotated[TaxonomyStore, Depends(get_taxonomy_store)]
) -> CorrectionService:
    return _corrections(batches, analyzer, store)


AuthorDep = Annotated[str, Depends(get_author)]
TaxonomyStoreDep = Annotated[TaxonomyStore, Depends(get_taxonomy_store)]
#: the caller's tenant's taxonomy: read with any key, changed with batches:write
ReadTaxonomyDep = Annotated[TenantTaxonomy, Depends(_read_taxonomy)]
WriteTaxonomyDep = Annotated[TenantTaxonomy, Depends(_write_taxonomy)]
#: corrections of the caller's tenant's batches: listed with batches:read, made and reverted with batches:write
ReadCorrectionsDep = Annotated[CorrectionService, Depends(_read_corrections)]
WriteCorrectionsDep = Annotated[CorrectionService, Depends(_write_corrections)]


def get_scoring_analyzer(
    request: Request, principal: Annotated[Principal | None, Depends(require_analyze)], analyzer: AnalyzerDep
) -> Analyzer:
    """The analyzer scoring with the caller's tenant's active stored taxonomy, for ``/v1/analyze`` (the loaded one
    when the tenant never saved a version, or before the store is open); one object per tenant version, so the
    micro-batcher still joins a tenant's concurrent requests."""
    if principal is None or getattr(request.app.state, "store", None) is None:
        return analyzer
    return get_taxonomy_store(request).analyzer_for(analyzer, principal.tenant)


#: what /v1/analyze scores with: the tenant's taxonomy (an inline taxonomy in the request is merged over it)
ScoringAnalyzerDep = Annotated[Analyzer, Depends(get_scoring_analyzer)]


# ---- model versions (models/registry.py; hot swap in service/state.py): the operator's admin keys only
def get_follower(request: Request) -> ModelFollower:
    """What keeps this process on the registry's active version (503 before the lifespan started it)."""
    follower: ModelFollower | None = getattr(request.app.state, "follower", None)
    if follower is None:
        raise NotReady("the model registry is not open yet")
    return follower


def get_operator(
    request: Request, principal: Annotated[Principal | None, Depends(require_admin)], access: AccessDep
) -> str:
    """Who changes the model, by the key's name: an admin key of the operator's tenant (VOCE_OPERATOR_TENANT).  The
    model answers every tenant, so another tenant's admin key, which may do anything within its own tenant, is
    refused here (403)."""
    from voce.service.errors import Forbidden
    from voce.service.learning.corrections import author_name

    assert principal is not None
    operator = get_settings(request).operator_tenant
    if principal.tenant != operator:
        raise Forbidden(f"model versions serve every tenant: only an admin key of tenant {operator!r} (the operator, "
                        "VOCE_OPERATOR_TENANT) may list or change them")
    info = access.keys.get(principal.key_id) if principal.key_id and access.enabled else None
    return author_name(info.name if info is not None else None, principal.key_prefix or "anonymous")


FollowerDep = Annotated[ModelFollower, Depends(get_follower)]
#: the operator's admin key (its name: who promoted), for /v1/admin/models
OperatorDep = Annotated[str, Depends(get_operator)]


# ---- saved views and alerts (service/insights): views with batches:read, alert rules changed with batches:write
def _insight_owner(principal: Principal, access: AccessControl) -> Owner:
    from voce.service.learning.corrections import author_name

    info = access.keys.get(principal.key_id) if principal.key_id and access.enabled else None
    name = author_name(info.name if info is not None else None, principal.key_prefix or "anonymous")
    return Owner(tenant=principal.tenant, key=principal.key_id or "open", name=name, admin="admin" in principal.scopes)


def _views(
    principal: Annotated[Principal | None, Depends(require_read)], batches: Annotated[BatchService, Depends(get_batches)],
    access: AccessDep,
) -> ViewService:
    assert principal is not None
    return ViewService(batches.store.sessions, batches.for_tenant(principal.tenant), _insight_owner(principal, access))


def _alerts(request: Request, principal: Principal, access: AccessControl) -> AlertService:
    return AlertService(get_store(request).sessions, _insight_owner(principal, access),
                        WebhookPolicy.from_settings(get_settings(request)))


def _read_alerts(
    request: Request, principal: Annotated[Principal | None, Depends(require_read)], access: AccessDep
) -> AlertService:
    assert principal is not None
    return _alerts(request, principal, access)


def _write_alerts(
    request: Request, principal: Annotated[Principal | None, Depends(require_write)], access: AccessDep
) -> AlertService:
    assert principal is not None
    return _alerts(request, principal, access)


#: the caller's saved views (its own and its tenant's shared ones)
ViewsDep = Annotated[ViewService, Depends(_views)]
#: the caller's tenant's alert rules and events: read with batches:read, rules changed with batches:write
ReadAlertsDep = Annotated[AlertService, Depends(_read_alerts)]
WriteAlertsDep = Annotated[AlertService, Depends(_write_alerts)]
